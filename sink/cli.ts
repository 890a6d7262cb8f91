/**
 * `tickflow sink`: loads nothing itself (cli/main.ts passes the config), builds the sink (which
 * finds the brokers as it starts), runs until SIGINT/SIGTERM, closes it.
 */
import type { ConfigForSink } from './config.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { resolveBrokers } from '../infra/brokers.ts';
import { buildSink } from './index.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);

export async function sinkCommand(config: ConfigForSink, _args: readonly string[] = []): Promise<number> {
  // The brokers are found inside start(), once the REST API and /healthz answer ('starting').
  const sink = buildSink(config, { resolveBrokers: () => resolveBrokers(config) });
  collectProcessMetrics();
  // A signal while the sink still waits for its database or Kafka stops it cleanly too.
  const signal = untilSignal();
  const started = sink.start().then(() => 'started' as const);
  if ((await Promise.race([started, signal])) !== 'started') {
    out('sink: stopping before it started...');
    await sink.close();
    await started.catch(() => undefined);
    return 0;
  }
  out(`sink: ${sink.connectors.names().length} connector(s) (${sink.connectors.names().join(', ')}); REST API at ${sink.url ?? '(off)'}`);
  await signal;
  out('sink: stopping...');
  await sink.close();
  return 0;
}
