/**
 * The generic behaviour: what ccxt's unified API offers on any exchange.
 */
import type { Exchange, Trade } from 'ccxt';
import { tradeId } from '../normalize.ts';
import type { ExchangeAdapter, RefillEnd, RefillOptions, TradeCursor } from './types.ts';

/**
 * Trades since the cursor's time, paging forward with `since` = the newest time of the previous
 * page (inclusive: trades sharing that millisecond are not skipped; the caller dedupes). Stops
 * when a page brings nothing newer.
 *
 * Exchanges whose `fetchTrades` ignores `since` (Coinbase Exchange, Bybit) answer their latest
 * trades, which ccxt then filters by `since`: the first page reached back to the cursor only if it
 * holds the cursor's trade or its millisecond (an exchange honouring `since` always returns
 * them). Otherwise the refill says so (RefillEnd). A cursor without a trade (none produced yet) is
 * a time, which such a page cannot be checked against: taken as reached.
 */
async function* refillBySince(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[], RefillEnd | void> {
  let since = from.ts;
  let seenUpTo = from.ts;
  const seenAtEdge = new Set<string>(from.id !== undefined ? [from.id] : []);
  let end: RefillEnd = { reachedCursor: true };
  for (let page = 0; page < opts.maxPages; page++) {
    if (opts.signal?.aborted) return end;
    const trades = await ex.fetchTrades(symbol, since, undefined);
    if (page === 0 && from.id !== undefined && trades.length > 0 && !trades.some((t) => (t.timestamp ?? 0) <= from.ts || tradeId(t) === from.id)) {
      end = { reachedCursor: false, why: `fetchTrades(since) answered only trades after it, from ${new Date(Math.min(...trades.map((t) => t.timestamp ?? Infinity))).toISOString()}: the exchange ignores since or its history is shorter` };
    }
    const fresh = trades.filter((t) => (t.timestamp ?? 0) > seenUpTo || ((t.timestamp ?? 0) === seenUpTo && !seenAtEdge.has(tradeId(t))));
    if (fresh.length === 0) return end;
    yield trades;
    const newest = Math.max(...trades.map((t) => t.timestamp ?? 0));
    if (newest > seenUpTo) {
      seenUpTo = newest;
      seenAtEdge.clear();
    }
    for (const t of trades) if ((t.timestamp ?? 0) === seenUpTo) seenAtEdge.add(tradeId(t));
    since = seenUpTo;
  }
  return end;
}

export const defaultAdapter: ExchangeAdapter = {
  ccxtDefaults: () => ({}),
  checkOptions: () => [],
  watchTickerParams: () => ({}),
  refillTrades: refillBySince,
  monotonicTradeIds: () => false,
  contiguousTradeIds: () => false,
  ohlcvPageLimit: () => 500,
  orderBookLimit: () => undefined,
  symbolsPerSubscription: () => 100,
  multiSymbolParams: () => ({}),
};
