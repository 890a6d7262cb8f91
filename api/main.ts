/**
 * `tickflow api`: builds the API from the config, listens, and closes it on SIGINT/SIGTERM.
 */
import type { ConfigForApi } from './config.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { buildApi } from './index.ts';

export async function runApi(config: ConfigForApi, out: (line: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<number> {
  collectProcessMetrics();
  const api = buildApi(config);
  const url = await api.start();
  out(`api: listening on ${url} (chart at ${url}/, OpenAPI at ${url}/docs); live stream ${api.app.hub ? `from Kafka (group ${api.app.hub.groupId})` : 'disabled (no Kafka)'}`);
  out('press Ctrl-C to stop');
  const signal = await untilSignal();
  out(`api: ${signal}, stopping...`);
  await api.close();
  return 0;
}
