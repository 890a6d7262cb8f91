/**
 * `tickflow start`: everything on this machine in one process, step by step (brokers, database,
 * sim, sink, API, gateways, broadcast), each step registering how to stop what it started.
 */
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import { resolveDir } from '../core/config.ts';
import { maskUrl } from '../core/db.ts';
import { messageOf, TickflowError } from '../core/errors.ts';
import { createKafka, ensureTopics } from '../core/kafka.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { findBrokers, startLocalKafka } from '../infra/brokers.ts';
import { openDatabase, type OpenDatabase } from '../infra/database.ts';
import { migrate } from '../migrations/runner.ts';
import { claimStart, describeBrokerOwner } from './running.ts';

/** What the steps of a start share: the config, where they print, and what to stop (in order). */
interface Run {
  readonly config: Config;
  readonly out: (line: string) => void;
  readonly closers: Array<[string, () => Promise<void>]>;
}

/**
 * Everything on this machine in one process: the local Kafka broker and the embedded TimescaleDB
 * (unless KAFKA_BROKERS / DATABASE_URL are set), migrations, the offline exchange when the config
 * runs on it, then the sink, the API, the gateways and the broadcasters, sharing one database pool
 * (the embedded database serves one connection). Ctrl-C stops every part, newest first.
 */
