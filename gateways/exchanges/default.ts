/**
 * The generic behaviour: what ccxt's unified API offers on any exchange.
 */
import type { Exchange, Trade } from 'ccxt';
import type { ExchangeAdapter, RefillOptions, TradeCursor } from './types.ts';

/**
 * Trades since the cursor's time, paging forward with `since` = the newest time of the previous
 * page (inclusive: trades sharing that millisecond are not skipped; the caller dedupes). Stops
 * when a page brings nothing newer. Exchanges whose `fetchTrades` ignores `since` return their
 * latest trades: the refill then covers only what those reach.
 */
async function* refillBySince(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[]> {
  let since = from.ts;
  let seenUpTo = from.ts;
  const seenAtEdge = new Set<string>(from.id !== undefined ? [from.id] : []);
  for (let page = 0; page < opts.maxPages; page++) {
    if (opts.signal?.aborted) return;
    const trades = await ex.fetchTrades(symbol, since, undefined);
    const fresh = trades.filter((t) => (t.timestamp ?? 0) > seenUpTo || ((t.timestamp ?? 0) === seenUpTo && !seenAtEdge.has(String(t.id))));
    if (fresh.length === 0) return;
    yield trades;
    const newest = Math.max(...trades.map((t) => t.timestamp ?? 0));
    if (newest > seenUpTo) {
      seenUpTo = newest;
      seenAtEdge.clear();
    }
    for (const t of trades) if ((t.timestamp ?? 0) === seenUpTo) seenAtEdge.add(String(t.id));
    since = seenUpTo;
  }
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
};
