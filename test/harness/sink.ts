/**
 * Helpers for the sink's end-to-end tests: a config per test (own topic prefix, own connector
 * names), producing records, reading a topic back, waiting for a condition.
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { AvroCodec } from '../../core/avro.ts';
import { parseConfig, type Config } from '../../config/schema.ts';
import { createKafka, createProducer, type IHeaders, type Kafka } from '../../core/kafka.ts';
import { sleep } from '../../core/retry.ts';
import type { RecordKind, RecordOf, Trade } from '../../schemas/index.ts';

export function uniquePrefix(tag: string): string {
  return `t${tag}${randomBytes(4).toString('hex')}`;
}

export function testKafka(): Kafka {
  return createKafka({ brokers: inject('kafkaBrokers'), clientId: 'test', connectionTimeoutMs: 5000, requestTimeoutMs: 30000 });
}

/** A validated config for a test: its own topic prefix, the harness's brokers, extra sections merged. */
export function sinkTestConfig(prefix: string, extra: { sink?: Record<string, unknown>; database?: Record<string, unknown>; kafka?: Record<string, unknown> } = {}): Config {
  return parseConfig(
    {
      kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 3, retentionMs: 3_600_000, ...extra.kafka },
      database: { ...extra.database },
      sink: { apiPort: 0, ...extra.sink },
    },
    { env: {} },
  );
}

export async function produce<K extends RecordKind>(kafka: Kafka, codec: AvroCodec, topic: string, kind: K, records: readonly RecordOf[K][]): Promise<void> {
  await produceRaw(
    kafka,
    topic,
    records.map((r) => ({ key: `${r.exchange}:${r.symbol}`, value: codec.encode(kind, r) })),
  );
}

export async function produceRaw(kafka: Kafka, topic: string, messages: { key: string; value: Buffer | null; partition?: number }[]): Promise<void> {
  const producer = createProducer(kafka);
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 5000) {
      await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 5000) });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface ReadMessage {
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: Buffer | null;
  readonly headers: Record<string, string>;
}

/** Reads a topic from the beginning until `count` messages arrived (or the timeout). */
export async function readTopic(kafka: Kafka, topic: string, count: number, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const got: ReadMessage[] = [];
  const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries((message.headers ?? {}) as IHeaders)) headers[k] = Array.isArray(v) ? String(v[v.length - 1]) : String(v);
        got.push({ partition, offset: message.offset, key: message.key?.toString() ?? null, value: message.value, headers });
      },
    });
    const deadline = Date.now() + timeoutMs;
    while (got.length < count && Date.now() < deadline) await sleep(200);
  } finally {
    await consumer.disconnect();
  }
  return got;
}

/** Polls `fn` until it returns a truthy value; throws with `what` after the timeout. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

export const BASE_US = Date.UTC(2024, 0, 2, 0, 0, 0) * 1000;

/** n distinct trades over a few instruments, 1.001 ms apart. */
export function makeTrades(n: number, opts: { startUs?: number; stepUs?: number; idPrefix?: string } = {}): Trade[] {
  const start = opts.startUs ?? BASE_US;
  const step = opts.stepUs ?? 1001;
  const symbols = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT'];
  return Array.from({ length: n }, (_, i) => ({
    exchange: i % 5 === 0 ? 'okx' : 'binance',
    symbol: symbols[i % symbols.length]!,
    ts: start + i * step,
    received_at: start + i * step + 250,
    id: `${opts.idPrefix ?? 't'}${i}`,
    side: (['buy', 'sell', 'unknown'] as const)[i % 3]!,
    price: 100 + ((i * 7919) % 10_000) / 100,
    amount: ((i * 104_729) % 1000) / 1000 + 0.001,
  }));
}

export function codecFor(prefix: string): AvroCodec {
  return new AvroCodec({ topicPrefix: prefix });
}
