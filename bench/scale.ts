/**
 * `npm run bench:scale`: many instruments into the gateway. The sim (its own process) serves
 * `--instruments` Binance spot markets at a Zipf-skewed total trade rate (`--rate`, `--skew`: a few
 * hot symbols, a long tail), and the gateway (`tickflow gateway`, a child process: its CPU and RSS
 * read from /proc) takes trades, tickers, 1m candles and top-10 books of every one of them into
 * Kafka. Reported per run: records/s per kind as they arrive in Kafka, the gateway's CPU (% of one
 * core) and RSS, the websocket connections it used and the streams per connection (the sim's
 * stats), and trade loss against the sim's emitted ids (ids are contiguous per symbol, so every id
 * printed in the window must be in Kafka once; `lost` must be 0).
 *
 * Baseline, in the same run: a plain `ws` client in this process reading the same streams (1,024 a
 * connection, SUBSCRIBE paced under Binance's 5 messages a second), JSON.parse'd and counted: what
 * reading the sim's messages costs without ccxt, normalizing or Kafka.
 *
 * Then, when the gateway can shard (`gateways/shard.ts`, `tickflow gateway --shard-group`), the
 * same load into 2 and 3 gateway processes sharing the instruments, one of them killed (SIGKILL)
 * halfway: loss counts only ids that no gap record states (`stated` = missing but inside a gap of
 * that symbol's trades, or of records a full gateway buffer dropped: channel `kafka`),
 * duplicates are ids produced twice (a move).
 *
 *   npm run bench:scale [-- --instruments 1000 --rate 10000 --skew 1 --seconds 30 --warmup 20
 *                          --processes 1,2,3 --only baseline|gateway]
 *
 * Kafka: KAFKA_BROKERS, or a throwaway broker. Results: bench-results/scale.json and scale.svg
 * (records/s over each run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { createCodec } from '../core/avro.ts';
import { createKafka } from '../core/kafka.ts';
import type { SimEmittedCounts, SimStats, SimTrade } from '../sim/types.ts';
import { benchBrokers } from './kafka.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: argv } = parseArgs({
  options: {
    instruments: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '10000' },
    skew: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '20' },
    processes: { type: 'string', default: '1,2,3' },
    only: { type: 'string' },
    'start-timeout': { type: 'string', default: '300' },
  },
});
const N = Number(argv.instruments);
const RATE = Number(argv.rate);
const SKEW = Number(argv.skew);
const SECONDS = Number(argv.seconds);
const WARMUP = Number(argv.warmup);
const PROCESSES = String(argv.processes).split(',').map(Number).filter((n) => n >= 1);
const START_TIMEOUT_S = Number(argv['start-timeout']);
const KINDS = ['trades', 'tickers', 'candles', 'books'] as const;
/** Runs with a kill: the hottest instruments whose silence after it is measured (takeover time). */
const TAKEOVER_WATCHED = 100;
type Kind = (typeof KINDS)[number];

const out = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const CLK_TCK = 100;

// ---------------------------------------------------------------------------------------------
// The sim, in its own process.

interface SimProc {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  ccxtOptions: Record<string, unknown>;
}

async function startSim(): Promise<SimProc> {
  const main = path.join(ROOT, 'sim', 'main.ts');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', main, '--port', '0', '--instruments', String(N), '--total-rate', String(RATE), '--skew', String(SKEW), '--history-days', '0', '--book-depth', '50', '--dialects', 'binance', '--max-buffered-bytes', String(16 * 1024 * 1024)],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; wsUrl: string; dialects: { binance: { ccxtOptions: Record<string, unknown> } } };
  return { child, url: info.url, wsUrl: info.wsUrl, ccxtOptions: info.dialects.binance.ccxtOptions };
}

