/**
 * Avro records through the real Kafka broker: produced with the project's producer settings
 * (idempotent, compressed, keyed exchange:symbol) and consumed back equal, in both framings.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AvroCodec } from '../core/avro.ts';
import { CompressionTypes, createConsumer, createKafka, createProducer, ensureTopics, recordKey } from '../core/kafka.ts';
import { topicFor, type Candle, type Trade } from '../schemas/index.ts';
import { MemoryRegistry } from './harness/memory-registry.ts';

const trades: Trade[] = Array.from({ length: 50 }, (_, i) => ({
  exchange: i % 2 ? 'binance' : 'okx',
  symbol: i % 3 ? 'BTC/USDT' : 'ETH/USDT',
  ts: 1_700_000_000_000_000 + i * 1_000,
  received_at: 1_700_000_000_000_500 + i * 1_000,
  id: String(1000 + i),
  side: (['buy', 'sell', 'unknown'] as const)[i % 3]!,
  price: 30_000 + i * 0.5,
  amount: 0.001 * (i + 1),
}));
const candle: Candle = { exchange: 'binance', symbol: 'BTC/USDT', ts: 1_700_000_040_000_000, received_at: 1_700_000_041_000_000, timeframe: '1m', open: 1, high: 2, low: 0.5, close: 1.5, volume: 10, closed: false };

describe.each(['single-object', 'confluent'] as const)('Avro over the real Kafka broker, %s framing', (framing) => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const kafka = createKafka({ brokers: inject('kafkaBrokers'), clientId: 'test', connectionTimeoutMs: 5000, requestTimeoutMs: 30000 });
  const registry = new MemoryRegistry();
  const codec = new AvroCodec({ topicPrefix: prefix, ...(framing === 'confluent' ? { registry } : {}) });

  beforeAll(async () => {
    await ensureTopics(kafka, { topicPrefix: prefix, partitions: 3, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade', 'candle']);
    await codec.prepare();
  });

  it('consumes back exactly the records produced, in order per instrument', async () => {
    const producer = createProducer(kafka);
    await producer.connect();
    await producer.sendBatch({
      compression: CompressionTypes.GZIP,
      topicMessages: [
        { topic: topicFor(prefix, 'trade'), messages: trades.map((t) => ({ key: recordKey(t), value: codec.encode('trade', t) })) },
        { topic: topicFor(prefix, 'candle'), messages: [{ key: recordKey(candle), value: codec.encode('candle', candle) }] },
      ],
    });
    await producer.disconnect();

    // A second codec, as a separate consumer process would have: it knows no writer ids yet.
    const reader = new AvroCodec({ topicPrefix: prefix, ...(framing === 'confluent' ? { registry } : {}) });
    const got: { topic: string; key: string; value: unknown; framing: string }[] = [];
    const consumer = createConsumer(kafka, { groupId: `${prefix}-g` });
    await consumer.connect();
    await consumer.subscribe({ topics: [topicFor(prefix, 'trade'), topicFor(prefix, 'candle')], fromBeginning: true });
    const done = new Promise<void>((resolve, reject) => {
      void consumer.run({
        eachMessage: async ({ topic, message }) => {
          try {
            const d = await reader.decode(message.value!);
            got.push({ topic, key: message.key!.toString(), value: { ...d.value }, framing: d.framing });
            if (got.length === trades.length + 1) resolve();
          } catch (e) {
            reject(e);
          }
        },
      });
    });
    await Promise.race([done, new Promise((_, r) => setTimeout(() => r(new Error(`timed out with ${got.length} records`)), 45_000))]);
    await consumer.disconnect();

    expect(got.every((g) => g.framing === framing)).toBe(true);
    const gotTrades = got.filter((g) => g.topic === topicFor(prefix, 'trade'));
    expect(gotTrades.map((g) => g.value)).toHaveLength(trades.length);
    // Partitions interleave, but each instrument (key) keeps its order.
    for (const key of new Set(trades.map(recordKey))) {
      expect(gotTrades.filter((g) => g.key === key).map((g) => g.value)).toEqual(trades.filter((t) => recordKey(t) === key));
    }
    expect(got.find((g) => g.topic === topicFor(prefix, 'candle'))?.value).toEqual(candle);
    if (framing === 'confluent') expect([...registry.subjects.keys()]).toContain(`${prefix}.trades-value`);
  });

  afterAll(async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topicFor(prefix, 'trade'), topicFor(prefix, 'candle')] }).catch(() => undefined);
    await admin.disconnect();
  });
});
