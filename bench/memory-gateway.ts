/**
 * `npm run bench:memory`: the resident memory of one `tickflow gateway` process, on its own, fed
 * by the sim — idle after start, at 5,000 trades/s, at saturation, and back at 5,000/s — with a
 * breakdown of where it goes (V8 heap, its spaces, external and ArrayBuffers, the rest native).
 *
 *   npm run bench:memory [-- --phase-seconds 45 --rates 5000,60000,5000 --dialect binance
 *                            --symbols 2 --channels trades,ticker,ohlcv,book --repo DIR
 *                            --node-flags=--optimize-for-size --heap-snapshots]
 *
 * The sim runs in a child process (`sim/main.ts`, the dialect asked for, only its trade rate
 * changed between phases through its control API); the gateway runs as `node bin/tickflow.js
 * gateway --config <generated>` in another (of `--repo`, default this checkout: `--repo
 * /path/to/other/checkout` measures another version with the same sim and the same bench), with
 * one entry on the sim: the default config's channels (trades, ticker, 1m candles, top-10 book)
 * unless `--channels` says otherwise, 60 minutes of candle history. Phases: idle (the sim at 0
 * trades/s) then one per `--rates` entry (total trades/s over the symbols), `--phase-seconds`
 * each. Per phase: trades/s acknowledged by Kafka (the gateway's own
 * tickflow_gateway_produced_records_total), the records buffered at its end (outbox and in flight,
 * tickflow_gateway_buffered_records), the gateway's CPU, RSS at the end and the peak
 * (/proc/<pid>/status sampled every 250 ms), and the probe's figures at the end (a preload
 * reporting process.memoryUsage() and V8's heap spaces once a second; the live heap after a
 * full GC). `--heap-snapshots` writes a V8 heap snapshot at the end of every phase (kept in the
 * printed folder; slow on a large heap). Kafka: KAFKA_BROKERS, else a throwaway broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../core/config.ts';
import { createKafka } from '../core/kafka.ts';
import { freePort } from '../infra/process.ts';
import { benchBrokers } from './kafka.ts';
import { procMemory } from './proc.ts';

const { values: args } = parseArgs({
  options: {
    gateway: { type: 'boolean', default: true },
    'phase-seconds': { type: 'string', default: '45' },
    'idle-seconds': { type: 'string', default: '20' },
    rates: { type: 'string', default: '5000,60000,5000' },
    dialect: { type: 'string', default: 'binance' },
    symbols: { type: 'string', default: '2' },
    channels: { type: 'string', default: 'trades,ticker,ohlcv,book' },
    repo: { type: 'string', default: REPO_ROOT },
    'node-flags': { type: 'string', default: '' },
    'heap-snapshots': { type: 'boolean', default: false },
  },
});
const PHASE_S = Number(args['phase-seconds']);
const IDLE_S = Number(args['idle-seconds']);
const RATES = args.rates.split(',').map(Number);
const SYMBOLS = Array.from({ length: Number(args.symbols) }, (_, i) => ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'BNB/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'TRX/USDT'][i]).filter(
  (s): s is string => s !== undefined,
);
const CHANNELS = args.channels.split(',').map((c) => c.trim());
const REPO = path.resolve(args.repo);
const NODE_FLAGS = args['node-flags'].split(/\s+/).filter(Boolean);

const out = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number | undefined) => (bytes === undefined ? '-' : `${Math.round(bytes / 1048576)}`);
const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

/** The preload: memoryUsage() and V8's heap spaces once a second; a full GC or a heap snapshot on request. */
const PROBE = `
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';
const file = process.env.TICKFLOW_MEMORY_PROBE;
let liveHeap;
if (file) {
  setInterval(() => {
    if (existsSync(file + '.gc') && globalThis.gc) {
      const snap = readFileSync(file + '.gc', 'utf8');
      rmSync(file + '.gc', { force: true });
      globalThis.gc();
      liveHeap = process.memoryUsage().heapUsed;
      if (snap) v8.writeHeapSnapshot(snap);
    }
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
    writeFileSync(file + '.tmp', JSON.stringify({ ...process.memoryUsage(), spaces, liveHeap }));
    renameSync(file + '.tmp', file);
  }, 1000).unref();
}
`;

interface Probe {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, number>;
  liveHeap?: number;
}

