/**
 * The stream hub's recent window is bounded by api.stream.recentMaxRecords: with a real broker
 * and more records in the window than the cap, the hub holds exactly the newest `cap` of them,
 * in order, and its storage never takes more slots than the cap (it used to keep up to 50,000
 * consumed-and-dropped records, or as many as it held, before compacting).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { AvroCodec } from '../../core/avro.ts';
import { createKafka, createProducer, ensureTopics, recordKey } from '../../core/kafka.ts';
import { ApiEvents } from '../events.ts';
import { sleep } from '../../core/retry.ts';
import { topicFor, type Trade } from '../../schemas/index.ts';
import { StreamHub } from './hub.ts';

const CAP = 1_000;
const PRODUCED = 3_500;

describe('stream hub recent window', () => {
  const prefix = `hubwin${randomBytes(3).toString('hex')}`;
  const kafkaSettings = { brokers: inject('kafkaBrokers'), clientId: prefix, topicPrefix: prefix, partitions: 1, replicationFactor: 1, retentionMs: 3_600_000, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 };
  let hub: StreamHub | undefined;

  afterAll(async () => {
    await hub?.close();
  });

  it(`holds at most recentMaxRecords (${CAP}) of ${PRODUCED} records in the window: the newest, in order`, async () => {
    const kafka = createKafka(kafkaSettings);
    await ensureTopics(kafka, kafkaSettings);
    const codec = new AvroCodec({ topicPrefix: prefix });
    const producer = createProducer(kafka);
    await producer.connect();
    const now = Date.now() * 1000;
    const trades: Trade[] = Array.from({ length: PRODUCED }, (_, i) => ({ exchange: 'binance', symbol: 'BTC/USDT', ts: now + i, received_at: now + i, id: String(i), side: 'buy', price: 100 + i, amount: 1 }));
    for (let i = 0; i < PRODUCED; i += 500) {
      await producer.send({ topic: topicFor(prefix, 'trade'), acks: -1, messages: trades.slice(i, i + 500).map((t) => ({ key: recordKey(t), value: codec.encode('trade', t) })) });
    }
    await producer.disconnect();

    hub = new StreamHub({ kafka: kafkaSettings, codec, recentWindowMs: 600_000, recentMaxRecords: CAP, events: new ApiEvents() });
    await hub.start();
    await hub.ready;
    const fence = await hub.fence(['trades']);
    for (let i = 0; i < 300 && !hub.passed(fence); i++) await sleep(100);
    expect(hub.passed(fence)).toBe(true);

    expect(hub.held.records).toBe(CAP);
    expect(hub.held.slots).toBeLessThanOrEqual(CAP);
    const { recent, unsubscribe } = hub.subscribe({ channels: new Set(['trades']), instruments: null, deliver: () => undefined });
    unsubscribe();
    expect(recent.map((r) => (r.row as { id: string }).id)).toEqual(trades.slice(-CAP).map((t) => t.id));
  }, 90_000);
});
