/**
 * Bybit (v5). `fetchTrades` cannot page: `/v5/market/recent-trade` takes no time or id and returns
 * the latest trades only (spot at most 60, linear/inverse at most 1000). A refill therefore asks
 * once for as many as Bybit gives and hands them over whole (the caller dedupes by id and decides
 * whether they reach back to the last trade produced); a longer outage cannot be refilled.
 * Trade ids: spot execIds are numeric strings, linear ones UUIDs — neither is treated as ordered.
 * Candles: up to 1000 per request.
 */
import type { Exchange, Trade } from 'ccxt';
import type { ExchangeAdapter, RefillOptions, TradeCursor } from './types.ts';

/** The most `recent-trade` returns per category. */
export function recentTradeLimit(ex: Exchange, symbol: string): number {
  return ex.market(symbol).spot === true ? 60 : 1000;
}

async function* refillLatest(ex: Exchange, symbol: string, _from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[]> {
  if (opts.signal?.aborted || opts.maxPages < 1) return;
  const trades = await ex.fetchTrades(symbol, undefined, recentTradeLimit(ex, symbol));
  if (trades.length > 0) yield [...trades].sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
}

export const bybitAdapter: Partial<ExchangeAdapter> = {
  refillTrades: refillLatest,
  ohlcvPageLimit: () => 1000,
};
