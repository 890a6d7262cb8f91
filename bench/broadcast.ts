/**
 * `npm run bench:broadcast`: the broadcast runtime over a live 20,000 trades/s stream with 1,000
 * registrations (instrument filters with wildcards, predicates on amount and side, `crosses
 * above` levels) delivering to a local webhook, beside a baseline measured in the same run on
 * the same stream: a plain kafkajs consumer (core/kafka.ts) decoding the same topic. Figures:
 * records consumed/s, matches (deliveries) /s, deliveries received by the webhook /s, and the
 * latency from the record's time to the webhook receiving it (baseline: to the consumer
 * decoding it), p50/p99, with the lag left at the end of each phase, and the measured process's CPU
 * time per 1,000 records (independent of the machine's other load, unlike the latencies).
 *
 *   npm run bench:broadcast [-- --rate 20000 --registrations 1000 --seconds 20]
 *
 * The producer of the stream (records stamped with the time they are produced) and the webhook
 * receiver (node:http) run in two child processes, so the measured process is the broadcast
 * runtime's alone. Kafka: KAFKA_BROKERS, else a throwaway local broker; the database:
 * a throwaway PostgreSQL server (infra/postgres-server.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { buildBroadcast } from '../broadcast/index.ts';
import { parseConfig } from '../config/schema.ts';
import { AvroCodec } from '../core/avro.ts';
import { createPool } from '../core/db.ts';
import { createConsumer, createKafka, createProducer, ensureTopics, partitionOffsets } from '../core/kafka.ts';
import { startPostgresServer } from '../infra/postgres-server.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { benchBrokers } from './kafka.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'BNB/USDT', 'ADA/USDT', 'DOGE/USDT', 'TRX/USDT'];
const EXCHANGES = ['binance', 'okx'];
const START_PRICE = 100;

const { values: args } = parseArgs({
  options: {
    child: { type: 'string' },
    brokers: { type: 'string' },
    prefix: { type: 'string' },
    rate: { type: 'string', default: '20000' },
    registrations: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
  },
  strict: false,
});
const RATE = Number(args.rate);
const REGISTRATIONS = Number(args.registrations);
const SECONDS = Number(args.seconds);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Latencies (ms), reservoir-sampled so the percentiles stay honest at any rate. */
class Meter {
  count = 0;
  private lat = new Float64Array(1 << 18);
  private n = 0;
  record(ms: number): void {
    const i = this.count++ < this.lat.length ? this.n++ : Math.floor(Math.random() * this.count);
    if (i < this.lat.length) this.lat[i] = ms;
  }
  percentile(p: number): number {
    if (this.n === 0) return NaN;
    const s = this.lat.slice(0, this.n).sort();
    return s[Math.min(this.n - 1, Math.floor(p * this.n))]!;
  }
  reset(): void {
    this.count = 0;
    this.n = 0;
  }
}

// ---- the children: the stream's producer, the webhook receiver (each a process of its own) ----------

