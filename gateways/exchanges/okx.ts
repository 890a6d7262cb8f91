/**
 * OKX. `fetchTrades` ignores `since` (it returns the latest trades), so a refill pages backwards
 * from the present through `/market/history-trades` with `after` = the oldest trade id seen so
 * far, until it reaches the last trade produced, then hands the pages over oldest first.
 * Candles: at most 300 per request (100 from the history endpoint, which ccxt picks itself).
 */
import type { Exchange, Trade } from 'ccxt';
import type { ExchangeAdapter, RefillEnd, RefillOptions, TradeCursor } from './types.ts';

const PAGE = 100;

async function* refillBackwards(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[], RefillEnd | void> {
  const pages: Trade[][] = [];
  let after: string | undefined;
  // Reached: a page holds the last trade produced, or history ended (nothing older exists).
  let end: RefillEnd = { reachedCursor: false, why: `history-trades did not reach back to it in ${opts.maxPages} pages` };
  const reached = (t: Trade) =>
    from.id !== undefined && /^\d+$/.test(from.id) && /^\d+$/.test(String(t.id)) ? BigInt(String(t.id)) <= BigInt(from.id) : (t.timestamp ?? 0) < from.ts;
  for (let page = 0; page < opts.maxPages; page++) {
    if (opts.signal?.aborted) return;
    const params: Record<string, unknown> = { method: 'publicGetMarketHistoryTrades', ...(after !== undefined ? { after, type: '1' } : {}) };
    const trades = await ex.fetchTrades(symbol, undefined, PAGE, params);
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
      end = { reachedCursor: false, why: `history-trades answered id ${after} again when asked for older trades` };
      break;
    }
    after = String(oldest.id);
  }
  for (let i = pages.length - 1; i >= 0; i--) yield pages[i]!;
  return opts.signal?.aborted ? undefined : end;
}

export const okxAdapter: Partial<ExchangeAdapter> = {
  refillTrades: refillBackwards,
  monotonicTradeIds: () => true,
  ohlcvPageLimit: () => 300,
};
