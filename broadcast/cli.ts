/**
 * `tickflow broadcast`: builds the broadcast runtime (which finds the brokers as it starts), runs
 * it until SIGINT/SIGTERM, stops it.
 */
import { untilSignal } from '../core/lifecycle.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { resolveBrokers } from '../infra/brokers.ts';
import { buildBroadcast, type ConfigForBroadcast } from './index.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);

export async function broadcastCommand(config: ConfigForBroadcast): Promise<number> {
  const part = buildBroadcast(config, { resolveBrokers: () => resolveBrokers(config) });
  collectProcessMetrics();
  const signal = untilSignal();
  const started = part.start().then(() => 'started' as const);
  if ((await Promise.race([started, signal])) !== 'started') {
    out('broadcast: stopping before it started...');
    await part.stop();
    await started.catch(() => undefined);
    return 0;
  }
  out(`broadcast: running (consumer group ${config.broadcast.groupId}); /healthz and /metrics at ${part.url ?? '(off)'}`);
  await signal;
  out('broadcast: stopping...');
  await part.stop();
  return 0;
}