/** CPU seconds (user + system) of a process. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

interface SimProc {
  child: ChildProcess;
  url: string;
  dialects: Record<string, { ccxtId: string; ccxtOptions: { options?: Record<string, unknown> } & Record<string, unknown> }>;
}

async function startSim(): Promise<SimProc> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sim', 'main.ts'), '--port', '0', '--rate', '0', '--symbols', SYMBOLS.join(','), '--history-days', '1', '--dialects', args.dialect], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  const info = JSON.parse(line) as Omit<SimProc, 'child'>;
  if (!info.dialects[args.dialect]) throw new Error(`the sim does not serve dialect ${args.dialect}`);
  return { child, ...info };
}

async function setRate(sim: SimProc, total: number): Promise<void> {
  const r = await fetch(`${sim.url}/__sim/faults`, { method: 'POST', body: JSON.stringify({ kind: 'tradeRate', perSecond: total / SYMBOLS.length }) });
  if (!r.ok) throw new Error(`sim refused the trade rate: ${r.status} ${await r.text()}`);
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(t);
  return code;
}

/** A sample of the gateway's own metrics (the first series whose labels match). */
async function metric(metricsUrl: string, name: string, labels: RegExp = /.*/): Promise<number> {
  const txt = await (await fetch(metricsUrl)).text();
  for (const m of txt.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'gm'))) if (labels.test(m[1] ?? '')) return Number(m[2]);
  return 0;
}
const producedTrades = (url: string) => metric(url, 'tickflow_gateway_produced_records_total', /kind="trade"/);

const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-bench-gwmem-'));
const probeFile = path.join(dir, 'probe.json');
writeFileSync(path.join(dir, 'probe.mjs'), PROBE);
const readProbe = (): Probe | undefined => {
  try {
    return JSON.parse(readFileSync(probeFile, 'utf8')) as Probe;
  } catch {
    return undefined;
  }
};

const kafka = await benchBrokers();
const sim = await startSim();
const prefix = `benchmem${randomBytes(3).toString('hex')}`;
const metricsPort = await freePort();
const d = sim.dialects[args.dialect]!;
const channelConfig: Record<string, Record<string, unknown>> = {
  trades: {},
  ticker: {},
  ohlcv: { timeframes: ['1m'] },
  book: { depth: 10, intervalMs: 1000 },
};
const config = {
  kafka: { brokers: kafka.brokers, topicPrefix: prefix },
  gateway: { metricsPort },
  exchanges: [
    {
      id: d.ccxtId,
      name: `mem-${args.dialect}`,
      symbols: SYMBOLS,
      channels: Object.fromEntries(CHANNELS.map((c) => [c, channelConfig[c] ?? {}])),
      backfillLookbackMinutes: 60,
      options: { ...d.ccxtOptions, enableRateLimit: false },
    },
  ],
};
const configFile = path.join(dir, 'gateway.yaml');
writeFileSync(configFile, JSON.stringify(config)); // JSON is YAML

const load0 = loadavg();
out(
  `bench:memory: one tickflow gateway process (${REPO}${NODE_FLAGS.length ? `, node ${NODE_FLAGS.join(' ')}` : ''}) on the sim (${args.dialect}, ${SYMBOLS.join(', ')}; ${CHANNELS.join(', ')}), ` +
    `Kafka ${kafka.brokers.join(',')}; idle ${IDLE_S} s, then ${RATES.map(fmt).join(', ')} trades/s, ${PHASE_S} s each; ${cpus().length} cores, load ${load0.map((l) => l.toFixed(2)).join(' ')}`,
);

const started = Date.now();
const gw = spawn(process.execPath, [...NODE_FLAGS, '--expose-gc', '--import', path.join(dir, 'probe.mjs'), path.join(REPO, 'bin', 'tickflow.js'), 'gateway', '--config', configFile], {
  cwd: REPO,
  env: { ...process.env, KAFKA_BROKERS: kafka.brokers.join(','), TICKFLOW_MEMORY_PROBE: probeFile, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let printed = '';
await new Promise<void>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`tickflow gateway did not come up within 120 s:\n${printed}`)), 120_000);
  const onData = (b: Buffer) => {
    printed += b.toString();
    if (printed.includes('Ctrl-C to stop')) {
      clearTimeout(timer);
      resolve();
    }
  };
  gw.stdout.on('data', onData);
  gw.stderr.on('data', (b: Buffer) => {
    onData(b);
    process.stderr.write(b);
  });
  gw.once('exit', (code) => reject(new Error(`tickflow gateway exited (${code}):\n${printed}`)));
});
const pid = gw.pid!;
const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
out(`gateway up in ${((Date.now() - started) / 1000).toFixed(1)} s (pid ${pid}); RSS ${mb(procMemory(pid).rss)} MB`);

