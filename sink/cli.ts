/**
 * `tickflow sink`: loads nothing itself (cli/main.ts passes the config), finds the brokers,
 * builds the sink, runs until SIGINT/SIGTERM, closes it.
 */
import type { Config } from '../core/config.ts';
import { resolveDir } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { probeKafka } from '../core/kafka.ts';
import { kafkaStatus } from '../infra/kafka.ts';
import { buildSink } from './index.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);

async function brokersOf(config: Config): Promise<string[]> {
  if (config.kafka.brokers.length > 0) {
    await probeKafka(config.kafka.brokers, config.kafka.connectionTimeoutMs * 2);
    return [...config.kafka.brokers];
  }
  const status = await kafkaStatus(resolveDir(config.infra.kafkaDataDir));
  if (status.running && status.brokers) return status.brokers;
  throw new TickflowError('KAFKA_UNREACHABLE', 'no Kafka: set KAFKA_BROKERS, or start the local broker with `tickflow infra up`');
}

export async function sinkCommand(config: Config, _args: readonly string[] = []): Promise<number> {
  const brokers = await brokersOf(config);
  const sink = buildSink(config, { brokers });
  await sink.start();
  out(`sink: ${sink.connectors.names().length} connector(s) (${sink.connectors.names().join(', ')}); REST API at ${sink.url ?? '(off)'}`);
  await new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  out('sink: stopping...');
  await sink.close();
  return 0;
}
