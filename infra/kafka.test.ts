import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTickflowError } from '../core/errors.ts';
import { probeKafka } from '../core/kafka.ts';
import { freePort, isAlive } from './process.ts';
import { kafkaStatus, startKafka, stopKafkaAt, type KafkaBroker } from './kafka.ts';


/** The Kafka version infra/kafka/pom.xml resolves. */
const POM_VERSION = /<kafka\.version>([^<]+)</.exec(readFileSync(new URL('./kafka/pom.xml', import.meta.url), 'utf8'))![1]!;

describe(`infra/kafka: a real Kafka ${POM_VERSION} broker from its Maven jars`, () => {
  it('is on the 4.x line', () => {
    expect(POM_VERSION).toMatch(/^4\.\d+\.\d+$/);
  });

  let dataDir: string;
  const started: KafkaBroker[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'tickflow-kafka-test-'));
  });

  afterAll(async () => {
    for (const b of started) await b.stop().catch(() => undefined);
    await stopKafkaAt(dataDir).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('starts a broker, creates a topic, produces and consumes a message, stops', async () => {
    const broker = await startKafka({ dataDir });
    started.push(broker);
    expect(broker.brokers).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
    expect(await kafkaStatus(dataDir)).toEqual({ running: true, pid: broker.pid, brokers: broker.brokers, detached: false });
    await probeKafka(broker.brokers);
    // The JVM runs the pom's version, and logs through the log4j2 configuration it was given:
    // INFO lines in kafka.log, not log4j2's complaint of a missing configuration.
    const argv = readFileSync(`/proc/${broker.pid}/cmdline`, 'utf8').split('\0');
    expect(argv[argv.indexOf('-cp') + 1]!.split(':')).toContainEqual(expect.stringMatching(new RegExp(`/kafka_2\\.13-${POM_VERSION.replace(/\./g, '\\.')}\\.jar$`)));
    const brokerLog = await readFile(join(dataDir, 'kafka.log'), 'utf8');
    expect(brokerLog).toMatch(/\] INFO \[KafkaRaftServer nodeId=1\] Kafka Server started/);
    expect(brokerLog).not.toMatch(/No configuration found|Reconfiguration failed/);

    const kafka = new Kafka({ clientId: 'kafka-test', brokers: broker.brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    expect(await admin.createTopics({ topics: [{ topic: 'test.trades', numPartitions: 2 }], waitForLeaders: true })).toBe(true);
    expect(await admin.listTopics()).toContain('test.trades');
    await admin.disconnect();

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic: 'test.trades', acks: -1, messages: [{ key: 'binance:BTC/USDT', value: 'hello' }] });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: 'kafka-test' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'test.trades', fromBeginning: true });
    const got = await new Promise<{ key: string; value: string }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no message within 30 s')), 30_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          clearTimeout(t);
          resolve({ key: String(message.key), value: String(message.value) });
        },
      });
    });
    await consumer.disconnect();
    expect(got).toEqual({ key: 'binance:BTC/USDT', value: 'hello' });

    // The group's offsets went to the internal topic, which a single broker can only hold with
    // replication factor 1.
    const check = kafka.admin();
    await check.connect();
    const meta = await check.fetchTopicMetadata({ topics: ['__consumer_offsets'] });
    await check.disconnect();
    expect(meta.topics[0]!.partitions.length).toBeGreaterThan(0);
    expect(new Set(meta.topics[0]!.partitions.map((p) => p.replicas.length))).toEqual(new Set([1]));

    await broker.stop();
    expect(isAlive(broker.pid)).toBe(false);
    expect((await kafkaStatus(dataDir)).running).toBe(false);
  }, 180_000);

  it('restarts detached on the same data directory, keeps the topic, and is stopped by stopKafkaAt', async () => {
    const broker = await startKafka({ dataDir, detached: true });
    const status = await kafkaStatus(dataDir);
    expect(status).toEqual({ running: true, pid: broker.pid, brokers: broker.brokers, detached: true });
    await expect(startKafka({ dataDir })).rejects.toThrow(/already running/);

    const admin = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    expect(await admin.listTopics()).toContain('test.trades');
    await admin.disconnect();

    expect(await stopKafkaAt(dataDir)).toBe(true);
    expect(isAlive(broker.pid)).toBe(false);
    expect(await kafkaStatus(dataDir)).toEqual({ running: false });
    expect(await stopKafkaAt(dataDir)).toBe(false);
  }, 120_000);

  it('probeKafka on an unused port rejects within its timeout, naming KAFKA_BROKERS', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await probeKafka([`127.0.0.1:${port}`], 3_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - t0).toBeLessThan(4_000);
    expect(isTickflowError(err, 'KAFKA_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^KAFKA_BROKERS=127\\.0\\.0\\.1:${port} is unreachable: `));
  }, 20_000);
});
