/**
 * The independent OHLCV computation the rollup tests compare the database with: plain
 * TypeScript over the trades written, no SQL.
 */
import type { Pool } from '../../core/db.ts';

/** What the computation needs of a trade (`ts` in µs since the epoch). */
export interface BarTrade {
  readonly exchange: string;
  readonly symbol: string;
  readonly ts: number;
  readonly price: number;
  readonly amount: number;
}

export interface Bar {
  exchange: string;
  symbol: string;
  /** bucket start, µs since the epoch */
  bucket: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades: number;
}

export const MIN_US = 60_000_000;
export const ROLLUP_LEVELS = [
  ['ohlcv_1m', MIN_US],
  ['ohlcv_1h', 60 * MIN_US],
  ['ohlcv_1d', 1440 * MIN_US],
] as const;
export type RollupView = (typeof ROLLUP_LEVELS)[number][0];

/** Bars of `widthUs` from the trades, sorted like `barOrder`. */
export function ohlcv(trades: readonly BarTrade[], widthUs: number): Bar[] {
  const bars = new Map<string, Bar & { firstTs: number; lastTs: number }>();
  for (const t of trades) {
    const bucket = Math.floor(t.ts / widthUs) * widthUs;
    const k = `${t.exchange}|${t.symbol}|${bucket}`;
    const b = bars.get(k);
    if (!b) {
      bars.set(k, { exchange: t.exchange, symbol: t.symbol, bucket, open: t.price, high: t.price, low: t.price, close: t.price, volume: t.amount, trades: 1, firstTs: t.ts, lastTs: t.ts });
      continue;
    }
    if (t.ts < b.firstTs) [b.firstTs, b.open] = [t.ts, t.price];
    if (t.ts > b.lastTs) [b.lastTs, b.close] = [t.ts, t.price];
    b.high = Math.max(b.high, t.price);
    b.low = Math.min(b.low, t.price);
    b.volume += t.amount;
    b.trades++;
  }
  return [...bars.values()].map(({ firstTs: _f, lastTs: _l, ...bar }) => bar).sort(barOrder);
}

export function barOrder(a: Bar, b: Bar): number {
  return a.exchange.localeCompare(b.exchange) || a.symbol.localeCompare(b.symbol) || a.bucket - b.bucket;
}

/** The rollup's bars, optionally only buckets in [fromUs, toUs), in `barOrder`. */
export async function readBars(pool: Pool, view: RollupView, range?: { fromUs: number; toUs: number }): Promise<Bar[]> {
  const r = await pool.query<Bar>(
    `select exchange, symbol, (extract(epoch from bucket) * 1000000)::int8 as bucket, open, high, low, close, volume, trades::int8 as trades
     from ${view}${range ? ' where bucket >= $1::timestamptz and bucket < $2::timestamptz' : ''}`,
    range ? [new Date(range.fromUs / 1000).toISOString(), new Date(range.toUs / 1000).toISOString()] : [],
  );
  return r.rows.map((b) => ({ ...b, bucket: Number(b.bucket), trades: Number(b.trades) })).sort(barOrder);
}