async function stopChild(c: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill(signal);
  const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

async function simGet<T>(sim: SimProc, route: string): Promise<T> {
  if (sim.child.exitCode !== null || sim.child.signalCode !== null) throw new Error(`the sim exited (${sim.child.exitCode ?? sim.child.signalCode})`);
  return (await (await fetch(`${sim.url}/__sim${route}`, { signal: AbortSignal.timeout(60_000) })).json()) as T;
}

// ---------------------------------------------------------------------------------------------
// /proc readings of a child.

interface ProcSample {
  cpuTicks: number;
  rssKb: number;
}

function procSample(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    return { cpuTicks: Number(f[11]) + Number(f[12]), rssKb: rss ? Number(rss[1]) : 0 };
  } catch {
    return undefined; // exited
  }
}

// ---------------------------------------------------------------------------------------------
// What arrives in Kafka.

interface GapRecord {
  symbol: string;
  channel: string;
  from: number;
  to: number | null;
  reason: string;
}

/** Counts records per kind as they arrive; trade ids per symbol; every gap record. */
class KafkaTally {
  readonly counts: Record<Kind, number> = { trades: 0, tickers: 0, candles: 0, books: 0 };
  readonly ids = new Map<string, Map<number, number>>();
  readonly gaps: GapRecord[] = [];
  /** Watched symbols (the hottest): when their trades arrive, and the longest silence since `since`. */
  private readonly watched = new Map<string, { last: number; longest: number }>();
  private since = 0;
  private stopFn: (() => Promise<void>) | undefined;

  async start(brokers: readonly string[], prefix: string): Promise<void> {
    const kafka = createKafka({ brokers, clientId: `${prefix}-tally`, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
    const codec = createCodec({ topicPrefix: prefix });
    const consumer = kafka.consumer({ groupId: `${prefix}-tally-${randomBytes(3).toString('hex')}`, maxBytes: 50 * 1024 * 1024 });
    await consumer.connect();
    this.stopFn = async () => {
      await consumer.disconnect();
    };
    const topics = [...KINDS, 'gaps'].map((k) => `${prefix}.${k}`);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 3 })) }).catch(() => undefined);
    await admin.disconnect();
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }) => {
        const kind = batch.topic.slice(prefix.length + 1);
        for (const m of batch.messages) {
          if (!m.value) continue;
          if (kind === 'trades') {
            const t = (await codec.decode(m.value)).value as { symbol: string; id: string };
            let s = this.ids.get(t.symbol);
            if (!s) this.ids.set(t.symbol, (s = new Map()));
            const id = Number(t.id);
            s.set(id, (s.get(id) ?? 0) + 1);
            this.counts.trades++;
            const w = this.since > 0 ? this.watched.get(t.symbol) : undefined;
            if (w) {
              const now = Date.now();
              w.longest = Math.max(w.longest, now - w.last);
              w.last = now;
            }
          } else if (kind === 'gaps') {
            const g = (await codec.decode(m.value)).value as { symbol: string; channel: string; from_ts: number; to_ts: number | null; reason: string };
            this.gaps.push({ symbol: g.symbol, channel: g.channel, from: Number(g.from_ts) / 1000, to: g.to_ts === null ? null : Number(g.to_ts) / 1000, reason: g.reason });
          } else {
            this.counts[kind as Kind]++;
          }
        }
      },
    });
    this.stopFn = async () => {
      await consumer.disconnect();
    };
  }

  /** From now on, the longest silence of each of `symbols` (trades arriving in Kafka). */
  watch(symbols: readonly string[]): void {
    this.since = Date.now();
    for (const s of symbols) this.watched.set(s, { last: this.since, longest: 0 });
  }

  /** Each watched symbol's longest silence (ms) since `watch`, up to now. */
  silences(): number[] {
    const now = Date.now();
    return [...this.watched.values()].map((w) => Math.max(w.longest, now - w.last));
  }

  total(): number {
    return KINDS.reduce((n, k) => n + this.counts[k], 0);
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
  }
}

// ---------------------------------------------------------------------------------------------
// The gateway processes.

