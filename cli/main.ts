/**
 * `tickflow <command>`: the one entry point of every part. Each command loads the config once,
 * builds what it needs and handles signals; the parts themselves live in gateways/, sink/, api/.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, resolveDir, REPO_ROOT, type Config } from '../core/config.ts';
import { isTickflowError, messageOf, TickflowError } from '../core/errors.ts';
import { createKafka, ensureTopics, probeKafka } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { setLogFormat } from '../core/log.ts';
import { maskUrl } from '../core/db.ts';
import { embeddedServerStatus, openDatabase, startEmbeddedOnDataDir } from '../infra/database.ts';
import { isAlive } from '../infra/process.ts';
import { ensureKafkaJars, kafkaStatus, startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { migrate } from '../migrations/runner.ts';
import { claimStart, describeBrokerOwner, describeHolder, embeddedDbHolder } from './running.ts';

const USAGE = `tickflow <command> [--config FILE]

commands:
  start                 run everything on this machine: local Kafka and the embedded TimescaleDB
                        (unless KAFKA_BROKERS / DATABASE_URL are set), migrations, then the parts
  infra up|down|status  the local Kafka broker and embedded TimescaleDB server, in the background
  migrate               apply the database migrations (a re-run applies nothing)
  gateway [--exchange a,b]  the exchange gateways (ccxt -> Kafka); --exchange runs only the named
                        entries, so several processes can split the exchanges
  backfill <exchange> <symbol> <timeframe> --from ISO [--to ISO]
                        candle history over REST into Kafka, on demand
  sink                  the Kafka -> TimescaleDB sink
  api                   the query API
  sim                   the offline exchange (Binance spot formats) for demos and tests

options:
  --config FILE         config file (default config/tickflow.yaml, or TICKFLOW_CONFIG)
  --json                logs as JSON lines (default: one short line per event), or LOG_FORMAT=json
  -h, --help            this text

environment: KAFKA_BROKERS, DATABASE_URL, SCHEMA_REGISTRY_URL, TICKFLOW_CONFIG, TICKFLOW_DB_DIR,
LOG_LEVEL (fatal, error, warn, info, debug, trace; default info), LOG_FORMAT (human, json)`;

const out = (s: string) => process.stdout.write(`${s}\n`);


async function infra(config: Config, action: string | undefined): Promise<number> {
  const kafkaDir = resolveDir(config.infra.kafkaDataDir);
  const dbDir = resolveDir(config.database.dataDir);
  switch (action) {
    case 'up': {
      if (config.kafka.brokers.length > 0) {
        out(`kafka: using KAFKA_BROKERS=${config.kafka.brokers.join(',')}; nothing started`);
      } else {
        const st = await kafkaStatus(kafkaDir);
        const owner = st.running ? describeBrokerOwner(config, st) : undefined;
        if (st.running) out(`kafka: already running (pid ${st.pid}) at ${st.brokers?.join(',')}${owner ? `, run by ${owner}: it stops with it` : ''}`);
        else {
          out('kafka: resolving the broker jars (first run downloads them through Maven)...');
          await ensureKafkaJars();
          mkdirSync(kafkaDir, { recursive: true });
          const b = await startKafka({ dataDir: kafkaDir, port: config.infra.kafkaPort, controllerPort: config.infra.kafkaControllerPort, detached: true });
          out(`kafka: started (pid ${b.pid}) at ${b.brokers.join(',')}, data in ${kafkaDir}`);
        }
      }
      if (config.database.url) {
        out('database: using DATABASE_URL; nothing started');
      } else {
        const rec = embeddedServerStatus(dbDir);
        const holder = rec ? undefined : embeddedDbHolder(dbDir);
        if (rec) out(`database: embedded TimescaleDB already running (pid ${rec.pid}) at ${rec.url}`);
        else if (holder) {
          throw new TickflowError('INFRA', `database: the embedded TimescaleDB in ${dbDir} is open in ${describeHolder(config, holder)}, which serves only itself; stop it first`);
        } else {
          mkdirSync(path.dirname(dbDir), { recursive: true });
          const logFd = openSync(`${dbDir}.log`, 'a');
          const args = [path.join(REPO_ROOT, 'bin', 'tickflow.js'), 'infra', 'serve-db', ...(config.source ? ['--config', config.source] : [])];
          const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd], env: process.env });
          child.unref();
          const deadline = Date.now() + 120_000;
          let started = embeddedServerStatus(dbDir);
          while (!started) {
            if (child.exitCode !== null || !isAlive(child.pid!)) throw new TickflowError('INFRA', `the embedded TimescaleDB server exited at start; see ${dbDir}.log`);
            if (Date.now() > deadline) throw new TickflowError('INFRA', `the embedded TimescaleDB server did not start within 120 s; see ${dbDir}.log`);
            await sleep(200);
            started = embeddedServerStatus(dbDir);
          }
          out(`database: embedded TimescaleDB started (pid ${started.pid}) at ${started.url} (one client process at a time), data in ${dbDir}`);
        }
      }
      return 0;
    }
    case 'serve-db': {
      const db = await startEmbeddedOnDataDir(config, { record: true });
      out(`embedded TimescaleDB serving ${db.url}`);
      await untilSignal();
      await db.stop();
      return 0;
    }
    case 'down': {
      const stopped = await stopKafkaAt(kafkaDir);
      out(stopped ? 'kafka: stopped' : 'kafka: was not running');
      const rec = embeddedServerStatus(dbDir);
      if (rec) {
        process.kill(rec.pid, 'SIGTERM');
        const deadline = Date.now() + 30_000;
        while (isAlive(rec.pid) && Date.now() < deadline) await sleep(100);
        if (isAlive(rec.pid)) process.kill(rec.pid, 'SIGKILL');
        out('database: embedded TimescaleDB stopped');
      } else out('database: embedded TimescaleDB was not running');
      return 0;
    }
    case 'status': {
      const st = await kafkaStatus(kafkaDir);
      const owner = st.running ? describeBrokerOwner(config, st) : undefined;
      out(
        config.kafka.brokers.length
          ? `kafka: KAFKA_BROKERS=${config.kafka.brokers.join(',')}`
          : st.running
            ? `kafka: running (pid ${st.pid}) at ${st.brokers?.join(',')}, ${owner ? `run by ${owner}` : 'from `tickflow infra up`'}`
            : 'kafka: not running',
      );
      const rec = embeddedServerStatus(dbDir);
      const holder = rec ? undefined : embeddedDbHolder(dbDir);
      out(
        config.database.url
          ? 'database: DATABASE_URL is set'
          : rec
            ? `database: embedded TimescaleDB running (pid ${rec.pid}) at ${rec.url}, from \`tickflow infra up\``
            : holder
              ? `database: embedded TimescaleDB in ${dbDir} open in ${describeHolder(config, holder)}, serving only that process`
              : 'database: embedded TimescaleDB not running (commands start it in-process)',
      );
      return 0;
    }
    default:
      throw new TickflowError('CONFIG_INVALID', `infra: expected up, down or status, got ${action ?? 'nothing'}`);
  }
}

async function runMigrate(config: Config): Promise<number> {
  const db = await openDatabase(config, { applicationName: 'tickflow-migrate' });
  try {
    const r = await migrate(db.pool);
    out(`migrations (${r.flavour}): ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'nothing to apply'}; ${r.skipped} already applied`);
  } finally {
    await db.close();
  }
  return 0;
}

/**
 * Everything on this machine in one process: the local Kafka broker and the embedded TimescaleDB
 * (unless KAFKA_BROKERS / DATABASE_URL are set), migrations, the offline exchange when the config
 * runs on it, then the gateways, the sink and the API sharing one database pool (the embedded
 * database serves one connection). Ctrl-C stops every part, newest first.
 */
