/**
 * A record nothing can decode (a "poison" record: not tickflow's Avro framing) in the middle of the
 * trades topic, on the real broker and the PostgreSQL server, while the broadcaster (broadcast/)
 * and the API's live stream hub (/v1/stream) consume it. Each skips it, saying which record (topic,
 * partition, offset), and keeps delivering: the trades after it, in the same partition and the
 * same fetch, reach the webhook and the websocket client, in order, each once.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { buildApi, type Api } from '../api/index.ts';
import { buildBroadcast, type BroadcastPart } from '../broadcast/index.ts';
import { parseConfig } from '../config/schema.ts';
import { AvroCodec } from '../core/avro.ts';
import { createKafka, createProducer, ensureTopics, recordKey, type Producer } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { addBroadcaster, addRegistration, startReceiver, type Receiver } from './harness/broadcast.ts';
import { openTestDb, type TestDb } from './harness/db.ts';

const INSTRUMENT = { exchange: 'sim', symbol: 'BTC/USDT' } as const;
/** Undecodable values: Confluent framing with no registry, Avro single-object framing of an unknown schema, plain text. */
const POISONS = [Buffer.from([0, 0, 0, 0, 7, 1, 2, 3]), Buffer.from([0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4]), Buffer.from('{"not":"avro"}')];

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('a poison record on the trades topic: the broadcaster and the API stream hub skip it and deliver what follows', () => {
  const prefix = `tpoison${randomBytes(4).toString('hex')}`;
  const brokers = inject('kafkaBrokers');
  const config = parseConfig(
    {
      kafka: { brokers, topicPrefix: prefix, clientId: prefix, partitions: 1, retentionMs: 3_600_000 },
      api: { port: 0 },
      broadcast: { groupId: `${prefix}-broadcast`, reloadMs: 200, metricsPort: 0 },
    },
    { env: {} },
  );
  const topic = topicFor(prefix, 'trade');
  const codec = new AvroCodec({ topicPrefix: prefix });
  let db: TestDb;
  let producer: Producer;
  let hook: Receiver;
  let part: BroadcastPart | undefined;
  let api: Api | undefined;
  let ws: WebSocket | undefined;
  const streamed: string[] = [];
  const hubSkips: Array<{ topic: string; partition: number; offset: number }> = [];
  /** The broadcaster's skips (`topic:partition:offset: why`). */
  const broadcastProblems: string[] = [];
  let poisonOffsets: number[] = [];
  let seq = 0;

  const trade = (): Trade => {
    const ts = Date.now() * 1000 + ++seq;
    return { ...INSTRUMENT, ts, received_at: ts + 100, id: `p${seq}`, side: 'buy', price: 100 + seq, amount: 1 };
  };
  const hooked = () => hook.got.filter((g) => g.body.registration === 'all').map((g) => String(g.body.record.id));

  beforeAll(async () => {
    db = await openTestDb('postgres');
    await migrate(db.pool);
    const kafka = createKafka({ brokers, clientId: prefix, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
    await ensureTopics(kafka, config.kafka, ['trade']);
    producer = createProducer(kafka);
    await producer.connect();
    hook = await startReceiver();
    await addBroadcaster(db.pool, 'hook', 'http', { url: hook.url });
    await addRegistration(db.pool, { name: 'all', broadcaster: 'hook', kind: 'trade' });
    part = buildBroadcast(config, { pool: db.pool, brokers });
    part.events.on('problem', (e) => e.stage === 'decode' && broadcastProblems.push(e.error));
    await part.start();
    api = buildApi(config, { pool: db.pool, brokers });
    api.events.on('hub.undecodable', (e) => hubSkips.push(e));
    const url = await api.start();
    await api.app.hub!.ready;
    ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`);
    await new Promise<void>((resolve, reject) => {
      ws!.once('open', () => resolve());
      ws!.once('error', reject);
    });
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as { type: string; channel?: string; data?: Array<{ id: string }> };
      if (m.type === 'data' && m.channel === 'trades') for (const t of m.data ?? []) streamed.push(t.id);
    });
    ws.send(JSON.stringify({ op: 'subscribe', channels: ['trades'] }));
    // Both consumers are reading the topic: a first trade reaches both.
    const first = trade();
    const send = async (values: Buffer[]) => producer.send({ topic, acks: -1, messages: values.map((value) => ({ key: recordKey(INSTRUMENT), value })) });
    for (let i = 0; ; i++) {
      await send([codec.encode('trade', i === 0 ? first : trade())]);
      await sleep(500);
      if (streamed.length > 0 && hooked().length > 0) break;
      if (i > 60) throw new Error(`the consumers did not start: streamed ${streamed.length}, hooked ${hooked().length}`);
    }
    // One produce: a trade, the poisons, three trades (one partition, one fetch).
    const [meta] = await send([codec.encode('trade', trade()), ...POISONS, ...[1, 2, 3].map(() => codec.encode('trade', trade()))]);
    poisonOffsets = POISONS.map((_, i) => Number(meta!.baseOffset) + 1 + i);
    const last = `p${seq}`;
    await until('the trades after the poison at the webhook and the websocket', () => streamed.includes(last) && hooked().includes(last));
  }, 180_000);

  afterAll(async () => {
    ws?.close();
    await api?.close();
    await part?.stop();
    await producer?.disconnect();
    await hook?.close();
    await db?.close();
  });

  it('the broadcaster skips each, naming topic:partition:offset, and delivers every trade after it, in order, once', () => {
    const got = hooked();
    expect(got).toEqual([...new Set(got)]);
    expect(got.slice(-4)).toEqual([`p${seq - 3}`, `p${seq - 2}`, `p${seq - 1}`, `p${seq}`]);
    expect(broadcastProblems.map((p) => p.split(': ')[0])).toEqual(poisonOffsets.map((o) => `${topic}:0:${o}`));
  });

  it('the API stream hub skips each, naming topic, partition and offset, and streams every trade after it, in order, once', () => {
    expect(streamed).toEqual([...new Set(streamed)]);
    expect(streamed.slice(-4)).toEqual([`p${seq - 3}`, `p${seq - 2}`, `p${seq - 1}`, `p${seq}`]);
    expect(hubSkips).toEqual(poisonOffsets.map((offset) => ({ topic, partition: 0, offset, error: expect.any(String) })));
  });
});