function writeConfig(dir: string, prefix: string, entry: string, sim: SimProc, symbols: readonly string[]): string {
  const file = path.join(dir, `${entry}.json`); // JSON is YAML
  const cfg = {
    kafka: { topicPrefix: prefix },
    gateway: { metricsPort: 0 },
    exchanges: [
      {
        id: 'binance',
        name: entry,
        symbols,
        channels: {
          trades: { mode: 'ws' },
          ticker: { mode: 'ws' },
          ohlcv: { mode: 'ws', timeframes: ['1m'] },
          book: { mode: 'ws', depth: 10 },
        },
        backfillLookbackMinutes: 0,
        options: { ...sim.ccxtOptions, enableRateLimit: false },
      },
    ],
  };
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** True when this checkout's gateway can share an entry's instruments between processes. */
function shardingExists(): boolean {
  return existsSync(path.join(ROOT, 'gateways', 'shard.ts'));
}

/** Where each gateway child serves its metrics (from its start-up line). */
const metricsUrls = new WeakMap<ChildProcess, string>();

interface GatewayCounters {
  received: number;
  acked: number;
  buffered: number;
}

/** Sums of the gateway's own counters: records received from the exchange, acknowledged by Kafka, held. */
async function gatewayCounters(children: readonly ChildProcess[]): Promise<GatewayCounters> {
  const c: GatewayCounters = { received: 0, acked: 0, buffered: 0 };
  for (const child of children) {
    const url = metricsUrls.get(child);
    if (!url || child.exitCode !== null || child.signalCode !== null) continue;
    try {
      const text = await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).text();
      for (const line of text.split('\n')) {
        const m = /^(tickflow_gateway_(?:messages_total|produced_records_total|buffered_records))(?:\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
        if (!m) continue;
        const v = Number(m[2]);
        if (m[1] === 'tickflow_gateway_messages_total') c.received += v;
        else if (m[1] === 'tickflow_gateway_produced_records_total') c.acked += v;
        else c.buffered += v;
      }
    } catch {
      // a process being killed
    }
  }
  return c;
}

function startGateway(config: string, brokers: readonly string[], extra: readonly string[], label: string, problems: string[], notes: string[]): ChildProcess {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'tickflow.js'), 'gateway', '--config', config, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KAFKA_BROKERS: brokers.join(','), LOG_LEVEL: 'warn', LOG_FORMAT: 'json' },
  });
  const tail: string[] = [];
  const lines = (s: NodeJS.ReadableStream, what: string) =>
    createInterface({ input: s }).on('line', (l) => {
      tail.push(l.slice(0, 300));
      const m = /metrics at (\S+\/metrics)/.exec(l);
      if (m) metricsUrls.set(child, m[1]!);
      if (tail.length > 5) tail.shift();
      if (/"level":\s*(50|60)|^tickflow gateway: error/.test(l) && problems.length < 200) problems.push(`${label} ${what}: ${l.slice(0, 200)}`);
    });
  lines(child.stdout!, 'stdout');
  lines(child.stderr!, 'stderr');
  child.once('exit', (code, signal) => {
    if (signal === 'SIGTERM' || (code === 0 && signal === null)) return;
    notes.push(`${label} exited (${code ?? signal}); its last lines: ${tail.join(' | ')}`);
  });
  return child;
}

// ---------------------------------------------------------------------------------------------
// One run.

interface Run {
  name: string;
  processes: number;
  recordsPerSecond: Record<Kind | 'total', number>;
  /** Offered by the sim in the window: trades printed, messages sent on its websockets. */
  simTradesPerSecond: number;
  simMessagesPerSecond: number;
  /** Per gateway process (the baseline: this process). */
  cpuPercent: number[];
  rssMb: number[];
  peakRssMb: number[];
  connections: number;
  maxStreamsPerConnection: number;
  expectedTrades: number;
  lost: number;
  stated: number;
  duplicates: number;
  gapRecords: number;
  /** Runs with a kill: the hottest instruments' silence after it (seconds). */
  takeover?: { watched: number; moved: number; medianS: number; maxS: number } | undefined;
  series: { t: number; rps: number }[];
  notes: string[];
}

function streamsOf(symbols: readonly string[]): string[] {
  return symbols.flatMap((s) => {
    const l = s.replace('/', '').toLowerCase();
    return [`${l}@aggTrade`, `${l}@ticker`, `${l}@kline_1m`, `${l}@depth@100ms`];
  });
}

