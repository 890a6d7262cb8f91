/**
 * OKX. `fetchTrades` ignores `since` (it returns the latest trades), so a refill pages backwards
 * from the present through `/market/history-trades` with `after` = the oldest trade id seen so
 * far, until it reaches the last trade produced, then hands the pages over oldest first.
 * Candles: at most 300 per request (100 from the history endpoint, which ccxt picks itself).
 */
import { refillBackwards } from './paging.ts';
import type { ExchangeAdapter } from './types.ts';

export const okxAdapter: Partial<ExchangeAdapter> = {
  refillTrades: (ex, symbol, from, opts) =>
    refillBackwards(ex, symbol, from, opts, {
      limit: 100,
      params: (after) => ({ method: 'publicGetMarketHistoryTrades', ...(after !== undefined ? { after, type: '1' } : {}) }),
      endpoint: 'history-trades',
    }),
  monotonicTradeIds: () => true,
  ohlcvPageLimit: () => 300,
};
