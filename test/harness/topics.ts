/**
 * Reads every record currently in some tickflow topics, decoded: the high watermarks are taken
 * first, then a throwaway consumer group reads each partition up to them. For end-to-end tests
 * that compare what a part produced with what it should have.
 */
import { randomBytes } from 'node:crypto';
import { AvroCodec } from '../../core/avro.ts';
import { createConsumer, createKafka } from '../../core/kafka.ts';
import { topicFor, type RecordKind, type RecordOf } from '../../schemas/index.ts';

export type Decoded = { [K in RecordKind]: Array<RecordOf[K] & { readonly key: string }> };

export async function readTopics(brokers: readonly string[], prefix: string, kinds: readonly RecordKind[], timeoutMs = 60_000): Promise<Decoded> {
  const kafka = createKafka({ brokers, clientId: `read-${prefix}`, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const codec = new AvroCodec({ topicPrefix: prefix });
  const out = Object.fromEntries(kinds.map((k) => [k, []])) as unknown as Decoded;
  const admin = kafka.admin();
  await admin.connect();
  const remaining = new Map<string, number>(); // topic:partition -> last offset wanted
  try {
    for (const kind of kinds) {
      const topic = topicFor(prefix, kind);
      for (const p of await admin.fetchTopicOffsets(topic)) {
        const high = Number(p.high);
        if (high > Number(p.low)) remaining.set(`${topic}:${p.partition}`, high - 1);
      }
    }
  } finally {
    await admin.disconnect();
  }
  if (remaining.size === 0) return out;
  const consumer = createConsumer(kafka, { groupId: `${prefix}-read-${randomBytes(4).toString('hex')}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: kinds.map((k) => topicFor(prefix, k)), fromBeginning: true });
    const kindOf = new Map(kinds.map((k) => [topicFor(prefix, k), k]));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`readTopics: timed out with ${remaining.size} partitions unread`)), timeoutMs);
      consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            const d = await codec.decode(message.value!);
            (out[kindOf.get(topic)!] as unknown[]).push({ ...d.value, key: message.key!.toString() });
            const k = `${topic}:${partition}`;
            const last = remaining.get(k);
            if (last !== undefined && Number(message.offset) >= last) remaining.delete(k);
            if (remaining.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

export async function deleteTopics(brokers: readonly string[], prefix: string, kinds: readonly RecordKind[]): Promise<void> {
  const kafka = createKafka({ brokers, clientId: `del-${prefix}`, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const topics = kinds.map((k) => topicFor(prefix, k)).filter((t) => existing.has(t));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}
