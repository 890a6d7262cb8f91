/**
 * `npm run bench:api`: the query API's latency and throughput for two everyday reads — a day of
 * 1m candles (1,440 rows from ohlcv_1m) and a month of 1h candles (720 rows from ohlcv_1h) — at
 * concurrency 32 over keep-alive HTTP, beside the very same SQL (captured from the API, same
 * prepared statement, same values) run straight through `pg` with a pool of the same size, in
 * the same run. Target: the API's p50 at most 20% above the straight SQL's.
 *
 *   npm run bench:api [-- --days 30 --per-minute 6 --seconds 12 --concurrency 32 --pool 4 --only postgres|embedded]
 *
 * Databases: a throwaway Debian PostgreSQL server (infra/postgres-server.ts), and the embedded
 * TimescaleDB served by a child process (`tickflow infra serve-db` on a temporary folder, as
 * `tickflow infra up` runs it; it serves one connection, so its pools have size 1). Both are
 * filled with a month of trades (progress shown), and the rollups are refreshed as the sink's
 * scheduler would. The API runs in a child process of its own (live stream off), as it would in
 * production; the HTTP load and the straight SQL run from this process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApi } from '../api/index.ts';
import { REPO_ROOT } from '../core/config.ts';
import { parseConfig } from '../config/schema.ts';
import { createPool, type Pool } from '../core/db.ts';
import { startPostgresServer } from '../infra/postgres-server.ts';
import { migrate } from '../migrations/runner.ts';
import type { Trade } from '../schemas/index.ts';
import { insertTrades, refreshRollups } from '../test/harness/market-data.ts';

const { values: args } = parseArgs({
  options: {
    days: { type: 'string', default: '30' },
    'per-minute': { type: 'string', default: '6' },
    seconds: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '32' },
    pool: { type: 'string', default: '4' },
    only: { type: 'string' },
    // Internal: run only the API server on this database URL (the benchmark's child process).
    serve: { type: 'string' },
    'idle-ms': { type: 'string', default: '0' },
  },
});
const DAYS = Number(args.days);
const PER_MINUTE = Number(args['per-minute']);
const SECONDS = Number(args.seconds);
const CONCURRENCY = Number(args.concurrency);
const SERVER_POOL = Number(args.pool);

const EXCHANGE = 'binance';
const SYMBOL = 'BTC/USDT';
const MIN_US = 60_000_000;
const DAY_US = 1_440 * MIN_US;
// The month ends at the last midnight, so every bucket read is complete and materialized.
const END_US = Math.floor(Date.now() / 86_400_000) * 86_400_000 * 1000;
const START_US = END_US - DAYS * DAY_US;
const iso = (us: number) => new Date(us / 1000).toISOString();

const out = (s: string) => process.stdout.write(`${s}\n`);

/** A month of trades for one instrument (and a little of another), written in batches with progress. */
async function fill(pool: Pool, label: string): Promise<number> {
  const minutes = DAYS * 1_440;
  let written = 0;
  let price = 60_000;
  let seed = 42;
  const rnd = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
  const started = Date.now();
  let nextReport = 0;
  const batchMinutes = 1_440;
  for (let m0 = 0; m0 < minutes; m0 += batchMinutes) {
    const batch: Trade[] = [];
    for (let m = m0; m < Math.min(minutes, m0 + batchMinutes); m++) {
      for (let k = 0; k < PER_MINUTE; k++) {
        price = Math.round(price * Math.exp(0.0008 * (rnd() - 0.5)) * 100) / 100;
        const ts = START_US + m * MIN_US + Math.floor(((k + rnd()) / PER_MINUTE) * MIN_US);
        batch.push({ exchange: EXCHANGE, symbol: SYMBOL, ts, received_at: ts + 1_500, id: String(written + batch.length), side: rnd() < 0.5 ? 'buy' : 'sell', price, amount: Math.round(rnd() * 1e5) / 1e5 + 0.0001 });
      }
      if (m % 10 === 0) batch.push({ exchange: EXCHANGE, symbol: 'ETH/USDT', ts: START_US + m * MIN_US + 17, received_at: START_US + m * MIN_US + 20, id: `e${m}`, side: 'buy', price: 3_000, amount: 1 });
    }
    await insertTrades(pool, batch);
    written += batch.length;
    const pct = Math.floor((100 * (m0 + batchMinutes)) / minutes);
    if (pct >= nextReport || m0 + batchMinutes >= minutes) {
      const s = (Date.now() - started) / 1000;
      process.stdout.write(`\r  ${label}: filling trades ${Math.min(100, pct)}% — ${written.toLocaleString('en-US')} rows, ${Math.round(written / s).toLocaleString('en-US')} rows/s   `);
      nextReport = pct + 5;
    }
  }
  process.stdout.write('\n');
  const t = Date.now();
  await refreshRollups(pool);
  out(`  ${label}: rollups refreshed in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return written;
}

interface Stats {
  requests: number;
  perSecond: number;
  p50: number;
  p99: number;
}

function stats(latencies: number[], seconds: number): Stats {
  const s = [...latencies].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  return { requests: s.length, perSecond: s.length / seconds, p50: q(0.5), p99: q(0.99) };
}

/**
 * Both paths under the same load, interleaved: after a warm-up of each, ROUNDS rounds of
 * `concurrency` loops calling the API then the straight SQL for a slice of `seconds` each, so a
 * change in the machine's background load (it is shared) hits both alike.
 */
const ROUNDS = 4;

/** CPU time (user + system) a process has used so far, ms; from /proc (Linux), else 0. */
function cpuMs(pid: number | 'self'): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at USER_HZ 100
  } catch {
    return 0;
  }
}

interface Cpu {
  /** Node CPU per request, ms: this process (HTTP client, or the pg client), the API process. */
  readonly here: number;
  readonly api: number;
}

async function loadBoth(api: () => Promise<void>, sql: () => Promise<void>, apiPid: number): Promise<{ api: Stats; sql: Stats; cpu: { api: Cpu; sql: Cpu } }> {
  const run = async (once: () => Promise<void>, ms: number, record: number[] | undefined) => {
    const deadline = performance.now() + ms;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < deadline) {
          const t = performance.now();
          await once();
          record?.push(performance.now() - t);
        }
      }),
    );
  };
  const slice = (SECONDS * 1000) / ROUNDS;
  await run(api, slice / 2, undefined);
  await run(sql, slice / 2, undefined);
  const lat = { api: [] as number[], sql: [] as number[] };
  const time = { api: 0, sql: 0 };
  const cpu = { api: { here: 0, api: 0 }, sql: { here: 0, api: 0 } };
  for (let i = 0; i < ROUNDS; i++) {
    for (const [k, once] of [['api', api], ['sql', sql]] as const) {
      const t0 = performance.now();
      const here0 = cpuMs('self');
      const api0 = cpuMs(apiPid);
      await run(once, slice, lat[k]);
      cpu[k].here += cpuMs('self') - here0;
      cpu[k].api += cpuMs(apiPid) - api0;
      time[k] += (performance.now() - t0) / 1000;
    }
  }
  const per = (k: 'api' | 'sql') => ({ here: cpu[k].here / lat[k].length, api: cpu[k].api / lat[k].length });
  return { api: stats(lat.api, time.api), sql: stats(lat.sql, time.sql), cpu: { api: per('api'), sql: per('sql') } };
}

/** GET over keep-alive; the body is kept only when asked (the load loops just count its bytes). */
function httpGetter(base: string, agent: http.Agent) {
  return (pathAndQuery: string, keepBody = false) =>
    new Promise<{ status: number; bytes: number; body: string }>((resolve, reject) => {
      const req = http.get(`${base}${pathAndQuery}`, { agent, headers: keepBody ? { 'x-bench-capture': '1' } : {} }, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (keepBody) chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, body: keepBody ? Buffer.concat(chunks).toString('utf8') : '' }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
}

interface Row {
  db: string;
  scenario: string;
  rows: number;
  api: Stats;
  sql: Stats;
  /** Means inside the API process over its requests: the whole handler, and its database statement (pool wait included). */
  inside: { handlerMs: number; dbMs: number };
  cpu: { api: Cpu; sql: Cpu };
}

/** Sums and counts of the API's request and statement histograms, from its /metrics. */
function histogramTotals(metrics: string): { reqSum: number; reqCount: number; dbSum: number; dbCount: number } {
  const total = (re: RegExp) => [...metrics.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  return {
    reqSum: total(/^tickflow_api_request_duration_seconds_sum\{[^}]*route="\/v1\/ohlcv"[^}]*\} (\S+)$/gm),
    reqCount: total(/^tickflow_api_request_duration_seconds_count\{[^}]*route="\/v1\/ohlcv"[^}]*\} (\S+)$/gm),
    dbSum: total(/^tickflow_api_db_query_duration_seconds_sum\{[^}]*\} (\S+)$/gm),
    dbCount: total(/^tickflow_api_db_query_duration_seconds_count\{[^}]*\} (\S+)$/gm),
  };
}

/**
 * A pool for the benchmark. The embedded database serves one connection at a time (others wait
 * in its queue), so there the API's pool and the straight-SQL pool hand the connection over:
 * each closes its idle connection after `idleMs`, and each phase starts with a warm-up.
 */
function benchPool(url: string, max: number, idleMs: number, applicationName: string): Pool {
  const pool = createPool(url, { max, applicationName, connectTimeoutMs: 60_000 });
  if (idleMs > 0) (pool.options as { idleTimeoutMillis: number }).idleTimeoutMillis = idleMs;
  return pool;
}

async function benchDatabase(label: string, url: string, poolSize: number, idleMs = 0): Promise<Row[]> {
  out(`\n${label}: pools of ${poolSize} connection${poolSize > 1 ? 's' : ''}, concurrency ${CONCURRENCY}`);
  const setup = createPool(url, { max: 1 });
  await migrate(setup);
  await fill(setup, label);
  await setup.end();

  const sqlPool = benchPool(url, poolSize, idleMs, 'bench-sql');
  const server = await serveInChild(url, poolSize, idleMs);
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const get = httpGetter(server.url, agent);

  // The statement the API runs for a request, as its server logged it, to run the same straight.
  const capture = async (pathAndQuery: string) => {
    // The first request for an instrument also checks that it is known (then cached): warm it.
    await get(pathAndQuery, true);
    server.statements.length = 0;
    const res = await get(pathAndQuery, true);
    if (res.status !== 200) throw new Error(`${pathAndQuery}: ${res.status} ${res.body.slice(0, 300)}`);
    const rows = (JSON.parse(res.body) as { data: unknown[]; next: string | null }).data.length;
    if (server.statements.length !== 1) throw new Error(`expected one statement per request, saw ${server.statements.length}`);
    return { statement: server.statements[0]!, rows, bytes: res.bytes };
  };

  const day = START_US + Math.floor(DAYS / 2) * DAY_US;
  const scenarios = [
    { name: 'day of 1m candles', url: `/v1/ohlcv?exchange=${EXCHANGE}&symbol=${encodeURIComponent(SYMBOL)}&interval=1m&from=${iso(day)}&to=${iso(day + DAY_US)}` },
    { name: `${DAYS >= 28 ? 'month' : `${DAYS} days`} of 1h candles`, url: `/v1/ohlcv?exchange=${EXCHANGE}&symbol=${encodeURIComponent(SYMBOL)}&interval=1h&from=${iso(START_US)}&to=${iso(END_US)}` },
  ];
  const rows: Row[] = [];
  try {
    for (const s of scenarios) {
      const { statement, rows: n, bytes } = await capture(s.url);
      out(`  ${s.name}: ${n} rows, ${(bytes / 1024).toFixed(0)} KiB of JSON; SQL: ${statement.text.replace(/\s+/g, ' ').slice(0, 110)}…`);
      const before = histogramTotals((await get('/metrics', true)).body);
      const measured = await loadBoth(
        async () => {
          const r = await get(s.url);
          if (r.status !== 200) throw new Error(`API answered ${r.status}`);
        },
        async () => {
          await sqlPool.query({ name: statement.name, text: statement.text, values: statement.values } as never);
        },
        server.pid,
      );
      const after = histogramTotals((await get('/metrics', true)).body);
      const inside = { handlerMs: (1000 * (after.reqSum - before.reqSum)) / (after.reqCount - before.reqCount), dbMs: (1000 * (after.dbSum - before.dbSum)) / (after.dbCount - before.dbCount) };
      rows.push({ db: label, scenario: s.name, rows: n, api: measured.api, sql: measured.sql, inside, cpu: measured.cpu });
    }
  } finally {
    agent.destroy();
    await server.stop();
    await sqlPool.end();
  }
  return rows;
}

interface Statement {
  name?: string;
  text: string;
  values?: unknown[];
}

/**
 * The API in a process of its own, as it runs in production: the load generator's socket work
 * must not share the API's event loop (a busy loop reads the database's answers late and holds
 * pool connections longer). It reports each statement it runs on stdout, for the straight-SQL side.
 */
async function serveInChild(url: string, poolSize: number, idleMs: number): Promise<{ url: string; pid: number; statements: Statement[]; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', url, '--pool', String(poolSize), '--idle-ms', String(idleMs)], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const statements: Statement[] = [];
  let buf = '';
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { listening?: string; statement?: Statement };
        if (msg.listening) resolve(msg.listening);
        if (msg.statement) statements.push(msg.statement);
      }
    });
    child.once('exit', (code) => reject(new Error(`the API process exited (${code}) before listening`)));
  });
  return {
    url: base,
    pid: child.pid!,
    statements,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The child: the API on the database, reporting the statements of the capture requests. */
async function serve(url: string, poolSize: number, idleMs: number): Promise<void> {
  const pool = benchPool(url, poolSize, idleMs, 'bench-api');
  let capturing = false;
  const original = pool.query.bind(pool);
  (pool as { query: unknown }).query = (cfg: Statement, ...rest: unknown[]) => {
    if (capturing && typeof cfg === 'object' && cfg && 'text' in cfg) process.stdout.write(`${JSON.stringify({ statement: { name: cfg.name, text: cfg.text, values: cfg.values } })}\n`);
    return (original as (...a: unknown[]) => unknown)(cfg, ...rest);
  };
  const api = buildApi(parseConfig({ api: { port: 0, maxRows: 10_000 } }, { env: {} }), { pool, brokers: false });
  // A request with x-bench-capture (sent alone, before each load) has its statements reported.
  api.app.addHook('onRequest', async (req) => {
    capturing = req.headers['x-bench-capture'] === '1';
  });
  process.stdout.write(`${JSON.stringify({ listening: await api.start() })}\n`);
  await new Promise((r) => process.once('SIGTERM', r));
  await api.close();
  await pool.end();
}

/** The embedded TimescaleDB as `tickflow infra up` runs it: a process of its own, on a temporary folder. */
async function startEmbeddedServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tickflow-bench-db-'));
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'tickflow.js'), 'infra', 'serve-db'], {
    env: { ...process.env, TICKFLOW_DB_DIR: path.join(dir, 'db'), DATABASE_URL: '', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /serving (postgres:\/\/\S+)/.exec(buf);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the embedded database exited (${code}) before serving`)));
  });
  return {
    url,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

async function main(): Promise<void> {
  out(`tickflow API benchmark: ${DAYS} days of trades at ${PER_MINUTE}/min for ${EXCHANGE} ${SYMBOL}, ${SECONDS} s per path and read (${ROUNDS} interleaved rounds) at concurrency ${CONCURRENCY}`);
  const results: Row[] = [];
  if (args.only === undefined || args.only === 'postgres') {
    const server = await startPostgresServer();
    try {
      const url = await server.createDatabase('bench_api');
      results.push(...(await benchDatabase('PostgreSQL server', url, SERVER_POOL)));
    } finally {
      await server.stop();
    }
  }
  if (args.only === undefined || args.only === 'embedded') {
    const db = await startEmbeddedServer();
    try {
      results.push(...(await benchDatabase('embedded TimescaleDB', db.url, 1, 100)));
    } finally {
      await db.stop();
    }
  }
  out('');
  const header = ['database', 'read', 'rows', 'path', 'req/s', 'p50 ms', 'p99 ms', 'p50 vs SQL', 'in API: handler / db ms', 'node CPU ms/req'];
  const lines: string[][] = [];
  for (const r of results) {
    lines.push([r.db, r.scenario, String(r.rows), 'API (HTTP, JSON)', f(r.api.perSecond), f(r.api.p50), f(r.api.p99), `${r.api.p50 >= r.sql.p50 ? '+' : ''}${(((r.api.p50 - r.sql.p50) / r.sql.p50) * 100).toFixed(1)}%`, `${f(r.inside.handlerMs)} / ${f(r.inside.dbMs)}`, `${r.cpu.api.api.toFixed(2)} API + ${r.cpu.api.here.toFixed(2)} client`]);
    lines.push(['', '', '', 'same SQL via pg', f(r.sql.perSecond), f(r.sql.p50), f(r.sql.p99), '', '', `${r.cpu.sql.here.toFixed(2)} pg client`]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => (i >= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  out(row(header));
  out(`|${widths.map((w, i) => (i >= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`);
  for (const l of lines) out(row(l));
  const worst = Math.max(...results.map((r) => (r.api.p50 - r.sql.p50) / r.sql.p50));
  out(`\nAPI overhead at p50: at most ${(worst * 100).toFixed(1)}% over the straight SQL (target: 20%) — ${worst <= 0.2 ? 'met' : 'NOT met'}`);
  out('in API: mean time of the /v1/ohlcv handler and of its database statement (pool wait included), measured inside the API process.');
  out('node CPU ms/req: CPU time of the API process and of the load generator (HTTP client, or pg client for the straight SQL) per request; PostgreSQL shares the same cores.');
}

(args.serve ? serve(args.serve, SERVER_POOL, Number(args['idle-ms'])) : main()).then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:api failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
