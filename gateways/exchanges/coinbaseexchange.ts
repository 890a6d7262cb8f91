/**
 * Coinbase Exchange. `fetchTrades` ignores `since` (`/products/{id}/trades` answers the latest
 * trades, newest first), but pages backwards by trade id: `after` = a trade id answers the trades
 * older than it (the `cb-after` cursor). A refill pages back from the present to the last trade
 * produced, then hands the pages over oldest first. Trade ids grow per product.
 */
import { refillBackwards } from './paging.ts';
import type { ExchangeAdapter } from './types.ts';

export const coinbaseexchangeAdapter: Partial<ExchangeAdapter> = {
  refillTrades: (ex, symbol, from, opts) =>
    refillBackwards(ex, symbol, from, opts, { limit: 100, params: (after) => (after !== undefined ? { after } : {}), endpoint: 'products/{id}/trades' }),
  monotonicTradeIds: () => true,
  // ccxt (4.5.84) watchTradesForSymbols waits on `matches:BTC/USDT` while its handleTrade resolves
  // `matches:BTC-USDT` (the market id): the call never returns. Trades stay per symbol (they share
  // ccxt's one feed connection anyway); tickers and books resolve by id and run multi-symbol.
  symbolsPerSubscription: (_ex, channel) => (channel === 'trades' ? 0 : 100),
};
