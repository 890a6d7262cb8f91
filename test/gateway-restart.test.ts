/**
 * A gateway restart resumes where the last process stopped. `tickflow gateway` runs as a child
 * process against the sim (in this process, trading 200 trades/s per symbol) and the real
 * broker; it is SIGKILLed, left down for a while, started again, then stopped with SIGTERM and
 * started again. Every trade the sim emitted from the first one in Kafka to the last one is in
 * the trades topic (duplicates counted and reported), and every (symbol, channel) has a gap
 * record for each downtime: trades closed with what the REST refill brought back (reaching back
 * to the last trade in Kafka), tickers saying they cannot be refilled, candles backfilled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildSim, type Sim } from '../sim/index.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const RATE = 200;
const DOWN_MS = 5_000;

interface Run {
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  /** When it printed that it is running (after loading markets; streams start once positions are read). */
  readyAt: number;
  output: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

describe('gateway restarted after SIGKILL and after SIGTERM, under load', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwrestart');
  let sim: Sim;
  let file: string;
  const runs: Run[] = [];
  /** Real time of each stop (the SIGKILL, the SIGTERM). */
  const stops: { signal: string; at: number; exit: unknown }[] = [];
  let got: Decoded;

  const start = async (): Promise<Run> => {
    const child = spawn(process.execPath, [BIN, 'gateway', '--config', file], {
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: Run = { child, spawnedAt: Date.now(), readyAt: 0, output: '', exited: new Promise((r) => child.on('exit', (code, signal) => r({ code, signal }))) };
    child.stdout!.on('data', (d) => (run.output += d));
    child.stderr!.on('data', (d) => (run.output += d));
    runs.push(run);
    const deadline = Date.now() + 60_000;
    while (!run.output.includes('Ctrl-C to stop')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not start:\n${run.output.slice(-3000)}`);
      await sleep(50);
    }
    run.readyAt = Date.now();
    return run;
  };

  beforeAll(async () => {
    sim = buildSim({ seed: 11, symbols: SYMBOLS, tradesPerSecond: RATE, historyDays: 1 });
    await sim.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-gwrestart-'));
    file = path.join(dir, 'tickflow.yaml');
    writeFileSync(
      file,
      stringify({
        kafka: { topicPrefix: prefix, partitions: 2 },
        gateway: { metricsPort: 0 },
        exchanges: [
          { id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] } }, backfillLookbackMinutes: 2, options: simOptions(sim) },
        ],
      }),
    );
    let run = await start();
    await sleep(4_000);
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      run.child.kill(signal);
      const at = Date.now();
      const exit = await run.exited;
      stops.push({ signal, at, exit });
      await sleep(DOWN_MS);
      run = await start();
      await sleep(6_000);
    }
    run.child.kill('SIGTERM');
    await run.exited;
    got = await readTopics(brokers, prefix, ['trade', 'gap', 'ticker', 'candle']);
  }, 180_000);

  afterAll(async () => {
    for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('every trade the exchange emitted while it was down is in Kafka (refilled over REST)', () => {
    const figures: Record<string, unknown>[] = [];
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      const ids = mine.map((t) => Number(t.id));
      const distinct = new Set(ids);
      const first = Math.min(...ids);
      const last = Math.max(...ids);
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      const lost = want.filter((t) => !distinct.has(t.id));
      figures.push({ symbol, emitted: want.length, inKafka: mine.length, distinct: distinct.size, lost: lost.length, duplicated: ids.length - distinct.size });
      expect(lost.map((t) => t.id), `trades of ${symbol} missing`).toEqual([]);
      // The window spans both downtimes.
      expect(want[0]!.timestamp).toBeLessThan(stops[0]!.at - 2_000);
      expect(want.at(-1)!.timestamp).toBeGreaterThan(stops[1]!.at + DOWN_MS);
    }
    console.log('gateway restart figures', JSON.stringify(figures));
  });

  it('each downtime is a gap record per stream: trades refilled back to the stored position, tickers not refillable, candles backfilled', () => {
    const restarts = runs.slice(1, 3);
    const timing: Record<string, unknown>[] = [];
    for (const symbol of SYMBOLS) {
      const mine = got.gap.filter((g) => g.symbol === symbol && /gateway restarted/.test(g.reason));
      for (const channel of ['trades', 'ticker', 'ohlcv']) {
        const closed = mine.filter((g) => g.channel === channel && g.to_ts !== null).sort((a, b) => a.ts - b.ts);
        const opened = mine.filter((g) => g.channel === channel && g.to_ts === null);
        expect(closed.map((g) => g.reason), `${symbol} ${channel}`).toHaveLength(2);
        expect(opened).toHaveLength(2);
        for (const [i, g] of closed.entries()) {
          const stop = stops[i]!;
          // From the last record of the stopped process (a SIGTERMed one takes in what arrives
          // until its streams are stopped) to after the restart.
          expect(g.from_ts / 1000, `${symbol} ${channel}`).toBeLessThanOrEqual(stop.at + 2_000);
          expect(g.to_ts! / 1000).toBeGreaterThan(stop.at + DOWN_MS);
          expect(g.reason).not.toMatch(/incomplete/);
          if (channel === 'trades') {
            // The refill reached back to the stored trade: ~RATE trades per second of downtime.
            expect(g.refilled).toBeGreaterThan((RATE * DOWN_MS) / 1000 * 0.7);
            const r = restarts[i]!;
            timing.push({ symbol, stop: stop.signal, secondsFromSpawnToRunning: (r.readyAt - r.spawnedAt) / 1000, secondsFromSpawnToResumed: (g.ts / 1000 - r.spawnedAt) / 1000 });
          }
          if (channel === 'ticker') expect(g.reason).toMatch(/cannot be refilled/);
          if (channel === 'ohlcv') expect(g.reason).toMatch(/backfilled over REST/);
        }
      }
    }
    const reads = restarts.map((r) => /positions of the last run: [^"\n]*/.exec(r.output)?.[0]);
    console.log('gateway restart timing', JSON.stringify(timing), JSON.stringify(stops), JSON.stringify(reads));
  });

  it('candles: each closed bucket once across the restarts, contiguous', () => {
    for (const symbol of SYMBOLS) {
      const closed = got.candle.filter((c) => c.symbol === symbol && c.closed).map((c) => c.ts / 1000);
      const distinct = [...new Set(closed)].sort((a, b) => a - b);
      for (let i = 1; i < distinct.length; i++) expect(distinct[i]! - distinct[i - 1]!).toBe(60_000);
    }
  });
});
