import ccxt from 'ccxt';
import { describe, expect, it } from 'vitest';
import { logger } from '../core/log.ts';
import type { Gap, RecordKind } from '../schemas/index.ts';
import type { WorkerContext } from './context.ts';
import { GatewayEvents, type QueuedRecord, type StreamRef } from './events.ts';
import { GapTracker } from './gaps.ts';
import { Outbox, type OutboxRecord } from './outbox.ts';
import { runWatch, STREAM_RETRY, StreamAttempts, type ChannelHandler } from './watch.ts';
import { Watchdog } from './watchdog.ts';

describe('StreamAttempts (the watch loops\' reconnect policy)', () => {
  it('starts over after a stream that delivered for a while, however often it drops', () => {
    const a = new StreamAttempts();
    let t = 0;
    const attempts: number[] = [];
    for (let i = 0; i < 6; i++) {
      a.ok(t);
      t += 5_000; // healthy 5 s, then dropped
      attempts.push(a.failed(t));
      t += 200;
    }
    expect(attempts).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('backs off a stream that keeps failing: dials refused, or connections dropping as they open', () => {
    const refused = new StreamAttempts();
    expect([1, 2, 3, 4].map((i) => refused.failed(i * 1_000))).toEqual([1, 2, 3, 4]);
    const flapping = new StreamAttempts();
    let t = 0;
    const attempts: number[] = [];
    for (let i = 0; i < 5; i++) {
      flapping.ok(t);
      t += STREAM_RETRY.healthyAfterMs - 1; // one message, dropped before it counts as healthy
      attempts.push(flapping.failed(t));
    }
    expect(attempts).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('runWatch (the one watch loop)', () => {
  function setup(script: Array<number | Error>) {
    const records: { kind: RecordKind; record: unknown }[] = [];
    const events = new GatewayEvents();
    const retries: number[] = [];
    events.on('stream.retry', (e) => retries.push(e.attempt));
    const encode = <K extends RecordKind>(kind: K, r: OutboxRecord<K>): QueuedRecord => {
      records.push({ kind, record: r });
      return { kind, topic: kind, key: '', value: Buffer.alloc(0), exchange: r.exchange, symbol: r.symbol, ts: r.ts, receivedAtUs: r.received_at };
    };
    const outbox = new Outbox('x', 100, { encode, added: () => undefined, events });
    const abort = new AbortController();
    const watchdog = new Watchdog(logger('test'));
    const ctx = { name: 'x', ex: {}, outbox, events, log: logger('test'), signal: abort.signal, watchdog } as unknown as WorkerContext;
    const ref: StreamRef = { exchange: 'x', channel: 'ticker', symbol: 'BTC/USDT' };
    const produced: number[] = [];
    const handler: ChannelHandler<number> = {
      ref,
      silenceMs: 60_000,
      gap: new GapTracker(ctx, ref),
      ws: {
        call: 'watchTicker(BTC/USDT)',
        next: async () => {
          const step = script.shift();
          if (step === undefined) {
            abort.abort();
            throw new Error('closed');
          }
          if (step instanceof Error) throw step;
          return step;
        },
      },
      count: () => 1,
      down: () => 5,
      receive: (m) => ({ toUs: m, refilled: 0, after: () => produced.push(m) }),
    };
    return { ctx, handler, records, retries, produced };
  }

  it('opens one gap on the first failure, retries with backoff, closes it with the first message after', async () => {
    const { ctx, handler, records, retries, produced } = setup([7, new ccxt.NetworkError('connection closed'), new ccxt.NetworkError('dial refused'), 11, 12]);
    await runWatch(ctx, handler);
    expect(produced).toEqual([7, 11, 12]);
    expect(retries).toEqual([1, 2]);
    const gaps = records.filter((r) => r.kind === 'gap').map((r) => r.record as Gap);
    expect(gaps.map((g) => [g.from_ts, g.to_ts, g.reason])).toEqual([
      [5, null, 'ticker: watchTicker(BTC/USDT): NetworkError: connection closed'],
      [5, 11, 'ticker: watchTicker(BTC/USDT): NetworkError: connection closed'],
    ]);
  });
});