async function measureWindow(
  name: string,
  sim: SimProc,
  rate: () => number,
  pids: () => number[],
  onHalf: (() => Promise<void>) | undefined,
  series: { t: number; rps: number }[],
): Promise<{ c0: Record<string, SimEmittedCounts>; c1: Record<string, SimEmittedCounts>; s0: SimStats; s1: SimStats; cpu: number[]; rss: number[]; peak: number[]; seconds: number; count: number }> {
  const pidList = pids();
  const p0 = pidList.map((p) => procSample(p));
  const peak = pidList.map(() => 0);
  const rssSum = pidList.map(() => 0);
  const rssN = pidList.map(() => 0);
  const [c0, s0] = await Promise.all([simGet<Record<string, SimEmittedCounts>>(sim, '/emitted/counts'), simGet<SimStats>(sim, '/stats')]);
  const r0 = rate();
  const t0 = Date.now();
  let prev = r0;
  for (let s = 1; s <= SECONDS; s++) {
    await sleep(1000);
    if (onHalf && s === Math.floor(SECONDS / 2)) await onHalf();
    const now = rate();
    series.push({ t: s, rps: now - prev });
    const samples = pidList.map((p) => procSample(p));
    samples.forEach((x, i) => {
      if (!x) return;
      peak[i] = Math.max(peak[i]!, x.rssKb);
      rssSum[i]! += x.rssKb;
      rssN[i]!++;
    });
    const rss = samples.map((x) => (x ? `${Math.round(x.rssKb / 1024)} MB` : 'gone')).join(', ');
    out(`  ${name}: t+${s}s ${fmt(now - prev)} records/s (mean ${fmt((now - r0) / ((Date.now() - t0) / 1000))}), RSS ${rss}`);
    prev = now;
  }
  const seconds = (Date.now() - t0) / 1000;
  const p1 = pidList.map((p) => procSample(p));
  const [c1, s1] = await Promise.all([simGet<Record<string, SimEmittedCounts>>(sim, '/emitted/counts'), simGet<SimStats>(sim, '/stats')]);
  const cpu = pidList.map((_, i) => {
    const a = p0[i];
    const b = p1[i];
    return a && b ? ((b.cpuTicks - a.cpuTicks) / CLK_TCK / seconds) * 100 : NaN;
  });
  return { c0, c1, s0, s1, cpu, rss: rssSum.map((x, i) => x / Math.max(1, rssN[i]!) / 1024), peak: peak.map((x) => x / 1024), seconds, count: rate() - r0 };
}

