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
import { spawn, type ChildProcess } from 'node:child_process';
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
import { readTopics, type Decoded } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'LTC/USDT', 'DOT/USDT', 'AVAX/USDT', 'LINK/USDT', 'TRX/USDT', 'BNB/USDT'];
const RATE = 20;
const SESSION_MS = 6_000;
/** The broker is down this long: well past the session timeout. */
const DOWN_MS = SESSION_MS * 3;

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  output: string;
  /** When it started serving which symbols (from its `shard ... serves` log lines). */
  readonly serves: Array<{ t: number; symbols: string[] }>;
  endedAt?: number;
  readonly exited: Promise<unknown>;
}

describe('sharded gateway processes through a Kafka outage longer than the session timeout', () => {
  const prefix = uniquePrefix('gwshout');
  let dataDir: string;
  let port: number;
  let broker: KafkaBroker | undefined;
  let sim: Sim;
  let file: string;
  const procs: Proc[] = [];
  let downAt = 0;
  let upAt = 0;
  let runningBeforeStop: boolean[] = [];
  let got: Decoded;

  const start = async (name: string): Promise<Proc> => {
    const child = spawn(process.execPath, [BIN, 'gateway', '--config', file, '--shard-group', prefix], {
      env: { ...process.env, KAFKA_BROKERS: `127.0.0.1:${port}`, LOG_LEVEL: 'info', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p: Proc = { name, child, output: '', serves: [], exited: new Promise((r) => child.on('exit', r)) };
    let partial = '';
    const onData = (d: Buffer) => {
      p.output += d.toString();
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{') || !line.includes('serves')) continue;
        const rec = JSON.parse(line) as { time: string; msg: string; symbols?: string[] };
        if (/^shard .*serves/.test(rec.msg)) p.serves.push({ t: Date.parse(rec.time), symbols: rec.symbols ?? [] });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void p.exited.then(() => (p.endedAt ??= Date.now()));
    procs.push(p);
    const deadline = Date.now() + 90_000;
    while (!p.output.includes('Ctrl-C to stop')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway ${name} did not start:\n${p.output.slice(-3000)}`);
      await sleep(50);
    }
    return p;
  };
  const current = (p: Proc) => p.serves.at(-1)?.symbols ?? [];
  /** Every instrument served, by exactly one process. */
  const split = () => {
    const all = procs.flatMap(current);
    return all.length === SYMBOLS.length && new Set(all).size === SYMBOLS.length;
  };
  const waitSplit = async (what: string) => {
    const deadline = Date.now() + 90_000;
    while (!split() || procs.some((p) => current(p).length === 0)) {
      if (Date.now() > deadline) throw new Error(`${what}: ${procs.map((p) => `${p.name}: ${current(p).join(',')}\n${p.output.slice(-4000)}`).join('\n---\n')}`);
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
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
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
    for (const p of procs) expect(current(p).length, `${p.name} serves nothing`).toBeGreaterThan(0);
  });

  it('no instrument served by both at once; no trade in Kafka twice', () => {
    let worst = 0;
    let where = '';
    for (const symbol of SYMBOLS) {
      const spans = procs.flatMap((p) =>
        p.serves.flatMap((s, i) => (s.symbols.includes(symbol) ? [{ who: p.name, from: s.t, to: p.serves[i + 1]?.t ?? p.endedAt ?? Date.now() }] : [])),
      );
      for (const a of spans)
        for (const b of spans) {
          const o = Math.min(a.to, b.to) - Math.max(a.from, b.from);
          if (a.who !== b.who && o > worst) [worst, where] = [o, `${symbol}: ${a.who} and ${b.who}`];
        }
    }
    expect(worst, where).toBe(0);
    const seen = new Map<string, number>();
    for (const tr of got.trade) seen.set(`${tr.symbol}#${tr.id}`, (seen.get(`${tr.symbol}#${tr.id}`) ?? 0) + 1);
    const doubled = [...seen].filter(([, c]) => c > 1).map(([k]) => k);
    expect(doubled, 'trades in Kafka more than once').toEqual([]);
  });

  it('every trade the sim emitted is in Kafka or inside a trade gap record', () => {
    const tradeGaps = got.gap.filter((g) => g.channel === 'trades');
    console.log(`SHARD outage: ${got.trade.length} trades, trade gaps: ${tradeGaps.map((g) => `${g.symbol} ${g.to_ts === null ? 'open' : `${((g.to_ts - g.from_ts) / 1e6).toFixed(1)}s`} ${g.reason}`).join('; ') || 'none'}`);
    for (const symbol of SYMBOLS) {
      const ids = new Set(got.trade.filter((tr) => tr.symbol === symbol).map((tr) => Number(tr.id)));
      expect(ids.size, `${symbol}: no trade in Kafka`).toBeGreaterThan(0);
      const first = Math.min(...ids);
      const last = Math.max(...ids);
      const gaps = tradeGaps.filter((g) => g.symbol === symbol);
      const stated = (tsUs: number) => gaps.some((g) => g.from_ts < tsUs && (g.to_ts === null || tsUs < g.to_ts));
      const lost = sim.emitted
        .trades(symbol, { fromId: first })
        .filter((tr) => tr.id <= last && !ids.has(tr.id) && !stated(tr.timestamp * 1000))
        .map((tr) => tr.id);
      expect(lost, `${symbol}: trades missing from Kafka and from every gap record`).toEqual([]);
    }
  });
});
