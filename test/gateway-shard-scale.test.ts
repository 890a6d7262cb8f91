/**
 * A takeover of many instruments, end to end: two `tickflow gateway --shard-group` processes share
 * the few hundred instruments of one sim entry (trades, tickers, 1m candles, top-10 books, as in
 * `bench:scale`) on the real broker; the one serving more is killed with SIGKILL mid-run and the
 * survivor takes its instruments over. What a user relies on:
 * - every trade the sim emitted is in Kafka exactly once, or lies inside a trade gap record of its
 *   instrument (what the takeover could not refill is stated, never silently missing);
 * - every instrument of the killed process has records again after the kill;
 * - no instrument is served by both processes at once (their "serves" lines never overlap).
 * 700 instruments at 3,500 trades/s: the smallest load tried where the takeover failed before the
 * fix (main 510811e: the moved instruments' positions scan timed out or took 30 s+, streams it
 * missed started as new, unfinished takeovers wrote nothing: tens of thousands of trades missing
 * and unstated); 400 at 2,000/s passed there. SCALE_INSTRUMENTS, SCALE_RATE and SCALE_LOG_DIR (the
 * processes' logs) override for exploring.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildSim, type Sim } from '../sim/index.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { killAll, servedAtOnce, serving, spawnShardGateway, tradesTwice, untilStarted, type ShardGateway } from './harness/shard-gateways.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const INSTRUMENTS = Number(process.env.SCALE_INSTRUMENTS ?? 700);
const TOTAL_RATE = Number(process.env.SCALE_RATE ?? 3_500);
const SESSION_MS = 10_000; // the default

describe(`a takeover of ${INSTRUMENTS / 2}-odd instruments (2 sharded processes, one killed)`, () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwscale');
  let sim: Sim;
  let file: string;
  const procs: ShardGateway[] = [];
  let killed: ShardGateway;
  let survivor: ShardGateway;
  let killedAt = 0;
  /** Trades emitted before this (ms) must be in Kafka or stated by the end. */
  let judgedUntil = 0;
  let got: Decoded;

  const start = async (name: string): Promise<ShardGateway> => {
    const p = spawnShardGateway(name, {
      configFile: file,
      group: prefix,
      brokers: brokers.join(','),
      outputChars: 200_000,
      logDir: process.env.SCALE_LOG_DIR,
      watch: { pattern: /takeover|heartbeat|stalled|membership/, each: (rec) => console.log(`SHARD scale ${name} +${((Date.parse(rec.time) - killedAt) / 1000).toFixed(1)}s: ${rec.msg}`) },
    });
    procs.push(p);
    await untilStarted(p);
    return p;
  };

  beforeAll(async () => {
    sim = buildSim({ seed: 7, instruments: INSTRUMENTS, totalTradesPerSecond: TOTAL_RATE, rateSkew: 1, historyDays: 0, bookDepth: 20, dialects: ['binance'] });
    await sim.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-gwscale-'));
    file = path.join(dir, 'tickflow.yaml');
    writeFileSync(
      file,
      stringify({
        kafka: { topicPrefix: prefix, partitions: 3 },
        gateway: { metricsPort: 0, shard: { group: prefix } },
        exchanges: [
          {
            id: 'binance',
            name: 'sim',
            symbols: [...sim.symbols],
            channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] }, book: { depth: 10 } },
            backfillLookbackMinutes: 0,
            options: simOptions(sim),
          },
        ],
      }),
    );
    await Promise.all(['a', 'b'].map((n) => start(n)));
    const deadline = Date.now() + 90_000;
    while (new Set(procs.flatMap(serving)).size !== INSTRUMENTS || procs.some((p) => serving(p).length === 0)) {
      if (Date.now() > deadline) throw new Error(`the processes did not split the instruments: ${procs.map((p) => `${p.name}: ${serving(p).length}`).join('; ')}`);
      await sleep(200);
    }
    await sleep(10_000);
    killed = procs.reduce((a, b) => (serving(b).length > serving(a).length ? b : a));
    survivor = procs.find((p) => p !== killed)!;
    killed.child.kill('SIGKILL');
    killedAt = Date.now();
    killed.endedAt = killedAt;
    await killed.exited;
    await sleep(SESSION_MS + 30_000);
    judgedUntil = Date.now() - 5_000;
    survivor.child.kill('SIGTERM');
    await survivor.exited;
    got = await readTopics(brokers, prefix, ['trade', 'gap', 'ticker', 'book', 'candle'], 120_000);
  }, 240_000);

  afterAll(async () => {
    killAll(procs);
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('no instrument is served by both processes at once', () => {
    const both = servedAtOnce(procs, new Set(procs.flatMap((p) => p.serves.flatMap((s) => s.symbols)))).symbols;
    expect(both).toEqual([]);
    expect(tradesTwice(got.trade).slice(0, 10), 'trades in Kafka more than once').toEqual([]);
  });

  it("every instrument of the killed process has records again after the kill", () => {
    const moved = serving(killed);
    expect(moved.length).toBeGreaterThan(INSTRUMENTS / 3);
    const back = new Set<string>();
    for (const kind of ['trade', 'ticker', 'book', 'candle'] as const) for (const r of got[kind]) if (r.received_at / 1000 > killedAt) back.add(r.symbol);
    const silent = moved.filter((s) => !back.has(s));
    console.log(`SHARD scale: ${moved.length} instruments moved, ${moved.length - silent.length} with records after the kill; survivor serves ${serving(survivor).length}`);
    expect(silent.slice(0, 20), `${silent.length} of ${moved.length} moved instruments silent after the kill`).toEqual([]);
  });

  it('every trade the sim emitted is in Kafka or inside a trade gap record of its instrument', () => {
    const ids = new Map<string, Set<number>>();
    for (const t of got.trade) {
      let s = ids.get(t.symbol);
      if (!s) ids.set(t.symbol, (s = new Set()));
      s.add(Number(t.id));
    }
    const lastTs = new Map<string, number>();
    for (const t of got.trade) lastTs.set(t.symbol, Math.max(lastTs.get(t.symbol) ?? 0, Number(t.ts) / 1000));
    const gaps = got.gap.filter((g) => g.channel === 'trades');
    const counts = sim.emitted.counts();
    let emitted = 0;
    let missing = 0;
    let unstated = 0;
    const where: string[] = [];
    /** Unstated trades per symbol: how many, their time span after the kill, who served the symbol. */
    const bySymbol = new Map<string, { n: number; from: number; to: number }>();
    for (const symbol of Object.keys(counts)) {
      const have = ids.get(symbol) ?? new Set<number>();
      // From the first trade in Kafka (before it, the gateways were still starting).
      const first = have.size > 0 ? Math.min(...have) : counts[symbol]!.firstLiveId;
      // Up to its last trade in Kafka: what the survivor had not yet read off its websocket when it
      // was stopped (a hot symbol lags seconds behind under this load) is a restart's to refill,
      // not a takeover's loss. A moved instrument silent after the kill fails the test above.
      const until = Math.min(judgedUntil, lastTs.get(symbol) ?? judgedUntil);
      const mine = gaps.filter((g) => g.symbol === symbol);
      for (const t of sim.emitted.trades(symbol, { fromId: first })) {
        if (t.timestamp > until) break;
        emitted++;
        if (have.has(t.id)) continue;
        missing++;
        const us = t.timestamp * 1000;
        if (mine.some((g) => us >= g.from_ts && (g.to_ts === null || us <= g.to_ts))) continue;
        unstated++;
        if (where.length < 10) where.push(`${symbol} #${t.id}`);
        const b = bySymbol.get(symbol) ?? { n: 0, from: t.timestamp, to: t.timestamp };
        b.n++;
        b.to = t.timestamp;
        bySymbol.set(symbol, b);
      }
    }
    const rel = (ms: number) => `${((ms - killedAt) / 1000).toFixed(1)}s`;
    for (const [symbol, b] of [...bySymbol].sort((x, y) => y[1].n - x[1].n).slice(0, 10)) {
      const who = procs.filter((p) => p.serves.some((x) => x.symbols.includes(symbol))).map((p) => p.name).join('+');
      const g = gaps.filter((x) => x.symbol === symbol).map((x) => `${rel(x.from_ts / 1000)}..${x.to_ts === null ? 'open' : rel(x.to_ts / 1000)}`);
      console.log(`SHARD scale unstated: ${symbol} ${b.n} trades ${rel(b.from)}..${rel(b.to)} after the kill (served by ${who}; trade gaps ${g.join(', ') || 'none'}; ${ids.get(symbol)?.size ?? 0} in Kafka)`);
    }
    console.log(`SHARD scale: ${emitted} trades emitted, ${missing} missing from Kafka, ${missing - unstated} of them inside trade gap records (${gaps.length}), ${unstated} unstated`);
    expect(emitted).toBeGreaterThan(0);
    expect(where, `${unstated} of ${missing} missing trades stated by no gap record`).toEqual([]);
  });
});
