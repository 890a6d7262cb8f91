/**
 * OKX. `fetchTrades` ignores `since` (it returns the latest trades), so a refill pages backwards
 * from the present through `/market/history-trades` with `after` = the oldest trade id seen so
 * far, until it reaches the last trade produced, then hands the pages over oldest first.
 * Candles: at most 300 per request (100 from the history endpoint, which ccxt picks itself).
 * Candles of 6 h and more: OKX's plain bars (`6H`, `1D`, `1W`, `1M`) open on Hong Kong time
 * (UTC+8), its `...utc` bars on UTC. ccxt's fetchOHLCV asks for the `utc` ones but its
 * watchOHLCV subscribes the plain ones, so a stream's buckets would not be the backfill's (nor the
 * gateway's UTC bucket math). The gateway maps those timeframes to the `utc` bars for both, and
 * sets fetchOHLCV's `timezone` to one ccxt does not append `utc` for (the bars carry it already).
 */
import { refillBackwards } from './paging.ts';
import type { ExchangeAdapter } from './types.ts';

/** ccxt timeframe → OKX's UTC bar, for every timeframe OKX opens on Hong Kong time by default. */
export const UTC_BARS: Readonly<Record<string, string>> = Object.freeze({
  '6h': '6Hutc',
  '12h': '12Hutc',
  '1d': '1Dutc',
  '2d': '2Dutc',
  '3d': '3Dutc',
  '1w': '1Wutc',
  '1M': '1Mutc',
  '3M': '3Mutc',
});

export const okxAdapter: Partial<ExchangeAdapter> = {
  // `timezone: 'HK'` only stops ccxt from appending `utc` to the bar: the bars above are UTC.
  ccxtDefaults: () => ({ timeframes: { ...UTC_BARS }, options: { fetchOHLCV: { timezone: 'HK' } } }),
  refillTrades: (ex, symbol, from, opts) =>
    refillBackwards(ex, symbol, from, opts, {
      limit: 100,
      params: (after) => ({ method: 'publicGetMarketHistoryTrades', ...(after !== undefined ? { after, type: '1' } : {}) }),
      endpoint: 'history-trades',
    }),
  monotonicTradeIds: () => true,
  ohlcvPageLimit: () => 300,
};
