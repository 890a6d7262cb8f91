/**
 * Brings up, once per test run, the real services the tests talk to, and takes them down after:
 * - Kafka: KAFKA_BROKERS when set; else the real Apache Kafka broker from Maven Central jars
 *   (infra/kafka.ts), or a testcontainers Kafka where TICKFLOW_TESTCONTAINERS=1 and a Docker
 *   engine is reachable.
 * - PostgreSQL server (several connections, outlives killed clients): TEST_POSTGRES_URL when set;
 *   else Debian's PostgreSQL started on a free port with a throwaway data directory.
 * The embedded TimescaleDB is started per test file, in the test's own process (it serves one
 * connection; see test/harness/db.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startKafka } from '../../infra/kafka.ts';
import { startPostgresServer } from '../../infra/postgres-server.ts';
import { startWithTestcontainers } from './testcontainers.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string[];
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanups: Array<() => Promise<void>> = [];
  const teardown = async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => console.error('teardown:', e));
  };
  try {
    if (process.env.TICKFLOW_TESTCONTAINERS === '1') {
      const tc = await startWithTestcontainers();
      cleanups.push(tc.stop);
      project.provide('kafkaBrokers', tc.brokers);
      project.provide('postgresUrl', tc.postgresUrl);
      return teardown;
    }
    const [brokers, postgresUrl] = await Promise.all([
      (async () => {
        if (process.env.KAFKA_BROKERS) return process.env.KAFKA_BROKERS.split(',').map((s) => s.trim());
        const dataDir = await mkdtemp(path.join(tmpdir(), 'tickflow-test-kafka-'));
        const broker = await startKafka({ dataDir });
        cleanups.push(async () => {
          await broker.stop();
          await rm(dataDir, { recursive: true, force: true });
        });
        return broker.brokers;
      })(),
      (async () => {
        if (process.env.TEST_POSTGRES_URL) return process.env.TEST_POSTGRES_URL;
        const server = await startPostgresServer();
        cleanups.push(() => server.stop());
        return server.url;
      })(),
    ]);
    project.provide('kafkaBrokers', brokers);
    project.provide('postgresUrl', postgresUrl);
    return teardown;
  } catch (e) {
    await teardown();
    throw e;
  }
}
