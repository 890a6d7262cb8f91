/**
 * Which Kafka brokers a command uses, decided in one place: the configured ones (KAFKA_BROKERS /
 * kafka.brokers, probed so a wrong address fails fast), else the local broker kept in
 * infra.kafkaDataDir (infra/kafka.ts), which `tickflow infra up` runs in the background and
 * `tickflow start` runs for itself when none is up.
 */
import { mkdirSync } from 'node:fs';
import { resolveDir, type SharedConfig } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { probeKafka } from '../core/kafka.ts';
import { ensureKafkaJars, kafkaStatus, startKafka, type KafkaBroker, type KafkaStatus } from './kafka.ts';

type KafkaSections = Pick<SharedConfig, 'kafka' | 'infra'>;

export type FoundBrokers =
  | { readonly source: 'configured'; readonly brokers: string[] }
  /** No broker configured: the local broker's folder and whether (and where) it runs. */
  | { readonly source: 'local'; readonly dataDir: string; readonly status: KafkaStatus };

/**
 * The configured brokers, else the local broker's status. `probe` (default true): configured
 * brokers must answer within twice kafka.connectionTimeoutMs (KAFKA_UNREACHABLE otherwise).
 */
export async function findBrokers(config: KafkaSections, opts: { probe?: boolean } = {}): Promise<FoundBrokers> {
  if (config.kafka.brokers.length > 0) {
    if (opts.probe ?? true) await probeKafka(config.kafka.brokers, config.kafka.connectionTimeoutMs * 2);
    return { source: 'configured', brokers: [...config.kafka.brokers] };
  }
  const dataDir = resolveDir(config.infra.kafkaDataDir);
  return { source: 'local', dataDir, status: await kafkaStatus(dataDir) };
}

/** The brokers to use: configured ones (probed), else the local broker from `infra up`. */
export async function resolveBrokers(config: KafkaSections): Promise<string[]> {
  const found = await findBrokers(config);
  if (found.source === 'configured') return found.brokers;
  if (found.status.running && found.status.brokers) return found.status.brokers;
  throw new TickflowError('KAFKA_UNREACHABLE', 'no Kafka: set KAFKA_BROKERS, or start the local broker with `tickflow infra up`');
}

/**
 * Starts the local broker in infra.kafkaDataDir on infra.kafkaPort / kafkaControllerPort,
 * resolving its jars first (the first run downloads them through Maven). `detached`: it outlives
 * this process (`tickflow infra up`); otherwise it stops with it.
 */
export async function startLocalKafka(config: Pick<SharedConfig, 'infra'>, opts: { detached?: boolean } = {}): Promise<KafkaBroker> {
  const dataDir = resolveDir(config.infra.kafkaDataDir);
  await ensureKafkaJars();
  mkdirSync(dataDir, { recursive: true });
  return startKafka({ dataDir, port: config.infra.kafkaPort, controllerPort: config.infra.kafkaControllerPort, ...(opts.detached ? { detached: true } : {}) });
}
