/**
 * `npm run bench:latency`: how long a trade takes from the exchange to a user, with the default
 * config, at 1k and 5k trades/s: sim → gateway (ccxt pro) → Kafka → sink → PostgreSQL ("row
 * visible": the transaction holding the row committed) and Kafka → API → websocket client,
 * beside the floor measured in the same run: Kafka's produce → consume latency, read by a plain
 * kafkajs consumer in this process (minBytes 1).
 *
 *   npm run bench:latency [-- --rates 1000,5000 --seconds 20 --warmup 5 --symbols 2]
 *
 * Each part runs in a process of its own, as deployed: the sim (`sim/main.ts`, Binance dialect),
 * the gateway, the sink and the API (this file with `--part`). All times are wall-clock times of
 * one machine. Per trade: its exchange time `ts` (the sim's; the sim sends what it generated
 * every 10 ms, its tick), `received_at` (the gateway), the Kafka timestamp (set by the gateway's
 * producer when it sends), when this process's consumer got it, when the sink's transaction that
 * wrote it committed (the sink process prints each commit's offsets), and when a websocket client
 * subscribed to /v1/stream received it. Only trades whose `ts` falls in a rate's measured window
 * count. Also per window: each process's CPU (from /proc) and the sink's transactions.
 *
 * Kafka: KAFKA_BROKERS, else a throwaway local broker. PostgreSQL: a throwaway Debian server
 * (infra/postgres-server.ts). Writes bench-results/latency.json and bench-results/latency.svg.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { createCodec } from '../core/avro.ts';
import { parseConfig } from '../config/schema.ts';
import { createConsumer, createKafka, ensureTopics } from '../core/kafka.ts';
import { startPostgresServer } from '../infra/postgres-server.ts';
import { topicFor } from '../schemas/index.ts';
import { benchBrokers } from './kafka.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'BNB/USDT'];
const SELF = fileURLToPath(import.meta.url);
const now = () => performance.timeOrigin + performance.now();
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '–');

// ---- a part, in its own process: builds it from the config given, prints what the bench needs ----

async function part(kind: string, configJson: string): Promise<void> {
  const config = parseConfig(JSON.parse(configJson) as Record<string, unknown>, { env: {} });
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  let close: () => Promise<void>;
  if (kind === 'sink') {
    const { buildSink } = await import('../sink/index.ts');
    const sink = buildSink(config, { brokers: config.kafka.brokers, listen: false, schedule: false });
    let messages = 0;
    let txMs = 0;
    sink.events.on('batch', (e) => {
      messages = e.messages;
      txMs = e.seconds * 1000;
    });
    // One line per commit: when it committed and the next offset of each partition it wrote.
    sink.events.on('commit', (e) => out({ commit: now(), connector: e.connector, messages, txMs, offsets: e.offsets.map((o) => [o.topic, o.partition, o.nextOffset]) }));
    await sink.start();
    close = () => sink.close();
  } else if (kind === 'api') {
    const { buildApi } = await import('../api/index.ts');
    const api = buildApi(config, { brokers: config.kafka.brokers });
    const url = await api.start();
    out({ url });
    close = () => api.close();
  } else if (kind === 'gateway') {
    const { buildGateway } = await import('../gateways/index.ts');
    const gw = buildGateway(config, { brokers: config.kafka.brokers, telemetry: false });
    const r = await gw.start();
    if (r.problems.length) throw new Error(r.problems.map((p) => p.message).join('; '));
    close = () => gw.close();
  } else throw new Error(`unknown part ${kind}`);
  out({ ready: kind });
  const stop = () => void close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// ---- the driver ----

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
}

function startPart(name: string, config: unknown, onLine: (o: Record<string, unknown>) => void): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--part', name, '--config', JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith('{')) return;
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.ready) resolve({ name, child });
      else onLine(o);
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

async function startSim(perSymbol: number, symbols: readonly string[]): Promise<{ proc: Proc; url: string; ccxtOptions: Record<string, unknown> }> {
  const main = fileURLToPath(new URL('../sim/main.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--rate', String(perSymbol), '--symbols', symbols.join(','), '--history-days', '0', '--dialects', 'binance'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; dialects: Record<string, { ccxtOptions: Record<string, unknown> }> };
  return { proc: { name: 'sim', child }, url: info.url, ccxtOptions: info.dialects.binance!.ccxtOptions };
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (p.child.exitCode === null) p.child.kill('SIGKILL');
}

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

class Samples {
  readonly v: number[] = [];
  add(x: number): void {
    this.v.push(x);
  }
  q(p: number): number {
    if (this.v.length === 0) return NaN;
    const s = Float64Array.from(this.v).sort();
    return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  }
}

/** What one rate's window measured (ms). */
interface Window {
  rate: number;
  trades: number;
  kafka: Samples; // Kafka timestamp → consumed here: the floor
  tradeToKafka: Samples; // ts → consumed here
  simToGateway: Samples; // ts → received_at
  gatewayToKafka: Samples; // received_at → Kafka timestamp (the publisher's linger, encoding)
  row: Samples; // ts → the sink's commit
  ws: Samples; // ts → websocket client
  // From the gateway's received_at: without the sim's send tick and ccxt's parsing (the parts
  // downstream of the gateway's receipt, compared with one another).
  gwConsumer: Samples; // received_at → consumed here
  gwRow: Samples; // received_at → the sink's commit
  gwWs: Samples; // received_at → websocket client
  transactions: number;
  rowsPerTx: number;
  txMs: Samples; // the sink's write of a batch: its transaction, from begin to commit