async function start(config: Config): Promise<number> {
  const closers: Array<[string, () => Promise<void>]> = [];
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
    let brokers: string[];
    if (config.kafka.brokers.length > 0) {
      await probeKafka(config.kafka.brokers, config.kafka.connectionTimeoutMs * 2);
      brokers = [...config.kafka.brokers];
      out(`kafka:    ${brokers.join(',')} (KAFKA_BROKERS)`);
    } else {
      const kafkaDir = resolveDir(config.infra.kafkaDataDir);
      const st = await kafkaStatus(kafkaDir);
      const owner = st.running ? describeBrokerOwner(config, st) : undefined;
      if (owner) throw new TickflowError('INFRA', `the local Kafka broker in ${kafkaDir} (pid ${st.pid}) is run by ${owner}; stop it first, or give this one another infra.kafkaDataDir and infra.kafkaPort`);
      if (st.running && st.brokers) {
        brokers = st.brokers;
        out(`kafka:    local broker from \`tickflow infra up\` at ${brokers.join(',')}`);
      } else {
        out('kafka:    starting the local broker (the first run downloads its jars through Maven)...');
        await ensureKafkaJars();
        mkdirSync(kafkaDir, { recursive: true });
        const broker: KafkaBroker = await startKafka({ dataDir: kafkaDir, port: config.infra.kafkaPort, controllerPort: config.infra.kafkaControllerPort });
        closers.push(['kafka', () => broker.stop()]);
        brokers = broker.brokers;
        out(`kafka:    local broker at ${brokers.join(',')}, data in ${kafkaDir}`);
      }
    }
    const created = await ensureTopics(createKafka({ ...config.kafka, brokers }), config.kafka);
    if (created.length) out(`kafka:    created topics ${created.join(', ')}`);

    const db = await openDatabase(config, { applicationName: 'tickflow' });
    closers.push(['database', () => db.close()]);
    out(`database: ${db.kind === 'embedded' ? `embedded TimescaleDB at ${db.url}, data in ${resolveDir(config.database.dataDir)}` : `DATABASE_URL=${maskUrl(db.url)}`}`);
    const m = await migrate(db.pool);
    out(`database: migrations (${m.flavour}) ${m.applied.length ? `applied ${m.applied.length}` : 'up to date'}`);

    const simEntry = config.exchanges.find((e) => e.enabled && (e.name ?? e.id) === 'sim');
    if (config.sim.enabled === true || (config.sim.enabled === 'auto' && simEntry)) {
      const { buildSim } = await import('../sim/index.ts');
      // The sim continues from its last state (kept beside the database's data): prices, trade ids
      // and the candles it already served carry on across restarts.
      const stateFile = path.join(path.dirname(resolveDir(config.database.dataDir)), 'sim-state.json');
      const sim = buildSim({ port: config.sim.port, seed: config.sim.seed, tradesPerSecond: config.sim.tradesPerSecond, stateFile, ...(simEntry ? { symbols: [...simEntry.symbols] } : {}) });
      await sim.start();
      closers.push(['sim', () => sim.close()]);
      out(`sim:      offline exchange (Binance spot formats) at ${sim.url}, ${config.sim.tradesPerSecond} trades/s per symbol${sim.resumed ? `, continuing from ${stateFile.startsWith(`${process.cwd()}${path.sep}`) ? path.relative(process.cwd(), stateFile) : stateFile}` : ''}`);
    }

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

    if (config.exchanges.length > 0 || config.exchangeErrors.length > 0) {
      const { buildGateway } = await import('../gateways/index.ts');
      const gw = buildGateway(config, { brokers });
      closers.push(['gateway', () => gw.close()]);
      const report = await gw.start();
      for (const p of report.problems) process.stderr.write(`tickflow gateway: ${p.severity}: ${p.message}\n`);
      const running = report.workers.filter((w) => w.status === 'running' || w.status === 'starting');
      out(`gateway:  ${running.length ? running.map((w) => `${w.name} (${w.symbols.join(', ')})`).join('; ') : 'no exchange entry could start'}`);
    } else out('gateway:  no exchanges configured (add entries under exchanges:)');

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

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: false,
  });
  if (values.json) {
    setLogFormat('json');
    argv = argv.filter((a) => a !== '--json');
  }
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    out(USAGE);
    return command || values.help ? 0 : 2;
  }
  const config = loadConfig({ path: typeof values.config === 'string' ? values.config : undefined });
  switch (command) {
    case 'start':
      return start(config);
    case 'infra':
      return infra(config, rest[0]);
    case 'migrate':
      return runMigrate(config);
    case 'sim': {
      // The sim takes its own flags; --config is tickflow's. The config's `sim` section and the
      // symbols of its `sim` exchange entry are the defaults, as in `tickflow start`; flags win.
      const simArgs = argv.filter((a, i) => a !== 'sim' && a !== '--config' && argv[i - 1] !== '--config' && !a.startsWith('--config='));
      const simEntry = config.exchanges.find((e) => e.enabled && (e.name ?? e.id) === 'sim');
      return (await import('../sim/main.ts')).main(simArgs, {
        port: config.sim.port,
        seed: config.sim.seed,
        tradesPerSecond: config.sim.tradesPerSecond,
        ...(simEntry ? { symbols: [...simEntry.symbols] } : {}),
      });
    }
    case 'sink':
      return (await import('../sink/cli.ts')).sinkCommand(config, rest);
    case 'api': {
      const { runApi } = await import('../api/main.ts');
      return runApi(config, out);
    }
    case 'gateway':
      return (await import('../gateways/cli.ts')).gatewayCommand(config, argv);
    case 'backfill':
      return (await import('../gateways/cli.ts')).backfillCommand(config, argv);
    default:
      process.stderr.write(`tickflow: unknown command ${command} (commands: start, infra, migrate, gateway, backfill, sink, api, sim; tickflow --help)\n`);
      return 2;
  }
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (e) {
    // One clear line, no stack: expected failures (bad config, unreachable services) say what to
    // do; anything else (a port taken, a bug) its message, the stack with LOG_LEVEL=debug.
    const debug = /^(debug|trace)$/i.test(process.env.LOG_LEVEL ?? '');
    const stack = e instanceof Error && !isTickflowError(e) && debug ? `\n${e.stack ?? ''}` : '';
    process.stderr.write(`tickflow: ${messageOf(e)}${!isTickflowError(e) && !debug ? ' (LOG_LEVEL=debug shows where)' : ''}${stack}\n`);
    process.exitCode = 1;
  }
  // The command is done: a stray handle (a kafkajs retry timer, a socket a library keeps) must not
  // keep the process up with its job over.
  setTimeout(() => process.exit(), 3_000).unref();
}
