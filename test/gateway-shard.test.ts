/**
 * Gateways sharded through a Kafka consumer group, end to end: three `tickflow gateway
 * --shard-group` processes share the nine instruments of one sim entry (trades and tickers) on the
 * real broker; one is killed with SIGKILL mid-run, later a fourth joins, then all stop.
 * - each instrument is served by one process at a time: the processes' "serves" lines laid side
 *   by side never overlap, and no trade reached Kafka twice (two processes streaming one
 *   instrument would each produce its trades);
 * - every trade the sim emitted from the first one in Kafka to the last is in Kafka (the killed
 *   process's instruments are refilled by their new owners from the last trade in Kafka), and no
 *   trade gap record is left (everything was refilled);
 * - ticker gap records exactly where tickers stopped for longer than `handoverGapMs`: the killed
 *   process's instruments (down for the session timeout) each have one; a handover that is quick
 *   enough (the join's, usually) leaves none.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildSim, type Sim } from '../sim/index.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { killAll, missingTrades, servedAtOnce, serving, spawnShardGateway, tradesTwice, untilStarted, type ShardGateway } from './harness/shard-gateways.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'LTC/USDT', 'DOT/USDT', 'AVAX/USDT'];
const RATE = 20;
const SESSION_MS = 6_000;
const HANDOVER_GAP_MS = 5_000;

describe('gateways sharded through a consumer group (3 processes, one killed, one joining)', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwshard');
  let sim: Sim;
  let file: string;
  const procs: ShardGateway[] = [];
  let killedAt = 0;
  let killed: ShardGateway;
  let joinedAt = 0;
  let got: Decoded;

  const start = async (name: string): Promise<ShardGateway> => {
    const p = spawnShardGateway(name, { configFile: file, group: prefix, brokers: brokers.join(',') });
    procs.push(p);
    await untilStarted(p);
    return p;
  };

  beforeAll(async () => {
    sim = buildSim({ seed: 5, symbols: SYMBOLS, tradesPerSecond: RATE, historyDays: 0 });
    await sim.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-gwshard-'));
    file = path.join(dir, 'tickflow.yaml');
    writeFileSync(
      file,
      stringify({
        kafka: { topicPrefix: prefix, partitions: 3 },
        gateway: { metricsPort: 0, shard: { group: prefix, sessionTimeoutMs: SESSION_MS, heartbeatIntervalMs: 500, handoverGapMs: HANDOVER_GAP_MS } },
        exchanges: [{ id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {}, ticker: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) }],
      }),
    );
    await Promise.all(['a', 'b', 'c'].map((n) => start(n)));
    // Until the three split the instruments (the group answers each join with a rebalance).
    const deadline = Date.now() + 60_000;
    while (new Set(procs.flatMap(serving)).size !== SYMBOLS.length || procs.some((p) => serving(p).length === 0)) {
      if (Date.now() > deadline) throw new Error(`the processes did not split the instruments: ${procs.map((p) => `${p.name}: ${serving(p).join(',')}`).join('; ')}`);
      await sleep(200);
    }
    await sleep(8_000);
    killed = procs.reduce((a, b) => (serving(b).length > serving(a).length ? b : a));
    killed.child.kill('SIGKILL');
    killedAt = Date.now();
    killed.endedAt = killedAt;
    await killed.exited;
    await sleep(SESSION_MS + 10_000);
    joinedAt = Date.now();
    await start('d');
    await sleep(12_000);
    for (const p of procs) if (p !== killed) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    got = await readTopics(brokers, prefix, ['trade', 'gap', 'ticker']);
  }, 300_000);

  afterAll(async () => {
    killAll(procs);
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('each instrument is served by one process at a time', () => {
    const { worstMs, where } = servedAtOnce(procs, SYMBOLS);
    console.log(`SHARD e2e serving: ${procs.map((p) => `${p.name}: ${p.serves.map((s) => `+${((s.t - killedAt) / 1000).toFixed(1)}s [${s.symbols.join(',')}]`).join(' ')}${p === killed ? ' KILLED at +0s' : ''}`).join(' | ')} (join at +${((joinedAt - killedAt) / 1000).toFixed(1)}s)`);
    // The join moved instruments to the newcomer, from processes still running.
    const d = procs.find((p) => p.name === 'd')!;
    expect(d.serves.some((s) => s.symbols.length > 0)).toBe(true);
    expect(worstMs, where).toBe(0);
    expect(tradesTwice(got.trade), 'trades in Kafka more than once').toEqual([]);
  });

  it('every trade the sim emitted is in Kafka; nothing left to state in a trade gap', () => {
    const figures: string[] = [];
    const killedSymbols = killed.serves.at(-1)!.symbols;
    for (const symbol of SYMBOLS) {
      const { missing } = missingTrades(sim, got.trade, symbol);
      expect(missing.length, `${symbol}: trades missing from Kafka`).toBe(0);
      if (killedSymbols.includes(symbol)) {
        // Served again (first record produced by the new owner) this long after the kill.
        const back = got.trade.filter((t) => t.symbol === symbol && t.received_at / 1000 > killedAt).reduce((m, t) => Math.min(m, t.received_at / 1000), Infinity);
        figures.push(`${symbol} back ${((back - killedAt) / 1000).toFixed(1)}s after the kill`);
      }
    }
    const tradeGaps = got.gap.filter((g) => g.channel === 'trades');
    expect(tradeGaps.map((g) => g.reason)).toEqual([]);
    console.log(`SHARD e2e: ${figures.join('; ')}`);
  });

  it('a ticker gap record exactly where tickers stopped for longer than handoverGapMs: the kill, not a handover', () => {
    const killedSymbols = killed.serves.at(-1)!.symbols;
    const tickerGaps = got.gap.filter((g) => g.channel === 'ticker');
    console.log(`SHARD e2e ticker gaps: ${tickerGaps.map((g) => `${g.symbol} ${((g.to_ts! - g.from_ts) / 1e6).toFixed(1)}s`).join('; ')}`);
    const holes: string[] = [];
    for (const symbol of SYMBOLS) {
      const ts = got.ticker.filter((t) => t.symbol === symbol).map((t) => t.ts).sort((a, b) => a - b);
      for (let i = 1; i < ts.length; i++) {
        if (ts[i]! - ts[i - 1]! <= HANDOVER_GAP_MS * 1000) continue;
        holes.push(`${symbol} ${((ts[i]! - ts[i - 1]!) / 1e6).toFixed(1)}s`);
        // Stated: a closed gap record from the last ticker before to the first after.
        expect(tickerGaps.filter((g) => g.symbol === symbol && g.from_ts === ts[i - 1] && g.to_ts === ts[i]), `${symbol}: tickers stopped from ${ts[i - 1]} to ${ts[i]}`).toHaveLength(1);
      }
      // The killed process's instruments had no ticker for at least the session timeout.
      if (killedSymbols.includes(symbol)) expect(tickerGaps.some((g) => g.symbol === symbol && g.to_ts! - g.from_ts >= SESSION_MS * 1000), symbol).toBe(true);
    }
    // Nothing else: every record is such a hole, named as a takeover, closed.
    for (const g of tickerGaps) {
      expect(g.to_ts).not.toBeNull();
      expect(g.to_ts! - g.from_ts).toBeGreaterThan(HANDOVER_GAP_MS * 1000);
      expect(g.reason).toMatch(/taken over by this gateway process/);
    }
    expect(tickerGaps.length).toBe(holes.length);
  });
});
