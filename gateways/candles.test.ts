/**
 * Deriving `closed`: a bucket closes when a newer one is seen or its end passes by the
 * exchange's clock; forming updates are throttled per symbol/timeframe; each closed bucket goes
 * out once; buckets the stream cannot vouch for become a REST fill range.
 */
import type { OHLCV } from 'ccxt';
import { describe, expect, it } from 'vitest';
import { bucketEnd, CandleTracker, ExchangeClock, timeframeMs } from './candles.ts';

const M = 60_000;
const T0 = 1_700_000_040_000; // a minute boundary
const row = (open: number, close: number, volume = 1): OHLCV => [open, 1, 2, 0.5, close, volume];
const closedOpens = (em: { row: OHLCV; closed: boolean }[]) => em.filter((e) => e.closed).map((e) => e.row[0]);

describe('CandleTracker', () => {
  it('closes a bucket with its last values when the next bucket appears, once', () => {
    const t = new CandleTracker('1m');
    expect(t.onStream([row(T0, 1)], 0).emit).toEqual([{ row: row(T0, 1), closed: false }]);
    expect(t.onStream([row(T0, 2)], 100).emit).toEqual([]); // throttled
    const r = t.onStream([row(T0, 3), row(T0 + M, 4)], 200);
    expect(r.emit).toEqual([{ row: row(T0, 3), closed: true }]);
    expect(r.fill).toBeUndefined();
    expect(t.onStream([row(T0, 9)], 300).emit).toEqual([]); // a late update of a closed bucket is ignored
    expect(t.isClosed(T0)).toBe(true);
  });

  it('sends forming updates at most once per interval per symbol/timeframe, across buckets', () => {
    const t = new CandleTracker('1m', { formingEveryMs: 1_000 });
    const sent: number[] = [];
    for (let ms = 0; ms <= 3_000; ms += 100) {
      const open = T0 + Math.floor(ms / 700) * M; // a new bucket every 700 ms
      for (const e of t.onStream([row(open, ms)], ms).emit) if (!e.closed) sent.push(ms);
    }
    for (let i = 1; i < sent.length; i++) expect(sent[i]! - sent[i - 1]!).toBeGreaterThanOrEqual(1_000);
    expect(sent.length).toBeGreaterThanOrEqual(3);
  });

  it('asks REST for buckets skipped by the stream', () => {
    const t = new CandleTracker('1m');
    t.onStream([row(T0, 1)], 0);
    const r = t.onStream([row(T0 + 3 * M, 2)], 10);
    expect(closedOpens(r.emit)).toEqual([T0]);
    expect(r.fill).toEqual({ from: T0 + M, to: T0 + 3 * M });
    // REST answer: two closed rows and the forming one (left to the stream).
    const em = t.onRest([row(T0 + M, 5), row(T0 + 2 * M, 6), row(T0 + 3 * M, 7)], T0 + 3 * M + 5_000, { before: T0 + 3 * M });
    expect(closedOpens(em)).toEqual([T0 + M, T0 + 2 * M]);
    expect(t.onRest([row(T0 + M, 5)], T0 + 4 * M).length).toBe(0); // each closed bucket once
  });

  it('after a disconnect the forming bucket is not closed from stale values but refetched', () => {
    const t = new CandleTracker('1m');
    t.onStream([row(T0, 1)], 0);
    t.markStale();
    const r = t.onStream([row(T0 + 2 * M, 2)], 10);
    expect(r.emit.filter((e) => e.closed)).toEqual([]);
    expect(r.fill).toEqual({ from: T0, to: T0 + 2 * M });
    // Reconnected within the same bucket: nothing to fetch.
    const u = new CandleTracker('1m');
    u.onStream([row(T0, 1)], 0);
    u.markStale();
    expect(u.onStream([row(T0, 3)], 10).fill).toBeUndefined();
  });

  it('continues from where a history backfill ended', () => {
    const t = new CandleTracker('1m');
    const hist = t.onRest([row(T0 - 2 * M, 1), row(T0 - M, 2), row(T0, 3)], T0 + 10_000);
    expect(closedOpens(hist)).toEqual([T0 - 2 * M, T0 - M]); // T0 still forming by the exchange clock
    t.expectFrom(T0);
    expect(t.onStream([row(T0 + M, 4)], 0).fill).toEqual({ from: T0, to: T0 + M });
  });

  it('closes by the exchange clock after a grace, when no newer bucket comes', () => {
    const t = new CandleTracker('1m', { closeGraceMs: 2_000 });
    t.onStream([row(T0, 1)], 0);
    expect(t.tick(T0 + M - 1, 1_000)).toEqual([]);
    expect(t.tick(T0 + M, 5_000)).toEqual([]); // end passed: grace starts (local clock)
    expect(t.tick(T0 + M + 500, 6_999)).toEqual([]);
    expect(t.tick(T0 + M + 900, 7_000)).toEqual([{ row: row(T0, 1), closed: true }]);
    // The next bucket continues without a fill; a bucket further on asks for the missing one.
    expect(t.onStream([row(T0 + 2 * M, 2)], 8_000).fill).toEqual({ from: T0 + M, to: T0 + 2 * M });
  });

  it('REST-only (poll): the newest open row is a forming update', () => {
    const t = new CandleTracker('1m');
    const em = t.onRest([row(T0 - M, 1), row(T0, 2)], T0 + 1_000, { forming: true });
    expect(em).toEqual([
      { row: row(T0 - M, 1), closed: true },
      { row: row(T0, 2), closed: false },
    ]);
  });
});

describe('bucket math and the exchange clock', () => {
  it('timeframes', () => {
    expect(timeframeMs('1m')).toBe(60_000);
    expect(timeframeMs('4h')).toBe(4 * 3_600_000);
    expect(bucketEnd('1M', Date.UTC(2024, 1, 1))).toBe(Date.UTC(2024, 2, 1));
    expect(bucketEnd('1w', Date.UTC(2024, 0, 1))).toBe(Date.UTC(2024, 0, 8));
    expect(() => timeframeMs('7x')).toThrow(/not a timeframe/);
  });

  it('follows the exchange times seen, never the other way', () => {
    const c = new ExchangeClock();
    c.setOffset(1_000_000, 1_000);
    expect(c.now(2_000)).toBe(1_001_000);
    c.observe(5_000_000, 2_000); // an exchange running ahead (a sped-up sim)
    expect(c.now(3_000)).toBe(5_001_000);
    c.observe(4_000_000, 3_000); // older times do not pull it back
    expect(c.now(3_000)).toBe(5_001_000);
  });
});
