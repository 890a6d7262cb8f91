/**
 * /v1/stream over a real socket, with the real Kafka broker and the PostgreSQL server: clients
 * subscribe with `since` while trades keep flowing into Kafka (Avro, keyed exchange:symbol) and
 * into the database — by a stand-in sink that writes each instrument's trades in Kafka order
 * 0.8 s behind (so at the seam the database always lacks the newest records), and by the real
 * sink (sink/). Each client must receive every trade at or after its `since` exactly once, in
 * order per instrument, across the replay/live seam — including a client of an API process that
 * started while the stream was already flowing — and nothing of instruments it did not ask for.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { buildApi, type Api } from '../api/index.ts';
import { AvroCodec } from '../core/avro.ts';
import { parseConfig, type Config } from '../config/schema.ts';
import { createKafka, createProducer, ensureTopics, recordKey, type Producer } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { openTestDb, type TestDb } from './harness/db.ts';
import { insertTrades } from './harness/market-data.ts';

const INSTRUMENTS = [
  { exchange: 'binance', symbol: 'BTC/USDT' },
  { exchange: 'binance', symbol: 'ETH/USDT' },
  { exchange: 'okx', symbol: 'BTC/USDT' },
] as const;
const key = (x: { exchange: string; symbol: string }) => `${x.exchange} ${x.symbol}`;

interface Client {
  readonly got: Map<string, Array<{ id: string; ts: string }>>;
  replayed: number;
  live: number;
  liveMarker: boolean;
  readonly errors: string[];
  close(): void;
}

async function subscribe(url: string, msg: Record<string, unknown>): Promise<Client> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const c: Client = { got: new Map(), replayed: 0, live: 0, liveMarker: false, errors: [], close: () => ws.close() };
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; channel?: string; replay?: boolean; data?: Array<Record<string, string>>; message?: string };
    if (m.type === 'error') c.errors.push(m.message ?? '?');
    if (m.type === 'live') c.liveMarker = true;
    if (m.type !== 'data' || m.channel !== 'trades') return;
    for (const t of m.data ?? []) {
      const k = key(t as unknown as { exchange: string; symbol: string });
      if (!c.got.has(k)) c.got.set(k, []);
      c.got.get(k)!.push({ id: t.id!, ts: t.ts! });
      if (m.replay) c.replayed++;
      else c.live++;
    }
  });
  ws.send(JSON.stringify({ op: 'subscribe', ...msg }));
  return c;
}

const isoMicros = (us: number) => {
  const ms = Math.floor(us / 1000);
  const rest = us - ms * 1000;
  const iso = new Date(ms).toISOString();
  return rest === 0 ? iso : `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
};

/** Trades for every instrument, produced to Kafka in small batches, as a gateway would. */
class Flow {
  private readonly producer: Producer;
  private readonly codec: AvroCodec;
  private readonly topic: string;
  readonly produced = new Map<string, Trade[]>(INSTRUMENTS.map((i) => [key(i), []]));
  private seq = 0;
  private lastTs = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  /** Called with each batch once it is in Kafka, with the time it got there. */
  onProduced: (batch: Trade[], at: number) => void = () => undefined;

