/**
 * `npm run bench -- memory`: the resident memory of `tickflow start` (what `npm start` runs) —
 * idle, under a query load, and after it — with a breakdown of where it goes.
 *
 *   npm run bench -- memory [-- --idle-seconds 60 --load-seconds 180 --after-seconds 30
 *                              --concurrency 8 --subscribers 20 --brokers host:port]
 *
 * It starts `node bin/tickflow.js start` in a child process on a throwaway folder (its own data
 * directory, broker folder and free ports; the default config's offline exchange), waits until
 * it prints "press Ctrl-C", lets it idle, then drives a bounded load from this process: `concurrency`
 * HTTP loops over /v1/ohlcv (1m over the day, 1h, exchange candles), /v1/trades (full pages) and
 * /v1/sample, plus `subscribers` websocket clients on /v1/stream (all channels, with a `since`
 * replay, resubscribing every few seconds). Then it stops the load, waits, and stops the child
 * with SIGINT. RSS is sampled from /proc/<pid>/status every 250 ms (VmRSS; VmHWM for the peak).
 *
 * Breakdown: the child runs with a small preload (written to the temporary folder) that reports
 * process.memoryUsage() (V8 heap, external, ArrayBuffers) and the size of every WebAssembly
 * memory (PGlite's heap is the large one) once a second. Without --brokers the child starts its
 * own local Kafka broker (a separate JVM process, not counted). DATABASE_URL is ignored: the point
 * is the embedded database.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { parseDocument } from 'yaml';
import { DEFAULT_CONFIG_PATH, REPO_ROOT } from '../core/config.ts';
import { SERIES_TABLES } from '../schemas/catalog.ts';
import { freePort } from '../infra/process.ts';
import { procMemory } from './proc.ts';

const { values: args } = parseArgs({
  options: {
    'idle-seconds': { type: 'string', default: '60' },
    'load-seconds': { type: 'string', default: '180' },
    'after-seconds': { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '8' },
    subscribers: { type: 'string', default: '20' },
    brokers: { type: 'string' },
    'keep-dir': { type: 'boolean', default: false },
  },
});
const IDLE_S = Number(args['idle-seconds']);
const LOAD_S = Number(args['load-seconds']);
const AFTER_S = Number(args['after-seconds']);
const CONCURRENCY = Number(args.concurrency);
const SUBSCRIBERS = Number(args.subscribers);

const out = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number) => `${Math.round(bytes / 1048576)} MB`;

/** The preload: process.memoryUsage() and every WebAssembly.Memory's size, once a second, to a file. */
const PROBE = `
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
const file = process.env.TICKFLOW_MEMORY_PROBE;
const mems = new Set();
const track = (r) => { try { const inst = r && (r.instance ?? r); for (const v of Object.values(inst.exports ?? {})) if (v instanceof WebAssembly.Memory) mems.add(v); } catch {} return r; };
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (...a) { return track(await instantiate.apply(this, a)); };
WebAssembly.Memory = new Proxy(WebAssembly.Memory, { construct(t, a) { const m = Reflect.construct(t, a); mems.add(m); return m; } });
WebAssembly.Instance = new Proxy(WebAssembly.Instance, { construct(t, a) { return track(Reflect.construct(t, a)); } });
if (file && isMainThread) {
  setInterval(() => {
    const wasm = [...mems].map((m) => m.buffer.byteLength);
    let liveHeap;
    if (existsSync(file + '.gc') && globalThis.gc) {
      rmSync(file + '.gc', { force: true });
      globalThis.gc();
      liveHeap = process.memoryUsage().heapUsed;
    }
    writeFileSync(file + '.tmp', JSON.stringify({ ...process.memoryUsage(), wasm, liveHeap }));
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
  wasm: number[];
  /** heapUsed right after a full GC, when asked for one. */
  liveHeap?: number;
}

const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-bench-memory-'));
const probeFile = path.join(dir, 'probe.json');
writeFileSync(path.join(dir, 'probe.mjs'), PROBE);
const readProbe = (): Probe | undefined => {
  try {
    return JSON.parse(readFileSync(probeFile, 'utf8')) as Probe;
  } catch {
    return undefined;
  }
};

// The default config with its ports moved to free ones and its folders into the temporary one.
const simPort = await freePort();
const doc = parseDocument(readFileSync(DEFAULT_CONFIG_PATH, 'utf8')).toJS() as Record<string, Record<string, unknown>>;
doc.infra = { ...doc.infra, kafkaDataDir: path.join(dir, 'kafka'), kafkaPort: await freePort() };
doc.sim = { ...doc.sim, port: simPort };
doc.sink = { ...doc.sink, apiPort: 0 };
doc.api = { ...doc.api, port: 0 };
doc.gateway = { ...doc.gateway, metricsPort: 0 };
const configText = JSON.stringify(doc).replaceAll('127.0.0.1:9500', `127.0.0.1:${simPort}`);
const configFile = path.join(dir, 'tickflow.yaml');
writeFileSync(configFile, configText); // JSON is YAML

const env: NodeJS.ProcessEnv = { ...process.env, TICKFLOW_DB_DIR: path.join(dir, 'db'), TICKFLOW_MEMORY_PROBE: probeFile, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };
delete env.DATABASE_URL;
delete env.KAFKA_BROKERS;
if (args.brokers) env.KAFKA_BROKERS = args.brokers;
env.KAFKA_TOPIC_PREFIX = `bench-memory-${process.pid}`;

out(`tickflow start in ${dir} (idle ${IDLE_S} s, load ${LOAD_S} s: ${CONCURRENCY} HTTP loops + ${SUBSCRIBERS} websocket subscribers, after ${AFTER_S} s)`);
const started = Date.now();
const child = spawn(process.execPath, ['--expose-gc', '--import', path.join(dir, 'probe.mjs'), path.join(REPO_ROOT, 'bin', 'tickflow.js'), 'start', '--config', configFile], {
  cwd: REPO_ROOT,
  env,
  stdio: ['ignore', 'pipe', 'pipe'],
});
let printed = '';
const apiUrl = await new Promise<string>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`tickflow start did not come up within 300 s:\n${printed}`)), 300_000);
  const onData = (b: Buffer) => {
    printed += b.toString();
    const m = /chart:\s+(http:\/\/\S+?)\/?\n/.exec(printed);
    if (m && printed.includes('press Ctrl-C')) {
      clearTimeout(timer);
      resolve(m[1]!);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.once('exit', (code) => reject(new Error(`tickflow start exited (${code}):\n${printed}`)));
});
const pid = child.pid!;
out(`up in ${((Date.now() - started) / 1000).toFixed(0)} s at ${apiUrl} (pid ${pid}); RSS ${mb(procMemory(pid).rss)}`);

let peak = 0;
const sampler = setInterval(() => {
  try {
    peak = Math.max(peak, procMemory(pid).rss);
  } catch {
    // exited
  }
}, 250);

/** RSS and the probe's figures now, then the V8 heap's live size (after a full GC it is asked for). */
async function snapshot(label: string): Promise<{ label: string; rss: number; probe: Probe | undefined; liveHeap: number | undefined }> {
  const r = { label, rss: procMemory(pid).rss, probe: readProbe() };
  writeFileSync(`${probeFile}.gc`, '');
  let liveHeap: number | undefined;
  for (let i = 0; i < 50 && liveHeap === undefined; i++) {
    await sleep(200);
    if (!existsSync(`${probeFile}.gc`)) liveHeap = readProbe()?.liveHeap;
  }
  return { ...r, liveHeap };
}

await sleep(IDLE_S * 1000);
const idle = await snapshot(`idle ${IDLE_S} s`);
out(`idle: RSS ${mb(idle.rss)}`);

// The load.
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
// /v1/sample/<channel>, or the older /v1/sample?channel=: whichever the API's OpenAPI document declares.
const paths = Object.keys(((await (await fetch(`${apiUrl}/docs/json`)).json()) as { paths?: Record<string, unknown> }).paths ?? {});
const sample = (channel: string) => (paths.includes(`/v1/sample/${channel}`) ? `/v1/sample/${channel}?` : `/v1/sample?channel=${channel}&`);
const deadline = Date.now() + LOAD_S * 1000;
const counts = { ok: 0, other: 0, failed: 0, wsMessages: 0, wsBytes: 0 };
const iso = (ms: number) => new Date(ms).toISOString();
const queries = (): string[] => {
  const now = Date.now();
  const pick = SYMBOLS[Math.floor(Math.random() * SYMBOLS.length)]!;
  const q = `exchange=sim&symbol=${encodeURIComponent(pick)}`;
  return [
    `/v1/ohlcv?${q}&interval=1m&from=${iso(now - 86_400_000)}&source=exchange`,
    `/v1/ohlcv?${q}&interval=1m&from=${iso(now - 86_400_000)}&fill=prev`,
    `/v1/ohlcv?${q}&interval=5m&from=${iso(now - 7 * 86_400_000)}&fill=null`,
    `/v1/ohlcv?${q}&interval=1h&from=${iso(now - 30 * 86_400_000)}`,
    `/v1/trades?${q}&from=${iso(now - 3_600_000)}&limit=10000`,
    `${sample('trades')}${q}&field=price&agg=avg&interval=1s&from=${iso(now - 3_600_000)}&fill=prev`,
    `${sample('tickers')}${q}&field=last&agg=last&interval=10s&from=${iso(now - 3_600_000)}`,
    `/v1/tickers/latest`,
    `/v1/coverage`,
  ];
};
const httpLoop = async () => {
  while (Date.now() < deadline) {
    for (const p of queries()) {
      if (Date.now() >= deadline) break;
      try {
        const r = await fetch(apiUrl + p, { signal: AbortSignal.timeout(30_000) });
        await r.arrayBuffer();
        if (r.ok) counts.ok++;
        else counts.other++;
      } catch {
        counts.failed++;
      }
    }
  }
};
const subscriber = async (i: number) => {
  while (Date.now() < deadline) {
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${apiUrl.replace(/^http/, 'ws')}/v1/stream`);
      const done = () => {
        clearTimeout(timer);
        ws.terminate();
        resolve();
      };
      const timer = setTimeout(done, Math.min(Math.max(deadline - Date.now(), 0), 5_000 + (i % 5) * 1_000));
      // Even subscribers replay the last 10 minutes of both instruments, then go live; odd ones take
      // every instrument live.
      const sub = i % 2 === 0 ? { since: iso(Date.now() - 10 * 60_000), instruments: SYMBOLS.map((symbol) => ({ exchange: 'sim', symbol })) } : {};
      ws.on('open', () => ws.send(JSON.stringify({ op: 'subscribe', channels: SERIES_TABLES, ...sub })));
      ws.on('message', (m: Buffer) => {
        counts.wsMessages++;
        counts.wsBytes += m.length;
      });
      ws.on('error', done);
      ws.on('close', done);
    });
  }
};
const loadStarted = Date.now();
await Promise.all([...Array.from({ length: CONCURRENCY }, httpLoop), ...Array.from({ length: SUBSCRIBERS }, (_, i) => subscriber(i))]);
const underLoad = await snapshot('end of load');
const peakDuringLoad = peak;
out(`load: ${counts.ok} requests answered 2xx, ${counts.other} other, ${counts.failed} failed in ${((Date.now() - loadStarted) / 1000).toFixed(0)} s; ${counts.wsMessages} websocket messages (${mb(counts.wsBytes)})`);