async function receiver(): Promise<void> {
  const meter = new Meter();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      // The delivery's "ts" is the record's time (ISO, µs): latency record time → received here.
      const m = /"ts":"([^"]+)"/.exec(body);
      if (m) meter.record(Date.now() - Date.parse(m[1]!));
      res.writeHead(200).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.on('message', (msg: { cmd: string }) => {
    if (msg.cmd === 'reset') {
      meter.reset();
      process.send!({ ok: true });
    }
    if (msg.cmd === 'stats') process.send!({ received: meter.count, p50: meter.percentile(0.5), p99: meter.percentile(0.99) });
    if (msg.cmd === 'stop') {
      server.closeAllConnections();
      server.close();
      process.exit(0);
    }
  });
  process.send!({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` });
}

async function producerProcess(): Promise<void> {
  const kafka = createKafka({ brokers: String(args.brokers).split(','), clientId: 'bench-broadcast-stream', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const producer = createProducer(kafka);
  await producer.connect();
  const codec = new AvroCodec({ topicPrefix: String(args.prefix) });
  const topic = topicFor(String(args.prefix), 'trade');
  const prices = SYMBOLS.map(() => START_PRICE);
  let n = 0;
  let sent = 0;
  let running = true;
  const started = Date.now();
  // Paced by the wall clock: every 10 ms, what the rate owes since the start.
  const loop = (async () => {
    while (running) {
      const due = Math.floor(((Date.now() - started) / 1000) * RATE);
      const msgs = [];
      const nowUs = Date.now() * 1000;
      for (; n < due; n++) {
        const s = n % SYMBOLS.length;
        prices[s] = prices[s]! * (1 + (Math.random() - 0.5) * 2e-4);
        const t: Trade = { exchange: EXCHANGES[n % 2]!, symbol: SYMBOLS[s]!, ts: nowUs, received_at: nowUs, id: String(n), side: n % 3 ? 'buy' : 'sell', price: prices[s]!, amount: Math.random() };
        msgs.push({ key: `${t.exchange}:${t.symbol}`, value: codec.encode('trade', t) });
      }
      // Sends of at most 2,000 records (a send is one request: the broker caps its size).
      for (let i = 0; i < msgs.length; i += 2_000) {
        await producer.send({ topic, acks: -1, messages: msgs.slice(i, i + 2_000) });
        sent += Math.min(2_000, msgs.length - i);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  process.on('message', (msg: { cmd: string }) => {
    if (msg.cmd === 'stats') process.send!({ sent, elapsed: (Date.now() - started) / 1000 });
    if (msg.cmd === 'stop') {
      running = false;
      void loop.then(async () => {
        await producer.disconnect();
        process.exit(0);
      });
    }
  });
  process.send!({ ok: true });
}

function ask<T>(c: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    c.once('message', (m) => resolve(m as T));
    c.send({ cmd });
  });
}

// ---- the measured process ------------------------------------------------------------------------

/** 1,000 registrations: exact and wildcard instruments; amount/side predicates (~0.1 % each), and crossings. */
function registrations(n: number): { name: string; exchange: string; symbol: string; predicate: string }[] {
  return Array.from({ length: n }, (_, i) => {
    const symbol = i % 10 === 0 ? '*/USDT' : SYMBOLS[i % SYMBOLS.length]!;
    const exchange = i % 5 === 0 ? '*' : EXCHANGES[i % 2]!;
    const predicate =
      i % 10 === 9 ? `price crosses above ${(START_PRICE * (1 + ((i % 7) - 3) / 1000)).toFixed(3)}` : i % 3 === 0 ? `amount > ${(0.999 + (i % 10) / 100_000).toFixed(5)}` : `side = 'buy' and amount >= 0.9985`;
    return { name: `r${String(i).padStart(4, '0')}`, exchange, symbol, predicate };
  });
}

async function main(): Promise<void> {
  const kafkaInfra = await benchBrokers();
  const pg = await startPostgresServer();
  const prefix = `benchbc${Date.now().toString(36)}`;
  const pool = createPool(pg.url, { max: 4 });
  const spawnChild = (role: string) => fork(new URL(import.meta.url).pathname, ['--child', role, '--brokers', kafkaInfra.brokers.join(','), '--prefix', prefix, '--rate', String(RATE)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const stream = spawnChild('producer');
  const world = spawnChild('receiver');
  const streamReady = new Promise((r) => stream.once('message', r));
  const worldReady = new Promise<{ url: string }>((r) => world.once('message', (m) => r(m as { url: string })));
  try {
    await migrate(pool);
    const config = parseConfig({ kafka: { brokers: kafkaInfra.brokers, topicPrefix: prefix, clientId: prefix, partitions: 3 }, broadcast: { groupId: `${prefix}-broadcast`, metricsPort: 0, httpConcurrency: 32 } }, { env: {} });
    const kafka = createKafka({ ...config.kafka, brokers: kafkaInfra.brokers });
    await ensureTopics(kafka, config.kafka, ['trade']);
    const topic = topicFor(prefix, 'trade');
    const hello = await worldReady;
    await streamReady;
    process.stdout.write(`stream: ${fmt(RATE)} trades/s into ${topic} (${SYMBOLS.length} symbols × ${EXCHANGES.length} exchanges); webhook ${hello.url}\n`);
    await new Promise((r) => setTimeout(r, 3_000));
    const lagOf = async (groupTopicOffsets: () => Promise<Map<number, number>>) => {
      const admin = kafka.admin();
      await admin.connect();
      const high = await partitionOffsets(admin, topic);
      await admin.disconnect();
      const at = await groupTopicOffsets();
      return [...high].reduce((s, [p, o]) => s + Math.max(0, o.high - (at.get(p) ?? o.high)), 0);
    };

    // Baseline: a plain kafkajs consumer decoding the same live stream.
    process.stdout.write(`baseline: a plain kafkajs consumer decoding the stream for ${SECONDS} s...\n`);
    const base = new Meter();
    const baseAt = new Map<number, number>();
    const codec = new AvroCodec({ topicPrefix: prefix });
    const consumer = createConsumer(kafka, { groupId: `${prefix}-baseline`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: false });
    let measuring = false;
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const t = (await codec.decode(m.value!)).value as Trade;
          if (measuring) base.record(Date.now() - t.ts / 1000);
        }
        baseAt.set(batch.partition, Number(batch.lastOffset()) + 1);
      },
    });
    await new Promise((r) => setTimeout(r, 2_000));
    measuring = true;
    let t0 = performance.now();
    let cpu0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    measuring = false;
    const baseSeconds = (performance.now() - t0) / 1000;
    const baseCpu = process.cpuUsage(cpu0);
    const baseLag = await lagOf(async () => baseAt);
    await consumer.disconnect();

    // The broadcast runtime with the registrations, delivering to the webhook.
    process.stdout.write(`broadcast: ${fmt(REGISTRATIONS)} registrations, delivering to the webhook for ${SECONDS} s...\n`);
    await pool.query('insert into broadcasters (name, kind, config) values ($1, $2, $3)', ['bench-hook', 'http', JSON.stringify({ url: hello.url, timeoutMs: 5_000 })]);
    const regs = registrations(REGISTRATIONS);
    await pool.query(
      `insert into registrations (name, broadcaster, kind, exchange, symbol, predicate)
       select n, 'bench-hook', 'trade', e, s, p from unnest($1::text[], $2::text[], $3::text[], $4::text[]) as x(n, e, s, p)`,
      [regs.map((r) => r.name), regs.map((r) => r.exchange), regs.map((r) => r.symbol), regs.map((r) => r.predicate)],
    );
    const part = buildBroadcast(config, { pool, brokers: kafkaInfra.brokers, listen: false });
    let records = 0;
    let matched = 0;
    let busy = 0;
    part.events.on('batch', (e) => {
      if (!measuring) return;
      records += e.records;
      matched += e.matched;
      busy += e.seconds;
    });
    await part.start();
    await new Promise((r) => setTimeout(r, 3_000));
    await ask(world, 'reset');
    measuring = true;
    t0 = performance.now();
    cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    measuring = false;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const bcCpu = process.cpuUsage(cpu0);
    const bcSeconds = (performance.now() - t0) / 1000;
    const hook = await ask<{ received: number; p50: number; p99: number }>(world, 'stats');
    const bcLag = await lagOf(async () => {
      const rows = (await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from broadcast_offsets where group_id = $1 and topic = $2', [config.broadcast.groupId, topic])).rows;
      return new Map(rows.map((r) => [r.partition, r.next_offset]));
    });
    await part.stop();
    const sent = await ask<{ sent: number; elapsed: number }>(stream, 'stats');

    process.stdout.write(`\nstream offered ${fmt(sent.sent / sent.elapsed)} trades/s over the run\n`);
    console.table([
      { pipeline: 'baseline: plain kafkajs consumer', 'records/s': fmt(base.count / baseSeconds), 'matches/s': '-', 'delivered/s': '-', 'p50 ms': base.percentile(0.5).toFixed(1), 'p99 ms': base.percentile(0.99).toFixed(1), 'lag at end': fmt(baseLag) },
      {
        pipeline: `broadcast, ${fmt(REGISTRATIONS)} registrations → webhook`,
        'records/s': fmt(records / bcSeconds),
        'matches/s': fmt(matched / bcSeconds),
        'delivered/s': fmt(hook.received / bcSeconds),
        'p50 ms': hook.p50.toFixed(1),
        'p99 ms': hook.p99.toFixed(1),
        'lag at end': fmt(bcLag),
      },
    ]);
    // CPU time of the measured process (user + system) per 1,000 records: unlike the latencies, it does not depend on what else the machine runs.
    const cpuPer1k = (u: NodeJS.CpuUsage, n: number) => (n > 0 ? ((u.user + u.system) / 1000 / (n / 1000)).toFixed(1) : '-');
    process.stdout.write(`latency: record time (produced) → decoded by the baseline consumer / → received by the webhook. Broadcast event loop ${(elu * 100).toFixed(0)}% busy; batches busy ${((busy / bcSeconds) * 100).toFixed(0)}% of the time.\n`);
    process.stdout.write(`CPU per 1,000 records: baseline ${cpuPer1k(baseCpu, base.count)} ms, broadcast ${cpuPer1k(bcCpu, records)} ms (${fmt(matched / Math.max(1, records / 1000))} deliveries per 1,000 records).\n`);
  } finally {
    for (const c of [stream, world]) {
      if (c.connected && c.exitCode === null) {
        c.send({ cmd: 'stop' });
        await new Promise((r) => c.once('exit', r));
      }
    }
    await pool.end();
    await pg.stop();
    await kafkaInfra.stop();
  }
}

if (args.child === 'producer') await producerProcess();
else if (args.child === 'receiver') await receiver();
else await main();
