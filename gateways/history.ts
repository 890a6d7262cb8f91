/**
 * Candle history over REST: paginated `fetchOHLCV`, oldest first, used for the start-up
 * lookback, for buckets a stream could not vouch for (after a gap), and by
 * `tickflow backfill`. Pages wait for room in the outbox, so a long backfill slows down to
 * Kafka's pace instead of overflowing the buffer.
 */
import type { Exchange, OHLCV } from 'ccxt';
import { RETRY, retry } from '../core/retry.ts';
import { translateError } from './ccxt.ts';
import type { ExchangeAdapter } from './exchanges/index.ts';

export interface CandlePagesOptions {
  readonly ex: Exchange;
  readonly adapter: ExchangeAdapter;
  readonly symbol: string;
  readonly timeframe: string;
  /** First bucket open wanted (ms). */
  readonly from: number;
  /** Stop once a page reaches a bucket opening at or after this (ms); Infinity: until the present. */
  readonly to: number;
  readonly signal?: AbortSignal;
  /** Called with each page (oldest first); may wait (backpressure). */
  readonly onPage: (rows: OHLCV[]) => void | Promise<void>;
  /** Attempts per page on retriable errors. */
  readonly attempts?: number;
}

/** Fetches pages until `to` or the present; returns the number of rows fetched. */
export async function fetchCandlePages(o: CandlePagesOptions): Promise<number> {
  const limit = o.adapter.ohlcvPageLimit(o.ex);
  let since = o.from;
  let total = 0;
  for (;;) {
    if (o.signal?.aborted) return total;
    const rows = await retry(
      async () => {
        try {
          return await o.ex.fetchOHLCV(o.symbol, o.timeframe, since, limit);
        } catch (e) {
          throw translateError(e, `fetchOHLCV(${o.symbol}, ${o.timeframe}, since ${new Date(since).toISOString()})`, o.ex);
        }
      },
      { ...RETRY.exchangeRest, ...(o.attempts !== undefined ? { attempts: o.attempts } : {}), ...(o.signal ? { signal: o.signal } : {}) },
    );
    const page = rows.filter((r) => r[0] !== undefined && r[0] >= since && r[0] < o.to).sort((a, b) => a[0]! - b[0]!);
    if (page.length === 0) return total;
    total += page.length;
    await o.onPage(page);
    const last = page[page.length - 1]![0]!;
    if (last + 1 >= o.to) return total;
    since = last + 1;
  }
}