  constructor(producer: Producer, codec: AvroCodec, topic: string) {
    this.producer = producer;
    this.codec = codec;
    this.topic = topic;
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const batch: Trade[] = [];
        for (const inst of INSTRUMENTS) {
          for (let i = 0; i < 3; i++) {
            const ts = Math.max(Date.now() * 1000, this.lastTs + 1) + (this.seq % 997);
            this.lastTs = ts;
            batch.push({ ...inst, ts, received_at: ts + 500, id: `t${++this.seq}`, side: 'buy', price: 100 + (this.seq % 50), amount: 1 });
          }
        }
        await this.producer.send({ topic: this.topic, acks: -1, messages: batch.map((t) => ({ key: recordKey(t), value: this.codec.encode('trade', t) })) });
        for (const t of batch) this.produced.get(key(t))!.push(t);
        this.onProduced(batch, Date.now());
        await sleep(15);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** A trade's ts to subscribe from: the n-th produced trade of an instrument. */
  sinceAt(n: number): number {
    return this.produced.get(key(INSTRUMENTS[0]))![n]!.ts;
  }

  expected(inst: { exchange: string; symbol: string }, since: number): Array<{ id: string; ts: string }> {
    return this.produced.get(key(inst))!.filter((t) => t.ts >= since).map((t) => ({ id: t.id, ts: isoMicros(t.ts) }));
  }
}

async function until(what: string, cond: () => boolean, ms = 45_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe.each(['a stand-in sink 0.8 s behind Kafka', 'the real sink'] as const)('/v1/stream with %s', (sinkKind) => {
  const prefix = `tapi${randomBytes(4).toString('hex')}`;
  let db: TestDb;
  let config: Config;
  let producer: Producer;
  let flow: Flow;
  let sink: Sink | undefined;
  let fakeSink: Promise<void> | undefined;
  let stopFakeSink = false;
  const apis: Api[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    db = await openTestDb('postgres', { poolMax: 8 });
    await migrate(db.pool);
    config = parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 3 }, api: { port: 0 } }, { env: {} });
    const kafka = createKafka(config.kafka);
    await ensureTopics(kafka, config.kafka);
    producer = createProducer(kafka);
    await producer.connect();
    const codec = new AvroCodec({ topicPrefix: prefix });
    flow = new Flow(producer, codec, topicFor(prefix, 'trade'));

    if (sinkKind === 'the real sink') {
      sink = buildSink(config, { pool: db.pool, brokers: inject('kafkaBrokers'), listen: false, schedule: false });
      await sink.start();
    } else {
      // Writes what reached Kafka at least 0.8 s ago, per instrument in Kafka order, one statement per round.
      const pending: Array<{ at: number; batch: Trade[] }> = [];
      flow.onProduced = (batch, at) => pending.push({ at, batch });
      fakeSink = (async () => {
        while (!stopFakeSink || pending.length) {
          const due: Trade[] = [];
          while (pending.length && (stopFakeSink || pending[0]!.at <= Date.now() - 800)) due.push(...pending.shift()!.batch);
          if (due.length) await insertTrades(db.pool, due);
          await sleep(50);
        }
      })();
    }
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await flow?.stop();
    stopFakeSink = true;
    await fakeSink;
    for (const a of apis) await a.close();
    await sink?.close();
    await producer?.disconnect();
    await db?.close();
  });

  async function startApi(): Promise<string> {
    const api = buildApi(config, { pool: db.pool, brokers: inject('kafkaBrokers') });
    apis.push(api);
    const url = await api.start();
    await api.app.hub!.ready;
    return url;
  }

  it('delivers every record at or after `since` exactly once, in order per instrument, across the replay/live seam', async () => {
    const url = await startApi();
    flow.start();
    await sleep(2_000);

    // 1: subscribes from early on, for two of the three instruments.
    const since1 = flow.sinceAt(20);
    const c1 = await subscribe(url, { channels: ['trades'], instruments: [INSTRUMENTS[0], INSTRUMENTS[2]], since: isoMicros(since1) });
    clients.push(c1);
    // 2: live only, everything.
    const c2 = await subscribe(url, { channels: ['trades'] });
    clients.push(c2);
    await sleep(1_500);

    // 3: a second API process, started while the flow runs, and a client of it reaching back further.
    const url2 = await startApi();
    const since3 = flow.sinceAt(5);
    const c3 = await subscribe(url2, { channels: ['trades', 'candles'], instruments: [...INSTRUMENTS], since: isoMicros(since3) });
    clients.push(c3);
    await sleep(2_000);
    await flow.stop();

    const lastId = (inst: { exchange: string; symbol: string }) => flow.produced.get(key(inst))!.at(-1)!.id;
    const hasLast = (c: Client, insts: readonly { exchange: string; symbol: string }[]) => insts.every((i) => c.got.get(key(i))?.at(-1)?.id === lastId(i));
    await until('client 1 to receive the last trades', () => hasLast(c1, [INSTRUMENTS[0], INSTRUMENTS[2]]));
    await until('client 2 to receive the last trades', () => hasLast(c2, INSTRUMENTS));
    await until('client 3 to receive the last trades', () => hasLast(c3, INSTRUMENTS));
    await sleep(300); // anything duplicated after the last record would show now

    for (const c of [c1, c2, c3]) expect(c.errors).toEqual([]);
    for (const inst of [INSTRUMENTS[0], INSTRUMENTS[2]]) expect(c1.got.get(key(inst)), `client 1 ${key(inst)}`).toEqual(flow.expected(inst, since1));
    expect(c1.got.has(key(INSTRUMENTS[1]))).toBe(false);
    for (const inst of INSTRUMENTS) expect(c3.got.get(key(inst)), `client 3 ${key(inst)}`).toEqual(flow.expected(inst, since3));
    // Both sides of the seam were exercised.
    for (const c of [c1, c3]) {
      expect(c.liveMarker).toBe(true);
      expect(c.replayed).toBeGreaterThan(0);
      expect(c.live).toBeGreaterThan(0);
    }
    // Live only: a contiguous tail of each instrument's trades, no duplicate.
    for (const inst of INSTRUMENTS) {
      const got = c2.got.get(key(inst))!;
      const all = flow.expected(inst, 0);
      const start = all.findIndex((t) => t.id === got[0]!.id);
      expect(start).toBeGreaterThan(0);
      expect(got).toEqual(all.slice(start));
      expect(c2.replayed).toBe(0);
    }
  });
});