  cpu: Record<string, number>;
  load: string;
}

const newWindow = (rate: number): Window => ({ rate, trades: 0, kafka: new Samples(), tradeToKafka: new Samples(), simToGateway: new Samples(), gatewayToKafka: new Samples(), row: new Samples(), ws: new Samples(), gwConsumer: new Samples(), gwRow: new Samples(), gwWs: new Samples(), transactions: 0, rowsPerTx: 0, txMs: new Samples(), cpu: {}, load: '' });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      part: { type: 'string' },
      config: { type: 'string' },
      rates: { type: 'string', default: '1000,5000' },
      seconds: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '5' },
      symbols: { type: 'string', default: '2' },
    },
  });
  if (values.part) return part(values.part, values.config!);
  const rates = values.rates.split(',').map(Number);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const symbols = SYMBOLS.slice(0, Number(values.symbols));
  const err = (s: string) => process.stderr.write(`${s}\n`);

  const cleanups: Array<() => Promise<void>> = [];
  const results: Window[] = [];
  try {
    const kafkaBrokers = await benchBrokers();
    cleanups.push(kafkaBrokers.stop);
    const brokers = kafkaBrokers.brokers;
    const pg = await startPostgresServer();
    cleanups.push(() => pg.stop());
    const prefix = `lat${Date.now().toString(36)}`;
    const kafkaCfg = { brokers, topicPrefix: prefix, clientId: prefix };
    const baseCfg = parseConfig({ kafka: kafkaCfg }, { env: {} });
    await ensureTopics(createKafka(baseCfg.kafka), baseCfg.kafka);

    err(`starting the sim (${symbols.length} symbols), the sink, the API and the gateway, each in its own process...`);
    const sim = await startSim(rates[0]! / symbols.length, symbols);
    cleanups.push(() => stop(sim.proc));
    const procs: Proc[] = [sim.proc];

    // What the bench knows of each trade record, by topic partition and offset.
    interface Rec { tsMs: number; receivedMs: number; win: Window | undefined }
    const records = new Map<string, Rec>();
    const committedUpTo = new Map<number, number>(); // partition → next offset committed
    const pendingCommits = new Map<string, number>(); // offsets committed before this process consumed them → commit time
    let current: Window | undefined;
    let windowStart = Infinity;
    const topic = topicFor(prefix, 'trade');
    const onCommit = (o: Record<string, unknown>) => {
      const t = o.commit as number;
      let wrote = false;
      for (const [tp, partition, next] of o.offsets as [string, number, number][]) {
        if (tp !== topic) continue;
        wrote = true;
        for (let off = committedUpTo.get(partition) ?? 0; off < next; off++) {
          const k = `${partition}:${off}`;
          const r = records.get(k);
          if (r) {
            r.win?.row.add(t - r.tsMs);
            r.win?.gwRow.add(t - r.receivedMs);
            records.delete(k);
          } else pendingCommits.set(k, t);
        }
        committedUpTo.set(partition, Math.max(next, committedUpTo.get(partition) ?? 0));
      }
      if (wrote && current) {
        current.transactions++;
        current.rowsPerTx += o.messages as number;
        current.txMs.add(o.txMs as number);
      }
    };

    const dbCfg = { url: pg.url };
    const sink = await startPart('sink', { kafka: kafkaCfg, database: dbCfg, sink: { apiPort: 0 } }, onCommit);
    procs.push(sink);
    cleanups.push(() => stop(sink));
    let apiUrl = '';
    const api = await startPart('api', { kafka: kafkaCfg, database: dbCfg, api: { port: 0 } }, (o) => (apiUrl = (o.url as string | undefined) ?? apiUrl));
    procs.push(api);
    cleanups.push(() => stop(api));

    // The floor: a plain consumer of the trades topic, fetching with minBytes 1.
    const codec = createCodec(baseCfg.kafka);
    const consumer = createConsumer(createKafka(baseCfg.kafka), { groupId: `${prefix}-floor`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const t = now();
        for (const m of batch.messages) {
          const d = await codec.decode(m.value!);
          const v = d.value as unknown as { ts: number; received_at: number };
          const tsMs = v.ts / 1000;
          const receivedMs = v.received_at / 1000;
          const w = current && tsMs >= windowStart ? current : undefined;
          if (w) {
            w.trades++;
            w.kafka.add(t - Number(m.timestamp));
            w.tradeToKafka.add(t - tsMs);
            w.gwConsumer.add(t - receivedMs);
            w.simToGateway.add(v.received_at / 1000 - tsMs);
            w.gatewayToKafka.add(Number(m.timestamp) - v.received_at / 1000);
          }
          const k = `${batch.partition}:${m.offset}`;
          const committed = pendingCommits.get(k);
          if (committed !== undefined) {
            pendingCommits.delete(k);
            w?.row.add(committed - tsMs);
            w?.gwRow.add(committed - receivedMs);
          } else records.set(k, { tsMs, receivedMs, win: w });
        }
      },
    });
    cleanups.push(() => consumer.disconnect());

    // A websocket client of the API, every trade.
    const ws = new WebSocket(`${apiUrl.replace(/^http/, 'ws')}/v1/stream`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.on('message', (data: Buffer) => {
      const t = now();
      const m = JSON.parse(data.toString()) as { type: string; channel?: string; data?: { ts: string; received_at: string }[] };
      if (m.type !== 'data' || m.channel !== 'trades' || !current) return;
      for (const r of m.data!) {
        const tsMs = Date.parse(r.ts);
        if (tsMs < windowStart) continue;
        current.ws.add(t - tsMs);
        current.gwWs.add(t - Date.parse(r.received_at));
      }
    });
    ws.send(JSON.stringify({ op: 'subscribe', channels: ['trades'] }));
    cleanups.push(async () => ws.close());

    const gateway = await startPart(
      'gateway',
      {
        kafka: kafkaCfg,
        exchanges: [{ id: 'binance', name: 'sim', symbols, channels: { trades: {} }, backfillLookbackMinutes: 0, options: { ...sim.ccxtOptions, enableRateLimit: false } }],
      },
      () => undefined,
    );
    procs.push(gateway);
    cleanups.push(() => stop(gateway));

    for (const rate of rates) {
      await fetch(`${sim.url}/__sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'tradeRate', perSecond: rate / symbols.length }) });
      err(`${fmt(rate)} trades/s: warming up ${warmup} s...`);
      await new Promise((r) => setTimeout(r, warmup * 1000));
      const w = newWindow(rate);
      const cpu0 = procs.map((p) => cpuSeconds(p.child.pid));
      windowStart = now();
      current = w;
      for (let s = 1; s <= seconds; s++) {
        await new Promise((r) => setTimeout(r, 1000));
        if (s % 5 === 0 || s === seconds) err(`  ${s}/${seconds} s: ${fmt(w.trades)} trades consumed, row visible p50 ${ms(w.row.q(0.5))} ms, websocket p50 ${ms(w.ws.q(0.5))} ms (load ${loadavg()[0]!.toFixed(2)})`);
      }
      const elapsed = (now() - windowStart) / 1000;
      // Let the last trades of the window reach every reader, then close it.
      windowStart = Infinity;
      await new Promise((r) => setTimeout(r, 2000));
      current = undefined;
      procs.forEach((p, i) => (w.cpu[p.name] = Math.round(((cpuSeconds(p.child.pid) - cpu0[i]!) / elapsed) * 100)));
      w.rowsPerTx = w.transactions ? w.rowsPerTx / w.transactions : 0;
      w.transactions /= elapsed;
      w.load = loadavg().map((l) => l.toFixed(2)).join(' ');
      results.push(w);
    }

    const head = ['trades/s', 'measured', 'Kafka p50/p99 (floor)', 'row visible p50/p99', 'websocket p50/p99', 'sim→gateway p50/p99', 'gateway→Kafka p50/p99', 'trade→Kafka consumer p50/p99', 'received_at→ consumer / row / websocket p99', 'sink tx/s (rows/tx)', 'sink tx p50/p99', 'CPU % sim/gw/sink/api', 'load 1/5/15m'];
    const rows = [head, ...results.map((w) => [
      fmt(w.rate),
      fmt(w.trades),
      ...[w.kafka, w.row, w.ws, w.simToGateway, w.gatewayToKafka, w.tradeToKafka].map((s) => `${ms(s.q(0.5))} / ${ms(s.q(0.99))} ms`),
      `${[w.gwConsumer, w.gwRow, w.gwWs].map((s) => ms(s.q(0.99))).join(' / ')} ms`,
      `${w.transactions.toFixed(0)} (${w.rowsPerTx.toFixed(1)})`,
      `${ms(w.txMs.q(0.5))} / ${ms(w.txMs.q(0.99))} ms`,
      ['sim', 'gateway', 'sink', 'api'].map((n) => w.cpu[n] ?? '–').join('/'),
      w.load,
    ])];
    const widths = head.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
    const line = (r: readonly (string | number)[]) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
    process.stdout.write(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.slice(1).map(line).join('\n')}\n`);
    process.stdout.write('\nfrom the trade\'s exchange time (ts) unless named: Kafka = the producer\'s timestamp → a plain consumer here (the floor); row visible = the commit of the sink transaction that wrote it; websocket = a /v1/stream client; sim→gateway = ts → received_at (includes the sim\'s 10 ms send tick); gateway→Kafka = received_at → the producer\'s timestamp; received_at→ = from the gateway\'s receipt (without the sim\'s tick and ccxt).\n');
    const dir = path.join(process.cwd(), 'bench-results');
    mkdirSync(dir, { recursive: true });
    const summary = results.map((w) => ({
      rate: w.rate, trades: w.trades, load: w.load, cpuPercent: w.cpu, sinkTransactionsPerSec: w.transactions, sinkRowsPerTransaction: w.rowsPerTx, sinkTransactionMs: { p50: w.txMs.q(0.5), p99: w.txMs.q(0.99) },
      ...Object.fromEntries((['kafka', 'row', 'ws', 'simToGateway', 'gatewayToKafka', 'tradeToKafka', 'gwConsumer', 'gwRow', 'gwWs'] as const).map((k) => [k, { p50: w[k].q(0.5), p99: w[k].q(0.99) }])),
    }));
    writeFileSync(path.join(dir, 'latency.json'), `${JSON.stringify(summary, null, 2)}\n`);
    writeFileSync(path.join(dir, 'latency.svg'), chart(results));
    process.stdout.write(`results: ${path.join(dir, 'latency.json')}; chart: ${path.join(dir, 'latency.svg')} (distribution of each latency per rate)\n`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

/** An SVG chart: per rate, the cumulative distribution of the Kafka floor, websocket and row-visible latencies. */
function chart(results: readonly Window[]): string {
  const W = 860;
  const PH = 280;
  const series = [['kafka', 'Kafka floor', '#6b7280'], ['ws', 'websocket', '#2563eb'], ['row', 'row visible', '#d97706']] as const;
  const panels = results.map((w, k) => {
    const top = k * PH + 30;
    const h = 200;
    const left = 60;
    const width = W - left - 160;
    const xMax = Math.max(10, ...series.map(([key]) => w[key].q(0.999))) * 1.05;
    const x = (v: number) => left + (Math.min(v, xMax) / xMax) * width;
    const y = (f: number) => top + h - f * h;
    const out = [`<text x="${left}" y="${top - 10}" font-weight="bold">${fmt(w.rate)} trades/s: share of trades within a latency (load ${w.load})</text>`];
    for (const f of [0, 0.5, 0.99, 1]) out.push(`<line x1="${left}" x2="${left + width}" y1="${y(f)}" y2="${y(f)}" stroke="#e5e7eb"/><text x="${left - 6}" y="${y(f) + 4}" text-anchor="end">${f * 100}%</text>`);
    for (const t of [0, 0.25, 0.5, 0.75, 1]) out.push(`<text x="${x(t * xMax)}" y="${top + h + 16}" text-anchor="middle">${Math.round(t * xMax)} ms</text>`);
    series.forEach(([key, label, color], i) => {
      const s = Float64Array.from(w[key].v).sort();
      const step = Math.max(1, Math.floor(s.length / 400));
      const pts: string[] = [];
      for (let j = 0; j < s.length; j += step) pts.push(`${x(s[j]!).toFixed(1)},${y((j + 1) / s.length).toFixed(1)}`);
      if (s.length) pts.push(`${x(s[s.length - 1]!).toFixed(1)},${y(1).toFixed(1)}`);
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
      out.push(`<text x="${left + width + 10}" y="${top + 20 + i * 18}" fill="${color}">${label} p99 ${ms(w[key].q(0.99))} ms</text>`);
    });
    return out.join('\n');
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${PH * results.length + 10}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>\n${panels.join('\n')}\n</svg>\n`;
}

await main();