/** The baseline: a plain ws client here, reading the same streams. */
async function baseline(sim: SimProc, symbols: readonly string[]): Promise<Run> {
  const streams = streamsOf(symbols);
  const counts: Record<Kind, number> = { trades: 0, tickers: 0, candles: 0, books: 0 };
  const kindOf: Record<string, Kind> = { aggTrade: 'trades', '24hrTicker': 'tickers', kline: 'candles', depthUpdate: 'books' };
  const sockets: WebSocket[] = [];
  const notes: string[] = [];
  for (let i = 0; i < streams.length; i += 1024) {
    const ws = new WebSocket(`${sim.wsUrl}/stream/ws/${sockets.length}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString()) as { e?: string };
      const k = m.e ? kindOf[m.e] : undefined;
      if (k) counts[k]++;
    });
    ws.on('close', (code) => notes.push(`socket closed ${code}`));
    const mine = streams.slice(i, i + 1024);
    for (let j = 0; j < mine.length; j += 200) {
      ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: mine.slice(j, j + 200), id: j }));
      await sleep(250); // Binance: at most 5 incoming messages a second per connection
    }
    sockets.push(ws);
  }
  out(`  baseline: ${sockets.length} sockets, ${fmt(streams.length)} streams; warming up ${Math.min(WARMUP, 5)} s`);
  await sleep(Math.min(WARMUP, 5) * 1000);
  const total = () => KINDS.reduce((n, k) => n + counts[k], 0);
  const before = { ...counts };
  const cpu0 = process.cpuUsage();
  const series: { t: number; rps: number }[] = [];
  const w = await measureWindow('baseline', sim, total, () => [process.pid], undefined, series);
  const cpu = process.cpuUsage(cpu0);
  for (const s of sockets) {
    s.removeAllListeners('close');
    s.terminate();
  }
  const per = (k: Kind) => (counts[k] - before[k]) / w.seconds;
  const conns = w.s1.dialects.binance?.connections ?? [];
  return {
    name: 'baseline: plain ws client',
    processes: 1,
    recordsPerSecond: { trades: per('trades'), tickers: per('tickers'), candles: per('candles'), books: per('books'), total: w.count / w.seconds },
    simTradesPerSecond: (w.s1.tradesGenerated - w.s0.tradesGenerated) / w.seconds,
    simMessagesPerSecond: ((w.s1.ws.messagesSent ?? 0) - (w.s0.ws.messagesSent ?? 0)) / w.seconds,
    cpuPercent: [((cpu.user + cpu.system) / 1e6 / w.seconds) * 100],
    rssMb: [process.memoryUsage().rss / 1048576],
    peakRssMb: [process.memoryUsage().rss / 1048576],
    connections: conns.length,
    maxStreamsPerConnection: Math.max(0, ...conns.map((c) => c.streams)),
    expectedTrades: NaN,
    lost: NaN,
    stated: NaN,
    duplicates: NaN,
    gapRecords: 0,
    series,
    notes,
  };
}

/** Trades the sim printed in [c0, c1) per symbol that Kafka lacks (or holds twice), and how many of the missing ones gap records state. */
async function lossReport(sim: SimProc, tally: KafkaTally, c0: Record<string, SimEmittedCounts>, c1: Record<string, SimEmittedCounts>, notes: string[]): Promise<{ expected: number; lost: number; stated: number; duplicates: number }> {
  let expected = 0;
  let duplicates = 0;
  const missing = new Map<string, number[]>();
  for (const [symbol, b] of Object.entries(c1)) {
    const a = c0[symbol];
    const from = a ? a.nextId : b.firstLiveId;
    const got = tally.ids.get(symbol);
    for (let id = from; id < b.nextId; id++) {
      expected++;
      const n = got?.get(id) ?? 0;
      if (n === 0) {
        let m = missing.get(symbol);
        if (!m) missing.set(symbol, (m = []));
        m.push(id);
      } else if (n > 1) duplicates += n - 1;
    }
  }
  let lost = 0;
  let stated = 0;
  const [firstMissing] = missing;
  if (firstMissing) {
    const [symbol, ids] = firstMissing;
    const held = [...(tally.ids.get(symbol)?.keys() ?? [])];
    notes.push(`first missing: ${symbol} ${ids.length} ids from ${ids[0]} (window ${c0[symbol]?.nextId}..${c1[symbol]!.nextId}); Kafka holds ${held.length} of its ids${held.length ? `, ${Math.min(...held)}..${Math.max(...held)}` : ''}`);
  }
  for (const [symbol, ids] of missing) {
    // A trades gap (an outage) or a kafka gap (records dropped from a full gateway buffer) states the loss.
    const gaps = tally.gaps.filter((g) => g.symbol === symbol && (g.channel === 'trades' || g.channel === 'kafka'));
    const trades = await simGet<SimTrade[]>(sim, `/emitted/trades?symbol=${encodeURIComponent(symbol)}&fromId=${ids[0]}`);
    const time = new Map(trades.map((t) => [t.id, t.timestamp]));
    for (const id of ids) {
      const ts = time.get(id);
      if (ts !== undefined && gaps.some((g) => ts >= g.from && (g.to === null || ts <= g.to))) stated++;
      else lost++;
    }
  }
  return { expected, lost, stated, duplicates };
}

/** `n` gateway processes on the same entry (n > 1: sharing it through a consumer group), one killed halfway when n > 1. */
async function gatewayRun(n: number, sim: SimProc, brokers: readonly string[], symbols: readonly string[], dir: string): Promise<Run> {
  const prefix = `benchscale${randomBytes(3).toString('hex')}`;
  const entry = `scale${randomBytes(2).toString('hex')}`;
  const config = writeConfig(dir, prefix, entry, sim, symbols);
  const name = n === 1 ? '1 gateway process' : `${n} gateway processes, one killed`;
  const problems: string[] = [];
  const tally = new KafkaTally();
  // A topic just created may not be served yet ("This server does not host this topic-partition").
  for (let attempt = 1; ; attempt++) {
    try {
      await tally.start(brokers, prefix);
      break;
    } catch (err) {
      await tally.stop().catch(() => undefined);
      if (attempt >= 5) throw err;
      await sleep(2000);
    }
  }
  const group = `${prefix}-shard`;
  const notes: string[] = [];
  const children = Array.from({ length: n }, (_, i) => startGateway(config, brokers, n > 1 ? ['--shard-group', group] : [], `gateway ${i + 1}`, problems, notes));
  try {
    const started = Date.now();
    out(`  ${name}: ${fmt(symbols.length)} instruments × 4 channels, topics ${prefix}.*; waiting for records in Kafka`);
    while (tally.total() === 0) {
      if (children.some((c) => c.exitCode !== null)) throw new Error(`a gateway exited with ${children.find((c) => c.exitCode !== null)!.exitCode}: ${problems.slice(0, 3).join(' | ')}`);
      if ((Date.now() - started) / 1000 > START_TIMEOUT_S) throw new Error(`no records within ${START_TIMEOUT_S} s: ${problems.slice(0, 3).join(' | ')}`);
      await sleep(500);
    }
    out(`  ${name}: first records after ${((Date.now() - started) / 1000).toFixed(1)} s; warming up ${WARMUP} s`);
    for (let s = 0; s < WARMUP; s += 5) {
      await sleep(5000);
      out(`  ${name}: warm-up ${fmt(tally.total())} records so far (${KINDS.map((k) => `${k} ${fmt(tally.counts[k])}`).join(', ')})`);
    }
    const series: { t: number; rps: number }[] = [];
    const kill =
      n > 1
        ? async () => {
            out(`  ${name}: killing gateway ${n} (SIGKILL)`);
            notes.push(`gateway ${n} killed at t+${Math.floor(SECONDS / 2)}s`);
            children[n - 1]!.kill('SIGKILL');
            // The hottest instruments trade several times a second: a silence of seconds is an instrument not served.
            tally.watch(symbols.slice(0, TAKEOVER_WATCHED));
          }
        : undefined;
    const before = { ...tally.counts };
    const g0 = await gatewayCounters(children);
    const w = await measureWindow(name, sim, () => tally.total(), () => children.map((c) => c.pid!), kill, series);
    const after = { ...tally.counts };
    let takeover: Run['takeover'];
    if (n > 1) {
      const silences = tally.silences();
      const dark = silences.filter((ms) => ms > 3_000).sort((a, b) => a - b);
      takeover = { watched: silences.length, moved: dark.length, medianS: dark.length ? dark[Math.floor(dark.length / 2)]! / 1000 : 0, maxS: dark.length ? dark[dark.length - 1]! / 1000 : 0 };
      notes.push(
        `takeover: ${dark.length} of the ${silences.length} hottest instruments went silent after the kill (the killed process's); silent for median ${takeover.medianS.toFixed(1)} s, max ${takeover.maxS.toFixed(1)} s (kill → trades in Kafka again; the session timeout is 10 s of it)`,
      );
    }
    const g1 = await gatewayCounters(children);
    // Counters of a process killed in the window are gone with it: the survivors' deltas are a floor then.
    notes.push(
      `the gateways' own counters in the window: ${fmt((g1.received - g0.received) / w.seconds)} records/s received from the exchange, ${fmt((g1.acked - g0.acked) / w.seconds)}/s acknowledged by Kafka, ${fmt(g1.buffered)} held at the end${n > 1 ? ' (survivors only)' : ''}`,
    );
    // Drain: what the sim printed in the window reaches Kafka (a gateway behind catches up, a
    // moved instrument is refilled), until every id is there or none came for 10 s (120 s at most).
    const missingNow = (): number => {
      let n = 0;
      for (const [symbol, b] of Object.entries(w.c1)) {
        const got = tally.ids.get(symbol);
        for (let id = w.c0[symbol]?.nextId ?? b.firstLiveId; id < b.nextId; id++) if (!got?.has(id)) n++;
      }
      return n;
    };
    let quiet = 0;
    let prev = missingNow();
    const drainStart = Date.now();
    while (prev > 0 && quiet < 10 && Date.now() - drainStart < 120_000) {
      await sleep(1000);
      const m = missingNow();
      quiet = m === prev ? quiet + 1 : 0;
      prev = m;
    }
    notes.push(`drained ${((Date.now() - drainStart) / 1000).toFixed(0)} s after the window`);
    const loss = await lossReport(sim, tally, w.c0, w.c1, notes);
    const conns = w.s1.dialects.binance?.connections ?? [];
    const per = (k: Kind) => (after[k] - before[k]) / w.seconds;
    if (problems.length) notes.push(`${problems.length} error lines, first: ${problems[0]!.slice(0, 160)}`);
    return {
      name,
      processes: n,
      recordsPerSecond: { trades: per('trades'), tickers: per('tickers'), candles: per('candles'), books: per('books'), total: w.count / w.seconds },
      simTradesPerSecond: (w.s1.tradesGenerated - w.s0.tradesGenerated) / w.seconds,
      simMessagesPerSecond: ((w.s1.ws.messagesSent ?? 0) - (w.s0.ws.messagesSent ?? 0)) / w.seconds,
      cpuPercent: w.cpu,
      rssMb: w.rss,
      peakRssMb: w.peak,
      connections: conns.length,
      maxStreamsPerConnection: Math.max(0, ...conns.map((c) => c.streams)),
      expectedTrades: loss.expected,
      lost: loss.lost,
      stated: loss.stated,
      duplicates: loss.duplicates,
      gapRecords: tally.gaps.length,
      takeover,
      series,
      notes,
    };
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
    await tally.stop().catch(() => undefined);
    await deleteTopics(brokers, prefix).catch(() => undefined);
  }
}

