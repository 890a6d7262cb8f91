/**
 * `tickflow sink`: loads nothing itself (cli/main.ts passes the config), finds the brokers,
 * builds the sink, runs until SIGINT/SIGTERM, closes it.
 */
import type { Config } from '../core/config.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { resolveBrokers } from '../infra/kafka.ts';
import { buildSink } from './index.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);

export async function sinkCommand(config: Config, _args: readonly string[] = []): Promise<number> {
  const brokers = await resolveBrokers(config);
  const sink = buildSink(config, { brokers });
  await sink.start();
  out(`sink: ${sink.connectors.names().length} connector(s) (${sink.connectors.names().join(', ')}); REST API at ${sink.url ?? '(off)'}`);
  collectProcessMetrics();
  await untilSignal();
  out('sink: stopping...');
  await sink.close();
  return 0;
}
