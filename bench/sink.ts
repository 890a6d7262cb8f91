/**
 * `npm run bench:sink`: the sink's throughput from a pre-filled topic into `trades`, beside the
 * limit of the same database measured in the same run (the same rows, the same batch size,
 * inserted directly with the sink's own set-based statement: the fastest one measured, see
 * sink/tables.ts), on the PostgreSQL server and on the embedded TimescaleDB, with the sink's
 * RSS at 25/50/75/100% of the topic (bounded memory: it must not grow with the topic).
 *
 *   npm run bench:sink [-- --records 1000000 --batch 5000 --partitions 3 --only postgres|embedded]
 *
 * Kafka: KAFKA_BROKERS, else a throwaway local broker. PostgreSQL: a throwaway Debian server
 * (infra/postgres-server.ts). Each database is measured in a child process of its own (the
 * embedded database lives in the process that uses it), so RSS figures are the sink's.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AvroCodec } from '../core/avro.ts';
import { parseConfig } from '../config/schema.ts';
import { createPool, type Pool } from '../core/db.ts';
import { CompressionTypes, createKafka, createProducer, ensureNamedTopics, ensureTopics } from '../core/kafka.ts';
import { benchBrokers } from './kafka.ts';
import { startEmbeddedDb } from '../infra/embedded-db.ts';
import { startPostgresServer } from '../infra/postgres-server.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { buildSink } from '../sink/index.ts';
import { rowCodec, upsertSql } from '../sink/tables.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'BNB/USDT', 'ADA/USDT', 'DOGE/USDT', 'TRX/USDT'];
const START_US = Date.UTC(2025, 0, 6) * 1000;

/** Trade number i of the benchmark: realistic field sizes, distinct keys, ~1 ms apart. */
function trade(i: number): Trade {
  const ts = START_US + i * 997;
  return {
    exchange: i % 4 === 0 ? 'okx' : 'binance',
    symbol: SYMBOLS[i % SYMBOLS.length]!,
    ts,
    received_at: ts + 1_234,
    id: String(3_000_000_000 + i),
    side: i % 2 ? 'buy' : 'sell',
    price: 40_000 + ((i * 7_919) % 100_000) / 100,
    amount: ((i * 104_729) % 100_000) / 100_000 + 0.00001,
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

interface WorkerResult {
  database: string;
  records: number;
  batch: number;
  limitRowsPerSec: number;
  limitRange: number[];
  sinkRowsPerSec: number;
  withStartRowsPerSec: number;
  startupSeconds: number;
  /** (ms since start(), rows committed) after each commit. */
  progress: [number, number][];
  rssMb: number[];
  liveHeapMb: number[];
  peakRssMb: number;
  rssAtStartMb: number;
}

/** BENCH_CPU_PROFILE=<path>: a V8 CPU profile of the sink phase alone (open it in Chrome's DevTools). */
async function startProfile(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const { writeFile } = await import('node:fs/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    await writeFile(file, JSON.stringify(profile));
    session.disconnect();
    process.stderr.write(`  CPU profile of the sink phase: ${file}\n`);
  };
}

// ---- the worker: one database, limit then sink ----

async function worker(opts: { kind: 'postgres' | 'embedded'; url?: string; brokers: string[]; prefix: string; records: number; batch: number }): Promise<WorkerResult> {
  let url = opts.url;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (opts.kind === 'embedded') {
    const db = await startEmbeddedDb();
    url = db.url;
    stopEmbedded = db.stop;
  }
  const pool: Pool = createPool(url!, { max: 1 });
  await migrate(pool);

  // The limit: the same rows, the same batch size, the sink's statement, nothing else. Measured
  // before and after the sink (the machine is shared: the mean of the two is the fair figure).
  // Each pass starts on an empty table, like the sink's run.
  const codec = rowCodec('trades');
  const sql = upsertSql('trades', codec.keyFields, 'insert');
  const limit = async (): Promise<number> => {
    await pool.query('truncate trades');
    const t = performance.now();
    for (let i = 0; i < opts.records; i += opts.batch) {
      const rows: Trade[] = [];
      for (let j = i; j < Math.min(opts.records, i + opts.batch); j++) rows.push(trade(j));
      await pool.query(sql, codec.columns(rows));
    }
    const rate = opts.records / ((performance.now() - t) / 1000);
    await pool.query('truncate trades');
    return rate;
  };
  // A first, unmeasured pass warms the database (WAL segments, catalog caches, chunk creation).
  await limit();
  const limitBefore = await limit();
  process.stderr.write(`  ${opts.kind}: limit ${fmt(limitBefore)} rows/s; now the sink...\n`);

  // The sink, from the pre-filled topic.
  const config = parseConfig(
    {
      kafka: { brokers: opts.brokers, topicPrefix: opts.prefix, clientId: `${opts.prefix}-${opts.kind}` },
      sink: { apiPort: 0, connectors: [{ name: `bench-${opts.kind}`, table: 'trades', insertMode: 'insert', batchMaxRows: opts.batch }], refreshSchedule: '0 0 1 1 *' },
    },
    { env: {} },
  );
  const sink = buildSink(config, { pool, listen: false, schedule: false });
  const next = new Map<string, number>();
  let committed = 0;
  const rss: number[] = [];
  const live: number[] = [];
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
  const progress: [number, number][] = []; // (ms, rows committed) after each commit
  const done = new Promise<void>((resolve) => {
    sink.events.on('commit', (e) => {
      for (const o of e.offsets) next.set(`${o.topic}:${o.partition}`, o.nextOffset);
      committed = [...next.values()].reduce((a, b) => a + b, 0);
      progress.push([performance.now(), committed]);
      const quarter = Math.floor((committed / opts.records) * 4);
      while (rss.length < quarter) {
        rss.push(process.memoryUsage().rss);
        // What is really held, apart from garbage V8 has not collected yet (--expose-gc).
        (globalThis as { gc?: () => void }).gc?.();
        live.push(process.memoryUsage().heapUsed);
      }
      if (committed >= opts.records) resolve();
    });
  });
  let busy = 0;
  let batches = 0;
  // When the first transaction began: before it, the sink joins its consumer group, is assigned
  // partitions, seeks them and fetches (a one-off start-up cost, reported apart).
  let firstWrite: number | undefined;
  sink.events.on('batch', (e) => {
    firstWrite ??= performance.now() - e.seconds * 1000;
    busy += e.seconds;
    batches++;
  });
  const rssAtStart = process.memoryUsage().rss;
  const profile = process.env.BENCH_CPU_PROFILE ? await startProfile() : undefined;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await sink.start();
  await done;
  const t1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  if (profile) await profile(`${process.env.BENCH_CPU_PROFILE}.${opts.kind}.cpuprofile`);
  const writing = (t1 - firstWrite!) / 1000;
  const sinkRowsPerSec = opts.records / writing;
  const withStartRowsPerSec = opts.records / ((t1 - t0) / 1000);
  const startupSeconds = (firstWrite! - t0) / 1000;
  process.stderr.write(
    `  ${opts.kind}: start-up ${startupSeconds.toFixed(2)} s, then ${batches} transactions in ${writing.toFixed(2)} s; writer busy ${Math.round((busy / writing) * 100)}% of that; sink process CPU ${Math.round(((cpu.user + cpu.system) / 1e6 / ((t1 - t0) / 1000)) * 100)}% of one core\n`,
  );
  clearInterval(sampler);
  await sink.close();
  const n = (await pool.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;
  if (n !== opts.records) throw new Error(`${opts.kind}: the sink wrote ${n} rows, expected ${opts.records}`);
  const limitAfter = await limit();
  process.stderr.write(`  ${opts.kind}: sink ${fmt(sinkRowsPerSec)} rows/s (${fmt(withStartRowsPerSec)} with its start-up); limit again ${fmt(limitAfter)} rows/s\n`);
  await pool.end();
  await stopEmbedded?.();
  return {
    database: opts.kind === 'embedded' ? 'embedded TimescaleDB' : 'PostgreSQL server',
    records: opts.records,
    batch: opts.batch,
    limitRowsPerSec: (limitBefore + limitAfter) / 2,
    limitRange: [limitBefore, limitAfter],
    sinkRowsPerSec,
    withStartRowsPerSec,
    startupSeconds,
    progress: progress.map(([t, n]) => [Math.round(t - t0), n]),
    rssMb: rss.map((b) => Math.round(b / 1048576)),
    liveHeapMb: live.map((b) => Math.round(b / 1048576)),
    peakRssMb: Math.round(Math.max(peak, ...rss) / 1048576),
    rssAtStartMb: Math.round(rssAtStart / 1048576),
  };
}

/** An SVG line chart: the sink's rows/s (1 s windows) against time, the limit dashed. */
function throughputChart(results: readonly WorkerResult[]): string {
  const W = 860;
  const H = 300 * results.length;
  const colors = ['#2563eb', '#d97706'];
  const panels = results.map((r, k) => {
    const top = k * 300 + 30;
    const h = 220;
    const left = 70;
    const w = W - left - 30;
    // rows/s over sliding 1 s windows, sampled at each commit
    const pts = r.progress.slice(1).map(([t, n], k) => {
      const i = k + 1;
      let j = i;
      while (j > 0 && t - r.progress[j - 1]![0] <= 1000) j--;
      const [t0, n0] = j === i ? [0, 0] : r.progress[j]!;
      return [t, t > t0 ? ((n - n0) / (t - t0)) * 1000 : 0] as const;
    });
    const tMax = Math.max(...r.progress.map(([t]) => t), 1);
    const yMax = Math.max(r.limitRowsPerSec, ...pts.map(([, v]) => v)) * 1.1;
    const x = (t: number) => left + (t / tMax) * w;
    const y = (v: number) => top + h - (v / yMax) * h;
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const v = yMax * f;
      return `<line x1="${left}" x2="${left + w}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e7eb"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`;
    });
    const line = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    return [
      `<text x="${left}" y="${top - 10}" font-weight="bold">${r.database}: sink ${fmt(r.sinkRowsPerSec)} rows/s (${Math.round((r.sinkRowsPerSec / r.limitRowsPerSec) * 100)}% of the limit), start-up ${r.startupSeconds.toFixed(2)} s</text>`,
      ...ticks,
      `<line x1="${left}" x2="${left + w}" y1="${y(r.limitRowsPerSec)}" y2="${y(r.limitRowsPerSec)}" stroke="#dc2626" stroke-dasharray="6 4"/>`,
      `<text x="${left + w}" y="${y(r.limitRowsPerSec) - 5}" text-anchor="end" fill="#dc2626">limit ${fmt(r.limitRowsPerSec)} rows/s</text>`,
      `<polyline fill="none" stroke="${colors[k % 2]}" stroke-width="1.5" points="${line}"/>`,
      `<text x="${left + w}" y="${top + h + 18}" text-anchor="end">${(tMax / 1000).toFixed(1)} s</text><text x="${left}" y="${top + h + 18}">0 s (start())</text>`,
    ].join('\n');
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>\n${panels.join('\n')}\n</svg>\n`;
}

// ---- the driver ----

async function prefill(brokers: string[], prefix: string, records: number, partitions: number): Promise<void> {
  const kafka = createKafka({ brokers, clientId: `${prefix}-fill`, connectionTimeoutMs: 5_000, requestTimeoutMs: 60_000 });
  // The broker as a deployment has it when a sink (re)starts: every record topic (the gateways
  // create them), the dead-letter topic, and a group coordinator up (the first group of a new
  // broker creates __consumer_offsets). What is left of the sink's start-up is its own.
  const settings = { topicPrefix: prefix, partitions, replicationFactor: 1, retentionMs: 24 * 3_600_000 };
  await ensureTopics(kafka, settings);
  await ensureNamedTopics(kafka, [`${prefix}.dlq`], settings);
  const admin = kafka.admin();
  await admin.connect();
  await admin.describeGroups([`${prefix}-warm-up`]);
  await admin.disconnect();
  const codec = new AvroCodec({ topicPrefix: prefix });
  const producer = createProducer(kafka);
  await producer.connect();
  const topic = topicFor(prefix, 'trade');
  const t0 = performance.now();
  let next = 0.1;
  const chunk = 10_000;
  // A few sends in flight: the producer is idempotent, order per partition is kept.
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < records; i += chunk) {
    const messages = [];
    for (let j = i; j < Math.min(records, i + chunk); j++) {
      const t = trade(j);
      messages.push({ key: `${t.exchange}:${t.symbol}`, value: codec.encode('trade', t) });
    }
    // Compressed like the gateways' batches (GZIP).
    inflight.push(producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages }));
    if (inflight.length >= 4) await inflight.shift();
    const done = Math.min(records, i + chunk) / records;
    if (done >= next || done === 1) {
      process.stderr.write(`  filling ${topic}: ${Math.round(done * 100)}% (${fmt(Math.min(records, i + chunk))} records, ${fmt(Math.min(records, i + chunk) / ((performance.now() - t0) / 1000))}/s)\n`);
      next = Math.floor(done * 10 + 1) / 10;
    }
  }
  await Promise.all(inflight);
  await producer.disconnect();
}

function runWorker(args: string[]): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    // BENCH_NODE_FLAGS: extra V8/Node flags for the measuring process (e.g. --max-semi-space-size=32).
    const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
    const child = spawn(process.execPath, [...flags, '--expose-gc', '--import', 'tsx', path.join(import.meta.dirname, 'sink.ts'), '--worker', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) resolve(JSON.parse(line) as WorkerResult);
      else reject(new Error(`benchmark worker ${args.join(' ')} exited with ${code}: ${out.slice(-2000)}`));
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      worker: { type: 'boolean' },
      kind: { type: 'string' },
      url: { type: 'string' },
      brokers: { type: 'string' },
      prefix: { type: 'string' },
      records: { type: 'string', default: process.env.BENCH_RECORDS ?? '1000000' },
      batch: { type: 'string', default: '5000' },
      partitions: { type: 'string', default: '3' },
      only: { type: 'string' },
    },
  });
  const records = Number(values.records);
  const batch = Number(values.batch);
  if (values.worker) {
    const r = await worker({ kind: values.kind as 'postgres' | 'embedded', ...(values.url ? { url: values.url } : {}), brokers: values.brokers!.split(','), prefix: values.prefix!, records, batch });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }

  const cleanups: Array<() => Promise<void>> = [];
  try {
    const kafka = await benchBrokers();
    cleanups.push(kafka.stop);
    const brokers = kafka.brokers;
    const prefix = `bench${Date.now().toString(36)}`;
    process.stderr.write(`pre-filling ${fmt(records)} trade records (${values.partitions} partitions)...\n`);
    await prefill(brokers, prefix, records, Number(values.partitions));

    const results: WorkerResult[] = [];
    const common = ['--brokers', brokers.join(','), '--prefix', prefix, '--records', String(records), '--batch', String(batch)];
    if (values.only !== 'embedded') {
      const server = await startPostgresServer();
      cleanups.push(() => server.stop());
      process.stderr.write('measuring on the PostgreSQL server...\n');
      results.push(await runWorker(['--kind', 'postgres', '--url', server.url, ...common]));
    }
    if (values.only !== 'postgres') {
      process.stderr.write('measuring on the embedded TimescaleDB...\n');
      results.push(await runWorker(['--kind', 'embedded', ...common]));
    }

    const rows = [
      ['database', 'records', 'batch', 'limit rows/s (before, after)', 'sink rows/s', 'sink/limit', 'start-up', 'with start-up', 'RSS at start', 'RSS 25/50/75/100%', 'live heap 25/50/75/100%', 'peak RSS'],
      ...results.map((r) => [
        r.database,
        fmt(r.records),
        fmt(r.batch),
        `${fmt(r.limitRowsPerSec)} (${r.limitRange.map(fmt).join(', ')})`,
        fmt(r.sinkRowsPerSec),
        `${Math.round((r.sinkRowsPerSec / r.limitRowsPerSec) * 100)}%`,
        `${r.startupSeconds.toFixed(2)} s`,
        `${fmt(r.withStartRowsPerSec)} (${Math.round((r.withStartRowsPerSec / r.limitRowsPerSec) * 100)}%)`,
        `${r.rssAtStartMb} MB`,
        `${r.rssMb.join(' / ')} MB`,
        `${r.liveHeapMb.join(' / ')} MB`,
        `${r.peakRssMb} MB`,
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    process.stdout.write(`\n${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.slice(1).map(line).join('\n')}\n`);
    process.stdout.write('\nsink rows/s: from the start of its first transaction to the commit of the last record; start-up: from start() to that first transaction (consumer group join, partition assignment, seeks, first fetch); with start-up: the whole run.\n');
    process.stdout.write(`limit: the same rows inserted directly, ${fmt(batch)} per statement, with the sink's statement (insert ... select from unnest ... on conflict do nothing), before and after the sink run; sink/limit uses their mean.\n`);
    process.stdout.write('live heap: V8 heap in use after a forced GC at each quarter of the topic (RSS also holds garbage not yet collected and, on the embedded database, PGlite\'s WebAssembly memory).\n');
    const chart = path.join(process.cwd(), 'bench-results', 'sink.svg');
    mkdirSync(path.dirname(chart), { recursive: true });
    writeFileSync(chart, throughputChart(results));
    process.stdout.write(`chart: ${chart} (the sink's rows/s over the run, each database beside its limit)\n`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

await main();