let peak = 0;
const sampler = setInterval(() => {
  try {
    peak = Math.max(peak, procMemory(pid).rss);
  } catch {
    // exited
  }
}, 250);

interface Row {
  phase: string;
  offered: number;
  acked: number;
  cpu: number;
  /** Records in the outbox or in flight at the end (tickflow_gateway_buffered_records). */
  buffered: number;
  rss: number;
  peak: number;
  probe: Probe | undefined;
  liveHeap: number | undefined;
}

/** Asks the probe for a full GC (and a heap snapshot): the live heap after it. */
async function gcNow(snapshot: string): Promise<number | undefined> {
  writeFileSync(`${probeFile}.gc`, snapshot);
  const before = readProbe()?.liveHeap;
  for (let i = 0; i < 600; i++) {
    await sleep(200);
    const live = existsSync(`${probeFile}.gc`) ? undefined : readProbe()?.liveHeap;
    if (live !== undefined && live !== before) return live;
  }
  return undefined;
}

async function phase(label: string, rate: number, seconds: number): Promise<Row> {
  await setRate(sim, rate);
  peak = 0;
  const t0 = Date.now();
  const p0 = await producedTrades(metricsUrl);
  const c0 = cpuSeconds(pid);
  for (let s = 1; s <= seconds; s++) {
    await sleep(1000);
    if (s % 15 === 0 || s === seconds) out(`  ${label}: t+${s}s RSS ${mb(procMemory(pid).rss)} MB (peak ${mb(peak)} MB)`);
  }
  const p1 = await producedTrades(metricsUrl);
  const dt = (Date.now() - t0) / 1000;
  const row: Row = { phase: label, offered: rate, acked: (p1 - p0) / dt, cpu: (cpuSeconds(pid) - c0) / dt, buffered: await metric(metricsUrl, 'tickflow_gateway_buffered_records'), rss: procMemory(pid).rss, peak, probe: readProbe(), liveHeap: undefined };
  row.liveHeap = await gcNow(args['heap-snapshots'] ? path.join(dir, `${label.replace(/[^\w]+/g, '-')}.heapsnapshot`) : '');
  return row;
}

const rows: Row[] = [];
let code: number | null = null;
try {
  rows.push(await phase('idle', 0, IDLE_S));
  for (const [i, rate] of RATES.entries()) rows.push(await phase(`${i + 1}: ${fmt(rate)}/s`, rate, PHASE_S));
} finally {
  clearInterval(sampler);
  const hwm = existsSync(`/proc/${pid}/status`) ? procMemory(pid).hwm : 0;
  code = await stop(gw, 'SIGINT');
  await stop(sim.child);
  const admin = createKafka({ brokers: kafka.brokers, clientId: 'bench', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }).admin();
  await admin
    .connect()
    .then(async () => {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
      if (topics.length) await admin.deleteTopics({ topics });
    })
    .catch(() => undefined)
    .finally(() => admin.disconnect());
  await kafka.stop();
  const load1 = loadavg();
  out('');
  out('| phase | trades/s offered | acked | buffered records | gateway CPU | RSS end (peak) MB | heap used / total MB (live after GC) | new / old / code / large-object space MB | external (ArrayBuffers) MB | rest: native MB |');
  out('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const p = r.probe;
    const sp = (k: string) => mb(p?.spaces[k]);
    out(
      `| ${r.phase} | ${fmt(r.offered)} | ${fmt(r.acked)} | ${fmt(r.buffered)} | ${(r.cpu * 100).toFixed(0)} % | ${mb(r.rss)} (${mb(r.peak)}) | ${mb(p?.heapUsed)} / ${mb(p?.heapTotal)} (${mb(r.liveHeap)}) | ` +
        `${sp('new_space')} / ${sp('old_space')} / ${sp('code_space')} / ${sp('large_object_space')} | ${mb(p?.external)} (${mb(p?.arrayBuffers)}) | ${p ? mb(p.rss - p.heapTotal - p.external) : '-'} |`,
    );
  }
  out('');
  out(`VmHWM ${mb(hwm)} MB; gateway exited ${code} after SIGINT; ${((Date.now() - started) / 60_000).toFixed(1)} min; load ${load0[0]!.toFixed(2)} before, ${load1[0]!.toFixed(2)} after (${cpus().length} cores)`);
  if (args['heap-snapshots']) out(`heap snapshots in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
