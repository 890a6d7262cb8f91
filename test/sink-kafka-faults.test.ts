/**
 * The sink against a Kafka broker of this file's own (so it can be stopped): topics created on a
 * broker that has just started, and what the sink's status and /healthz say while the broker is
 * down (promptly, and the truth), then that it writes again once the broker is back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../core/db.ts';
import { createKafka, ensureTopics, type Kafka } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { RECORD_KINDS, topicFor } from '../schemas/index.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { createServerDatabase } from './harness/db.ts';
import { codecFor, makeTrades, produce, sinkTestConfig, uniquePrefix, waitFor } from './harness/sink.ts';

describe('the sink and a Kafka broker of its own', () => {
  let dataDir: string;
  let broker: KafkaBroker | undefined;
  let kafka: Kafka;
  let sink: Sink | undefined;
  let pool: Pool | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'tickflow-sink-kafka-'));
    broker = await startKafka({ dataDir });
    kafka = createKafka({ brokers: broker.brokers, clientId: 'test', connectionTimeoutMs: 3_000, requestTimeoutMs: 30_000 });
  }, 120_000);
  afterAll(async () => {
    await sink?.close();
    await pool?.end();
    await broker?.stop().catch(() => undefined);
    await stopKafkaAt(dataDir).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('creates every topic on a broker that has just started, 20 times in a row', async () => {
    // Right after start: kafkajs's own wait for leaders answered UNKNOWN_TOPIC_OR_PARTITION for
    // topics the broker had created (19 of 20 here).
    const failures: string[] = [];
    const prefixes = Array.from({ length: 20 }, () => uniquePrefix('fresh'));
    for (const prefix of prefixes) {
      await ensureTopics(kafka, { topicPrefix: prefix, partitions: 3, replicationFactor: 1, retentionMs: 3_600_000 }).catch((e: unknown) => failures.push(String(e)));
    }
    expect(failures).toEqual([]);
    const admin = kafka.admin();
    await admin.connect();
    const wanted = prefixes.flatMap((p) => RECORD_KINDS.map((k) => topicFor(p, k)));
    const meta = await admin.fetchTopicMetadata({ topics: wanted });
    await admin.disconnect();
    expect(meta.topics.map((t) => [t.name, t.partitions.length]).sort()).toEqual(wanted.map((t) => [t, 3]).sort());
  }, 180_000);

  it('answers its status and /healthz promptly while the broker is down, saying so; writes again once it is back', async () => {
    const prefix = uniquePrefix('kdown');
    const name = `${prefix}-trades`;
    const url = await createServerDatabase('kdown');
    pool = createPool(url, { max: 2 });
    const config = sinkTestConfig(prefix, {
      kafka: { brokers: broker!.brokers },
      sink: { connectors: [{ name, table: 'trades', insertMode: 'insert', batchMaxRows: 500, lingerMs: 20 }] },
    });
    sink = buildSink(config, { pool, schedule: false });
    await sink.start();
    const get = async (p: string) => {
      const t0 = Date.now();
      // A hang shows as this abort, not as a test timeout.
      const r = await fetch(`${sink!.url}${p}`, { signal: AbortSignal.timeout(15_000) });
      return { code: r.status, ms: Date.now() - t0, body: (await r.json()) as Record<string, unknown> };
    };
    const count = async () => (await pool!.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;
    const codec = codecFor(prefix);
    const trades = makeTrades(2_000, { idPrefix: `${prefix}-` });
    await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(0, 1_000));
    await waitFor('the first rows', async () => (await count()) >= 1_000, 60_000);
    const healthy = await waitFor('a healthy sink', async () => {
      const h = await get('/healthz');
      return h.code === 200 ? h : undefined;
    });
    expect(healthy.body.status).toBe('ok');

    const port = Number(broker!.brokers[0]!.split(':')[1]);
    await broker!.stop();
    broker = undefined;
    await sleep(1_000);
    const status = await get(`/connectors/${name}/status`);
    const health = await get('/healthz');
    console.log('while the broker is down: status in', status.ms, 'ms, /healthz in', health.ms, 'ms');
    expect(status.code).toBe(200);
    // Bounded by the sink's check timeout (2.5 s), not by kafkajs's retries (it took 9 s or more).
    expect(status.ms).toBeLessThan(8_000);
    expect(status.body.state).toBe('RUNNING');
    expect(String(status.body.problem)).toMatch(/Kafka/);
    expect(status.body.rowsWritten).toBe(1_000);
    expect(health.code).toBe(503);
    expect(health.body.status).toBe('degraded');
    expect((health.body.checks as { kafka: { ok: boolean; error: string } }).kafka).toMatchObject({ ok: false, error: expect.stringMatching(/KAFKA_BROKERS/) });
    expect((health.body.checks as { database: { ok: boolean } }).database.ok).toBe(true);

    broker = await startKafka({ dataDir, port });
    await waitFor('a healthy sink again', async () => (await get('/healthz')).code === 200, 120_000, 500);
    await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(1_000));
    await waitFor('every record', async () => (await count()) >= 2_000, 120_000);
    // The status's lag is read from Kafka at most every few seconds: it must come down to 0 soon
    // after the rows are written (the last reading may predate the final batch).
    let after: Awaited<ReturnType<typeof get>> | undefined;
    await waitFor('the status to show the sink caught up', async () => {
      after = await get(`/connectors/${name}/status`);
      return after.body.lag === 0;
    }, 20_000, 500).catch(() => undefined);
    expect(after?.body).toMatchObject({ state: 'RUNNING', problem: null, lag: 0 });
  }, 300_000);
});