export async function start(config: Config, out: (line: string) => void): Promise<number> {
  const closers: Run['closers'] = [];
  const run: Run = { config, out, closers };
  const stopAll = async () => {
    for (const [name, close] of closers.reverse()) {
      await close().catch((e) => process.stderr.write(`tickflow: stopping ${name}: ${messageOf(e)}\n`));
    }
  };
  // A second start on the same folder stops here, naming the first (not at whichever part trips).
  const claim = claimStart(config);
  closers.push(['start record', async () => claim.release()]);
  const stopping = untilSignal();
  collectProcessMetrics();
  try {
    const brokers = await startBrokers(run);
    const created = await ensureTopics(createKafka({ ...config.kafka, brokers }), config.kafka);
    if (created.length) out(`kafka:    created topics ${created.join(', ')}`);
    const db = await startDatabase(run);
    await startSim(run);

    const { buildSink } = await import('../sink/index.ts');
    const sink = buildSink(config, { pool: db.pool, brokers });
    closers.push(['sink', () => sink.close()]);
    // A signal while the sink starts (its connectors joining their groups) stops at once.
    const sinkStarted = sink.start().then(() => undefined);
    const early = await Promise.race([sinkStarted, stopping]);
    if (early) {
      out(`${early}: stopping...`);
      await stopAll();
      await sinkStarted.catch(() => undefined);
      out('stopped');
      return 0;
    }
    out(`sink:     consuming ${config.kafka.topicPrefix}.* into the database${sink.url ? `; connectors at ${sink.url}/connectors` : ''}`);

    const { buildApi } = await import('../api/index.ts');
    const api = buildApi(config, { pool: db.pool, brokers });
    const apiUrl = await api.start();
    closers.push(['api', () => api.close()]);
    claim.update({ chart: `${apiUrl}/` });

    // The broadcasters start while the gateways do (neither waits for the other). They share the
    // process's pool (the embedded database serves one connection); their /metrics are the API's.
    const { buildBroadcast } = await import('../broadcast/index.ts');
    const broadcast = buildBroadcast(config, { pool: db.pool, brokers, listen: false });
    closers.push(['broadcast', () => broadcast.stop()]);
    const broadcastStarted = broadcast.start();
    broadcastStarted.catch(() => undefined);
    await startGateways(run, brokers);
    await broadcastStarted;
    out(`broadcast: registrations from the database, delivered by consumer group ${config.broadcast.groupId}`);

    out('');
    out(`chart:    ${apiUrl}/`);
    out(`api docs: ${apiUrl}/docs`);
    out(`metrics:  ${apiUrl}/metrics`);
    out('press Ctrl-C to stop');
    const sig = await stopping;
    out(`${sig}: stopping...`);
    await stopAll();
    out('stopped');
    return 0;
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/**
 * The brokers `start` uses: the configured ones (probed), the local broker `tickflow infra up`
 * runs, or a local broker started here (stopped with this process). A local broker another
 * process runs for itself is refused, naming that process.
 */
async function startBrokers({ config, out, closers }: Run): Promise<string[]> {
  const found = await findBrokers(config);
  if (found.source === 'configured') {
    out(`kafka:    ${found.brokers.join(',')} (KAFKA_BROKERS)`);
    return found.brokers;
  }
  const { dataDir, status: st } = found;
  const owner = st.running ? describeBrokerOwner(config, st) : undefined;
  if (owner) throw new TickflowError('INFRA', `the local Kafka broker in ${dataDir} (pid ${st.pid}) is run by ${owner}; stop it first, or give this one another infra.kafkaDataDir and infra.kafkaPort`);
  if (st.running && st.brokers) {
    out(`kafka:    local broker from \`tickflow infra up\` at ${st.brokers.join(',')}`);
    return st.brokers;
  }
  out('kafka:    starting the local broker (the first run downloads its jars through Maven)...');
  const broker = await startLocalKafka(config);
  closers.push(['kafka', () => broker.stop()]);
  out(`kafka:    local broker at ${broker.brokers.join(',')}, data in ${dataDir}`);
  return broker.brokers;
}

/** The database (configured, `infra up`'s server, or embedded in this process), migrated. */
async function startDatabase({ config, out, closers }: Run): Promise<OpenDatabase> {
  const db = await openDatabase(config, { applicationName: 'tickflow' });
  closers.push(['database', () => db.close()]);
  out(`database: ${db.kind === 'embedded' ? `embedded TimescaleDB at ${db.url}, data in ${resolveDir(config.database.dataDir)}` : `DATABASE_URL=${maskUrl(db.url)}`}`);
  const m = await migrate(db.pool);
  out(`database: migrations (${m.flavour}) ${m.applied.length ? `applied ${m.applied.length}` : 'up to date'}`);
  return db;
}

/** The enabled exchange entry named `sim`, whose symbols the offline exchange serves. */
export function simEntryOf(config: Config) {
  return config.exchanges.find((e) => e.enabled && (e.name ?? e.id) === 'sim');
}

/** The offline exchange, when `sim.enabled` says so (auto: when an enabled entry is named `sim`). */
async function startSim({ config, out, closers }: Run): Promise<void> {
  const simEntry = simEntryOf(config);
  if (!(config.sim.enabled === true || (config.sim.enabled === 'auto' && simEntry))) return;
  const { buildSim } = await import('../sim/index.ts');
  // The sim continues from its last state (kept beside the database's data): prices, trade ids
  // and the candles it already served carry on across restarts.
  const stateFile = path.join(path.dirname(resolveDir(config.database.dataDir)), 'sim-state.json');
  const sim = buildSim({ port: config.sim.port, seed: config.sim.seed, tradesPerSecond: config.sim.tradesPerSecond, stateFile, ...(simEntry && simEntry.symbols !== 'all' && !simEntry.symbols.some((s) => /[*?]/.test(s)) ? { symbols: [...simEntry.symbols] } : {}) });
  await sim.start();
  closers.push(['sim', () => sim.close()]);
  out(`sim:      offline exchange (Binance spot formats) at ${sim.url}, ${config.sim.tradesPerSecond} trades/s per symbol${sim.resumed ? `, continuing from ${stateFile.startsWith(`${process.cwd()}${path.sep}`) ? path.relative(process.cwd(), stateFile) : stateFile}` : ''}`);
}

async function startGateways({ config, out, closers }: Run, brokers: string[]): Promise<void> {
  if (config.exchanges.length === 0 && config.exchangeErrors.length === 0) {
    out('gateway:  no exchanges configured (add entries under exchanges:)');
    return;
  }
  const { buildGateway } = await import('../gateways/index.ts');
  const gw = buildGateway(config, { brokers });
  closers.push(['gateway', () => gw.close()]);
  const report = await gw.start();
  for (const p of report.problems) process.stderr.write(`tickflow gateway: ${p.severity}: ${p.message}\n`);
  const running = report.workers.filter((w) => w.status === 'running' || w.status === 'starting');
  out(`gateway:  ${running.length ? running.map((w) => `${w.name} (${w.symbols.join(', ')})`).join('; ') : 'no exchange entry could start'}`);
}
