/**
 * Bybit (v5). `fetchTrades` cannot page: `/v5/market/recent-trade` takes no time or id and returns
 * the latest trades only (spot at most 60, linear/inverse at most 1000). A refill therefore asks
 * once for as many as Bybit gives and hands them over whole (the caller dedupes by id), and says
 * whether they reached back to the last trade produced; a longer outage cannot be refilled.
 * Trade ids: spot execIds are numeric strings, linear ones UUIDs — neither is treated as ordered.
 * Candles: up to 1000 per request.
 */
import type { Exchange, Trade } from 'ccxt';
import { tradeId } from '../normalize.ts';
import type { ExchangeAdapter, RefillOptions, TradeCursor } from './types.ts';

/**
 * The most `recent-trade` returns per category. Read from the loaded markets when there are any;
 * without them (a refill must not fail for that) from the unified symbol: ccxt names a contract
 * with its settle currency (`BTC/USDT:USDT`), a spot market without (`BTC/USDT`).
 */
export function recentTradeLimit(ex: Exchange, symbol: string): number {
  const market = ex.markets?.[symbol];
  const spot = market !== undefined ? market.spot === true : !symbol.includes(':');
  return spot ? 60 : 1000;
}

/**
 * One request for the latest trades, handed over oldest first. Returns whether they reach back to
 * the cursor (`{ reachedCursor, why }`, the refill's end report): only if they hold the cursor's
 * trade or its millisecond; a cursor without a trade (a time) cannot be checked: taken as reached.
 */
async function* refillLatest(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[], { reachedCursor: boolean; why?: string }> {
  if (opts.signal?.aborted || opts.maxPages < 1) return { reachedCursor: true };
  const limit = recentTradeLimit(ex, symbol);
  const trades = [...(await ex.fetchTrades(symbol, undefined, limit))].sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
  if (trades.length === 0) return { reachedCursor: true };
  yield trades;
  const reached = from.id === undefined || trades.some((t) => (t.timestamp ?? 0) <= from.ts || tradeId(t) === from.id);
  return reached
    ? { reachedCursor: true }
    : { reachedCursor: false, why: `Bybit recent-trade returns only the latest ${limit} trades, the oldest from ${new Date(trades[0]!.timestamp ?? 0).toISOString()}` };
}

export const bybitAdapter: Partial<ExchangeAdapter> = {
  refillTrades: refillLatest,
  // Bybit's spot stream takes at most 10 args per subscribe request (ccxt sends one request per call).
  symbolsPerSubscription: () => 10,
  ohlcvPageLimit: () => 1000,
};