describe('/v1/stream protocol errors', () => {
  let api: Api;
  let url: string;
  beforeAll(async () => {
    const config = parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: `tapi${randomBytes(4).toString('hex')}` }, api: { port: 0 } }, { env: {} });
    const db = await openTestDb('postgres', { poolMax: 2 });
    await migrate(db.pool);
    api = buildApi(config, { pool: db.pool, brokers: inject('kafkaBrokers') });
    api.app.addHook('onClose', async () => db.close());
    url = await api.start();
    await api.app.hub!.ready;
  });
  afterAll(async () => api?.close());

  it('answers a bad subscription with an error naming the field, and keeps the connection', async () => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`);
    const messages: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    const send = (m: unknown) => ws.send(typeof m === 'string' ? m : JSON.stringify(m));
    send('not json');
    send({ op: 'subscribe', channels: ['trades', 'orders'] });
    send({ op: 'subscribe', channels: ['trades'], since: '2024-01-01T00:00:00Z' });
    send({ op: 'subscribe', channels: ['trades'], instruments: [{ exchange: 'binance', symbol: 'BTCUSDT' }] });
    send({ op: 'subscribe', channels: ['trades'], instruments: [{ exchange: 'binance', symbol: 'BTC/USDT' }], since: 'yesterday' });
    send({ op: 'subscribe', channels: ['trades'], colour: 'red' });
    send({ op: 'ping', id: 7 });
    await until('all answers', () => messages.length >= 7, 10_000);
    ws.close();
    expect(messages.slice(0, 7)).toEqual([
      { type: 'error', message: expect.stringMatching(/^not JSON/) },
      { type: 'error', message: expect.stringMatching(/^channels\[1\]: unknown channel "orders"/), field: 'channels' },
      { type: 'error', message: expect.stringMatching(/^instruments: required with since/), field: 'instruments' },
      { type: 'error', message: expect.stringMatching(/^instruments\[0\]\.symbol/), field: 'instruments' },
      { type: 'error', message: expect.stringMatching(/^since: expected an ISO 8601 time/), field: 'since' },
      { type: 'error', message: expect.stringMatching(/^colour: unknown field/), field: 'colour' },
      { type: 'pong', id: 7 },
    ]);
  });
});

describe('/v1/stream message size', () => {
  const apis: Api[] = [];
  let db: TestDb;
  const start = async (maxInstruments?: number): Promise<string> => {
    const config = parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: `tapi${randomBytes(4).toString('hex')}` }, api: { port: 0, stream: maxInstruments ? { maxInstruments } : {} } }, { env: {} });
    const api = buildApi(config, { pool: db.pool, brokers: inject('kafkaBrokers') });
    apis.push(api);
    const url = await api.start();
    await api.app.hub!.ready;
    return url;
  };
  beforeAll(async () => {
    db = await openTestDb('postgres', { poolMax: 2 });
    await migrate(db.pool);
  });
  afterAll(async () => {
    for (const a of apis) await a.close();
    await db?.close();
  });

  /** Sends one text frame; collects the messages and the close code. */
  async function exchange(url: string, text: string, until: (m: Array<Record<string, unknown>>) => boolean) {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`);
    const messages: Array<Record<string, unknown>> = [];
    let closed: number | undefined;
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    ws.on('close', (code) => (closed = code));
    ws.on('error', () => undefined);
    await new Promise((r) => ws.once('open', r));
    ws.send(text);
    const deadline = Date.now() + 20_000;
    while (!until(messages) && closed === undefined && Date.now() < deadline) await sleep(20);
    await sleep(200);
    return { messages, closed, ws };
  }

  // The longest valid names: a 64-character exchange id, a 100-character symbol, here even written
  // with \u escapes (6 bytes a character) — the largest a subscription of N instruments can be.
  const longest = (n: number) => {
    const symbol = `${'É'.repeat(49)}/${'É'.repeat(50)}`;
    const inst = (i: number) => `{"exchange":"${String(i).padStart(64, 'x')}","symbol":"${symbol.replace(/É/g, '\\u00c9')}"}`;
    return `{"op":"subscribe","channels":["trades","tickers","candles","books","gaps"],"instruments":[${Array.from({ length: n }, (_, i) => inst(i)).join(',')}]}`;
  };

  it('admits a subscription of maxInstruments instruments, however long their valid names', async () => {
    const url = await start(10_000);
    const text = longest(10_000);
    expect(text.length).toBeGreaterThan(6_500_000);
    const { messages, closed, ws } = await exchange(url, text, (m) => m.length > 0);
    ws.close();
    expect(closed).toBeUndefined();
    expect(messages[0]).toMatchObject({ type: 'subscribed', channels: ['trades', 'tickers', 'candles', 'books', 'gaps'] });
    expect((messages[0]!.instruments as unknown[]).length).toBe(10_000);
  });

  it('answers a message over the limit with an error naming it before closing (1009); fewer, too many instruments: an error, and stays open', async () => {
    const url = await start();
    const big = await exchange(url, longest(10_000), () => false);
    expect(big.messages).toEqual([{ type: 'error', message: 'message too large: at most 169984 bytes (room for a subscription of api.stream.maxInstruments = 200 instruments); closing (1009)' }]);
    expect(big.closed).toBe(1009);

    const many = await exchange(url, longest(201), (m) => m.length > 0);
    many.ws.send(JSON.stringify({ op: 'ping', id: 1 }));
    await sleep(300);
    many.ws.close();
    expect(many.closed).toBeUndefined();
    expect(many.messages).toEqual([{ type: 'error', message: 'instruments: at most 200 (api.stream.maxInstruments)', field: 'instruments' }, { type: 'pong', id: 1 }]);
  });
});
