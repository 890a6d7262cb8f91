/**
 * A trade refill for exchanges whose `fetchTrades` answers the latest trades (ignoring `since`)
 * but pages backwards by a trade-id cursor: from the present back to the last trade produced,
 * then the pages handed over oldest first. Used by the exchange files that have such a cursor.
 */
import type { Exchange, Trade } from 'ccxt';
import type { RefillEnd, RefillOptions, TradeCursor } from './types.ts';

export interface BackwardPaging {
  /** Trades per request. */
  readonly limit: number;
  /** `fetchTrades` params for the page older than trade id `after` (undefined: the latest page). */
  readonly params: (after: string | undefined) => Record<string, unknown>;
  /** The endpoint, named in a gap record when it does not reach back. */
  readonly endpoint: string;
}

export async function* refillBackwards(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions, paging: BackwardPaging): AsyncGenerator<Trade[], RefillEnd | void> {
  const pages: Trade[][] = [];
  let after: string | undefined;
  // Reached: a page holds the last trade produced, or history ended (nothing older exists).
  let end: RefillEnd = { reachedCursor: false, why: `${paging.endpoint} did not reach back to it in ${opts.maxPages} pages` };
  const reached = (t: Trade) =>
    from.id !== undefined && /^\d+$/.test(from.id) && /^\d+$/.test(String(t.id)) ? BigInt(String(t.id)) <= BigInt(from.id) : (t.timestamp ?? 0) < from.ts;
  for (let page = 0; page < opts.maxPages; page++) {
    if (opts.signal?.aborted) return;
    const trades = await ex.fetchTrades(symbol, undefined, paging.limit, paging.params(after));
    if (trades.length === 0) {
      end = { reachedCursor: true };
      break;
    }
    pages.push(trades);
    const oldest = trades.reduce((a, b) => ((a.timestamp ?? 0) <= (b.timestamp ?? 0) ? a : b));
    if (trades.some(reached)) {
      end = { reachedCursor: true };
      break;
    }
    if (String(oldest.id) === after) {
      end = { reachedCursor: false, why: `${paging.endpoint} answered id ${after} again when asked for older trades` };
      break;
    }
    after = String(oldest.id);
  }
  for (let i = pages.length - 1; i >= 0; i--) yield pages[i]!;
  return opts.signal?.aborted ? undefined : end;
}