async function deleteTopics(brokers: readonly string[], prefix: string): Promise<void> {
  const admin = createKafka({ brokers, clientId: 'bench', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }).admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (topics.length) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// Output.

function chart(runs: readonly Run[]): string {
  const W = 720;
  const H = 320;
  const pad = 50;
  const maxT = Math.max(1, ...runs.flatMap((r) => r.series.map((p) => p.t)));
  const maxY = Math.max(1, ...runs.flatMap((r) => r.series.map((p) => p.rps))) * 1.1;
  const colors = ['#888', '#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const x = (t: number) => pad + ((W - 2 * pad) * t) / maxT;
  const y = (v: number) => H - pad + (-(H - 2 * pad) * v) / maxY;
  const lines = runs.map((r, i) => `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${r.series.map((p) => `${x(p.t).toFixed(1)},${y(p.rps).toFixed(1)}`).join(' ')}"/>`);
  const legend = runs.map((r, i) => `<text x="${pad + 10}" y="${pad + 16 * i}" fill="${colors[i % colors.length]}" font-size="12">${r.name}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">bench:scale: records/s into Kafka (baseline: messages/s read), ${fmt(N)} instruments, ${fmt(RATE)} trades/s, skew ${SKEW}</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="black"/>
<text x="${pad - 5}" y="${pad}" text-anchor="end" font-size="11">${fmt(maxY)}</text><text x="${pad - 5}" y="${H - pad}" text-anchor="end" font-size="11">0</text>
<text x="${W - pad}" y="${H - pad + 16}" text-anchor="end" font-size="11">${maxT} s</text>
${lines.join('\n')}
${legend.join('\n')}
</svg>
`;
}

async function main(): Promise<void> {
  const kafka = await benchBrokers();
  const brokers = kafka.brokers;
  const loadBefore = loadavg();
  const started = Date.now();
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-bench-scale-'));
  const sharding = shardingExists();
  out(
    `bench:scale: ${fmt(N)} instruments (trades, tickers, 1m candles, top-10 books), ${fmt(RATE)} trades/s in total, Zipf skew ${SKEW}; sim in a child process (Binance dialect), ` +
      `Kafka ${brokers.join(',')}; ${SECONDS} s measured after ${WARMUP} s warm-up; ${cpus().length} cores, load ${loadBefore.map((l) => l.toFixed(1)).join(' ')}`,
  );
  const sim = await startSim();
  const runs: Run[] = [];
  try {
    const symbols = await simGet<string[]>(sim, '/markets');
    if (argv.only !== 'gateway') {
      out('baseline: a plain ws client reading the same streams');
      runs.push(await baseline(sim, symbols));
    }
    if (argv.only !== 'baseline') {
      for (const n of PROCESSES) {
        if (n > 1 && !sharding) {
          out(`${n} gateway processes: skipped, this checkout cannot shard yet (gateways/shard.ts and --shard-group are missing)`);
          continue;
        }
        out(`${n} gateway process${n > 1 ? 'es' : ''}`);
        try {
          runs.push(await gatewayRun(n, sim, brokers, symbols, dir));
        } catch (err) {
          out(`  ${n} gateway process${n > 1 ? 'es' : ''}: failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
  } finally {
    await stopChild(sim.child);
    rmSync(dir, { recursive: true, force: true });
    await kafka.stop();
  }
  const loadAfter = loadavg();
  const minutes = (Date.now() - started) / 60_000;

  out('');
  console.table(
    runs.map((r) => ({
      run: r.name,
      'records/s': fmt(r.recordsPerSecond.total),
      trades: fmt(r.recordsPerSecond.trades),
      tickers: fmt(r.recordsPerSecond.tickers),
      candles: fmt(r.recordsPerSecond.candles),
      books: fmt(r.recordsPerSecond.books),
      'sim trades/s': fmt(r.simTradesPerSecond),
      'sim msgs/s': fmt(r.simMessagesPerSecond),
      'CPU % core': r.cpuPercent.map((c) => (Number.isFinite(c) ? c.toFixed(0) : '-')).join(' / '),
      'RSS MB (peak)': r.rssMb.map((m, i) => `${Math.round(m)} (${Math.round(r.peakRssMb[i]!)})`).join(' / '),
      'ws conns': r.connections,
      'max streams/conn': r.maxStreamsPerConnection,
      'trades expected': fmt(r.expectedTrades),
      lost: fmt(r.lost),
      'in gaps': fmt(r.stated),
      dup: fmt(r.duplicates),
      'gap recs': r.gapRecords,
      'takeover s (median/max)': r.takeover ? `${r.takeover.medianS.toFixed(1)} / ${r.takeover.maxS.toFixed(1)}` : '-',
    })),
  );
  for (const r of runs) for (const n of r.notes) out(`  ${r.name}: ${n}`);
  out(
    `records/s: as they arrived in Kafka in the window (baseline: messages read). CPU: per gateway process from /proc (baseline: this process). lost: trades the sim printed in the window missing from Kafka and stated by no gap record; in gaps: missing but inside a gap record of that symbol. ` +
      `Load average ${loadBefore[0]!.toFixed(1)} before, ${loadAfter[0]!.toFixed(1)} after (${cpus().length} cores); ${minutes.toFixed(1)} min.`,
  );
  const resDir = path.join(process.cwd(), 'bench-results');
  mkdirSync(resDir, { recursive: true });
  writeFileSync(
    path.join(resDir, 'scale.json'),
    `${JSON.stringify({ at: new Date(started).toISOString(), minutes, machine: { cores: cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: loadAfter }, args: { instruments: N, rate: RATE, skew: SKEW, seconds: SECONDS, warmup: WARMUP, processes: PROCESSES }, sharding, runs }, null, 2)}\n`,
  );
  writeFileSync(path.join(resDir, 'scale.svg'), chart(runs));
  out(`written: ${path.join(resDir, 'scale.json')}, chart ${path.join(resDir, 'scale.svg')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
