/**
 * A Kafka outage under sharded gateway processes: two `tickflow gateway --shard-group` processes
 * share the twelve instruments of one sim entry (trades) on a broker of this file's own; the broker
 * is stopped for longer than the group's session timeout (both processes fence themselves: the
 * group may have given their slots away), then started again on the same port and data.
 * What a user expects once the broker is back:
 * - both processes still run (no crash, no permanent fencing) and every instrument is served by
 *   exactly one of them again;
 * - no instrument was served by both at once (the processes' "serves" lines laid side by side), and
 *   no trade reached Kafka twice;
 * - every trade the sim emitted, from the first in Kafka to the last, is in Kafka or inside a trade
 *   gap record's range.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { freePort } from '../infra/process.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { killAll, missingTrades, servedAtOnce, serving, spawnShardGateway, tradesTwice, untilStarted, type ShardGateway } from './harness/shard-gateways.ts';
import { readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'LTC/USDT', 'DOT/USDT', 'AVAX/USDT', 'LINK/USDT', 'TRX/USDT', 'BNB/USDT'];
const RATE = 20;
const SESSION_MS = 6_000;
/** The broker is down this long: well past the session timeout. */
const DOWN_MS = SESSION_MS * 3;

describe('sharded gateway processes through a Kafka outage longer than the session timeout', () => {
  const prefix = uniquePrefix('gwshout');
  let dataDir: string;
  let port: number;
  let broker: KafkaBroker | undefined;
  let sim: Sim;
  let file: string;
  const procs: ShardGateway[] = [];
  let downAt = 0;
  let upAt = 0;
  let runningBeforeStop: boolean[] = [];
  let got: Decoded;

  const start = async (name: string): Promise<ShardGateway> => {
    const p = spawnShardGateway(name, { configFile: file, group: prefix, brokers: `127.0.0.1:${port}` });
    procs.push(p);
    await untilStarted(p);
    return p;
  };
  /** Every instrument served, by exactly one process. */
  const split = () => {
    const all = procs.flatMap(serving);
    return all.length === SYMBOLS.length && new Set(all).size === SYMBOLS.length;
  };
  const waitSplit = async (what: string) => {
    const deadline = Date.now() + 90_000;
    while (!split() || procs.some((p) => serving(p).length === 0)) {
      if (Date.now() > deadline) throw new Error(`${what}: ${procs.map((p) => `${p.name}: ${serving(p).join(',')}\n${p.output.slice(-4000)}`).join('\n---\n')}`);
      await sleep(200);
    }
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'tickflow-gwshout-'));
    port = await freePort();
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    sim = buildSim({ seed: 9, symbols: SYMBOLS, tradesPerSecond: RATE, historyDays: 0 });
    await sim.start();
    file = path.join(dataDir, 'tickflow.yaml');
    writeFileSync(
      file,
      stringify({
        kafka: { topicPrefix: prefix, partitions: 3 },
        gateway: { metricsPort: 0, shard: { group: prefix, sessionTimeoutMs: SESSION_MS, heartbeatIntervalMs: 500 } },
        exchanges: [{ id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) }],
      }),
    );
    await Promise.all(['a', 'b'].map((n) => start(n)));
    await waitSplit('the processes did not split the instruments');
    await sleep(5_000);
    downAt = Date.now();
    await broker.stop();
    broker = undefined;
    await sleep(DOWN_MS);
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    upAt = Date.now();
    // Back: the processes rejoin the group and split the instruments again.
    await sleep(SESSION_MS);
    await waitSplit('after the outage, the processes did not split the instruments again');
    await sleep(8_000);
    runningBeforeStop = procs.map((p) => p.child.exitCode === null && p.child.signalCode === null);
    for (const p of procs) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    got = await readTopics(broker.brokers, prefix, ['trade', 'gap']);
  }, 400_000);

  afterAll(async () => {
    killAll(procs);
    await sim?.close();
    await broker?.stop().catch(() => undefined);
    if (dataDir) {
      await stopKafkaAt(dataDir).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('both processes keep running and serve every instrument exactly once after the broker is back', () => {
    const t = (x: number) => `+${((x - downAt) / 1000).toFixed(1)}s`;
    console.log(`SHARD outage (broker down ${t(downAt)}..${t(upAt)}): ${procs.map((p) => `${p.name}: ${p.serves.map((s) => `${t(s.t)} [${s.symbols.length}]`).join(' ')}`).join(' | ')}`);
    expect(runningBeforeStop).toEqual([true, true]);
    expect(split()).toBe(true);
    for (const p of procs) expect(serving(p).length, `${p.name} serves nothing`).toBeGreaterThan(0);
  });

  it('no instrument served by both at once; no trade in Kafka twice', () => {
    const { worstMs, where } = servedAtOnce(procs, SYMBOLS);
    expect(worstMs, where).toBe(0);
    expect(tradesTwice(got.trade), 'trades in Kafka more than once').toEqual([]);
  });

  it('every trade the sim emitted is in Kafka or inside a trade gap record', () => {
    const tradeGaps = got.gap.filter((g) => g.channel === 'trades');
    console.log(`SHARD outage: ${got.trade.length} trades, trade gaps: ${tradeGaps.map((g) => `${g.symbol} ${g.to_ts === null ? 'open' : `${((g.to_ts - g.from_ts) / 1e6).toFixed(1)}s`} ${g.reason}`).join('; ') || 'none'}`);
    for (const symbol of SYMBOLS) {
      const gaps = tradeGaps.filter((g) => g.symbol === symbol);
      const stated = (tsUs: number) => gaps.some((g) => g.from_ts < tsUs && (g.to_ts === null || tsUs < g.to_ts));
      const { inKafka, missing: lost } = missingTrades(sim, got.trade, symbol, stated);
      expect(inKafka, `${symbol}: no trade in Kafka`).toBeGreaterThan(0);
      expect(lost, `${symbol}: trades missing from Kafka and from every gap record`).toEqual([]);
    }
  });
});
