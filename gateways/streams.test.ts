/**
 * The candle channel's records: forming updates go out at most once a second per
 * symbol/timeframe, and their `received_at` shows it, however slowly the process runs between
 * the throttle's decision and the record (a machine under load preempts it between clock reads).
 */
import type { OHLCV } from 'ccxt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Candle } from '../schemas/index.ts';
import { CandleTracker, ExchangeClock } from './candles.ts';
import type { WorkerContext } from './context.ts';
import { GatewayEvents } from './events.ts';
import { ohlcvChannel, tickCandles } from './streams.ts';

const M = 60_000;
const row = (open: number, close: number): OHLCV => [open, 1, 2, 0.5, close, 1];

afterEach(() => {
  vi.restoreAllMocks();
});

describe('forming candle records', () => {
  it('are at least the throttle interval apart by received_at, the process stalling now and then between two clock reads', async () => {
    // A loaded machine: most clock reads a moment apart, now and then one 40 ms later (preempted, GC).
    let clock = 1_800_000_040_000; // a minute boundary
    let seed = 7;
    vi.spyOn(Date, 'now').mockImplementation(() => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return (clock += seed % 5 === 0 ? 40 : 1);
    });
    const candles: Candle[] = [];
    const tracker = new CandleTracker('1m', { formingEveryMs: 1_000 });
    const ctx = {
      name: 'x',
      ex: { has: {} }, // no REST: the stream is the only source
      outbox: { add: (kind: string, r: Candle) => kind === 'candle' && candles.push(r) },
      events: new GatewayEvents(),
      clock: new ExchangeClock(),
      tracker: () => tracker,
    } as unknown as WorkerContext;
    const h = ohlcvChannel(ctx, 'BTC/USDT', '1m', 60_000);
    for (let i = 0; i < 2_000; i++) {
      // Stream updates every few ms, and the worker's timer: forming updates come from both.
      clock += 5;
      await h.receive([row(Math.floor(clock / M) * M, i)], clock * 1_000, 'ws');
      if (i % 7 === 0) tickCandles(ctx, 'BTC/USDT', '1m');
    }
    const forming = candles.filter((c) => !c.closed).map((c) => c.received_at);
    expect(forming.length).toBeGreaterThanOrEqual(30);
    for (let i = 1; i < forming.length; i++) expect(forming[i]! - forming[i - 1]!).toBeGreaterThanOrEqual(1_000_000);
  });
});