await sleep(AFTER_S * 1000);
const after = await snapshot(`${AFTER_S} s after`);
const hwm = procMemory(pid).hwm;
clearInterval(sampler);

child.kill('SIGINT');
const code = await new Promise<number | null>((resolve) => {
  const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
  child.once('exit', (c) => {
    clearTimeout(t);
    resolve(c);
  });
});
if (!args['keep-dir']) rmSync(dir, { recursive: true, force: true });

const rows = [idle, underLoad, after];
const cell = (p: Probe | undefined, f: (p: Probe) => number) => (p ? mb(f(p)) : '-');
out('');
out('| moment | RSS | V8 heap used / total (live after a full GC) | external (of it ArrayBuffers) | of external: WebAssembly memory | rest: native (malloc, code) |');
out('| --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const p = r.probe;
  const wasmTotal = p ? p.wasm.reduce((a, b) => a + b, 0) : 0;
  out(
    `| ${r.label} | ${mb(r.rss)} | ${cell(p, (x) => x.heapUsed)} / ${cell(p, (x) => x.heapTotal)} (${r.liveHeap === undefined ? '-' : mb(r.liveHeap)}) | ${cell(p, (x) => x.external)} (${cell(p, (x) => x.arrayBuffers)}) | ${p ? mb(wasmTotal) : '-'} | ${p ? mb(r.rss - p.heapTotal - p.external) : '-'} |`,
  );
}
out('');
out(`peak RSS during the load ${mb(peakDuringLoad)}; VmHWM ${mb(hwm)}; tickflow start exited ${code} after SIGINT`);
