import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureKafkaJars, startKafka } from '../infra/kafka.ts';

/**
 * The brokers a benchmark uses: KAFKA_BROKERS when set, else a throwaway local broker (started
 * here, stopped by `stop`), so `npm run bench:*` works on a fresh machine with nothing running.
 */
export async function benchBrokers(): Promise<{ brokers: string[]; stop: () => Promise<void> }> {
  const given = process.env.KAFKA_BROKERS?.split(',').map((s) => s.trim()).filter(Boolean) ?? [];
  if (given.length > 0) return { brokers: given, stop: async () => undefined };
  process.stderr.write('starting a throwaway Kafka broker (KAFKA_BROKERS is not set)...\n');
  await ensureKafkaJars();
  const dir = await mkdtemp(path.join(tmpdir(), 'tickflow-bench-kafka-'));
  const broker = await startKafka({ dataDir: dir, port: 0 });
  return {
    brokers: broker.brokers,
    stop: async () => {
      await broker.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
