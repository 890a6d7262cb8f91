/**
 * `tickflow <command>`: the one entry point of every part. Each command loads the config once,
 * builds what it needs and handles signals; the parts themselves live in gateways/, sink/, api/.
 */
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config/schema.ts';
import { isTickflowError, messageOf } from '../core/errors.ts';
import { setLogFormat } from '../core/log.ts';

const USAGE = `tickflow <command> [--config FILE]

commands:
  start                 run everything on this machine: local Kafka and the embedded TimescaleDB
                        (unless KAFKA_BROKERS / DATABASE_URL are set), migrations, then the parts
  infra up|down|status  the local Kafka broker and embedded TimescaleDB server, in the background
  migrate               apply the database migrations (a re-run applies nothing)
  gateway [--exchange a,b] [--shard i/n | --shard-group NAME]
                        the exchange gateways (ccxt -> Kafka); --exchange runs only the named
                        entries, so several processes can split the exchanges; --shard i/n (0-based)
                        serves a fixed share of each entry's instruments, --shard-group NAME shares
                        them with the other processes of that group through Kafka (moved on join/death)
  backfill <exchange> <symbol> <timeframe> --from ISO [--to ISO]
                        candle history over REST into Kafka, on demand
  sink                  the Kafka -> TimescaleDB sink
  api                   the query API
  broadcast             the broadcasters: registered filters over the records, pushed to HTTP
                        endpoints and Kafka topics (see README, "Broadcasters")
  sim                   the offline exchange (Binance spot formats) for demos and tests

options:
  --config FILE         config file (default config/tickflow.yaml, or TICKFLOW_CONFIG)
  --json                logs as JSON lines (default: one short line per event), or LOG_FORMAT=json
  -h, --help            this text

environment: KAFKA_BROKERS, DATABASE_URL, SCHEMA_REGISTRY_URL, TICKFLOW_CONFIG, TICKFLOW_DB_DIR,
LOG_LEVEL (fatal, error, warn, info, debug, trace; default info), LOG_FORMAT (human, json)`;

const out = (s: string) => process.stdout.write(`${s}\n`);

async function runMigrate(config: Config): Promise<number> {
  const { openDatabase } = await import('../infra/database.ts');
  const { migrate } = await import('../migrations/runner.ts');
  const db = await openDatabase(config, { applicationName: 'tickflow-migrate' });
  try {
    const r = await migrate(db.pool);
    out(`migrations (${r.flavour}): ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'nothing to apply'}; ${r.skipped} already applied`);
  } finally {
    await db.close();
  }
  return 0;
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
  // Each command imports only what it runs: a gateway or sink process does not carry the embedded
  // database's code (~40 MB of RSS) or the other parts'.
  switch (command) {
    case 'start':
      return (await import('./start.ts')).start(config, out);
    case 'infra':
      return (await import('./infra.ts')).infraCommand(config, rest[0], out);
    case 'migrate':
      return runMigrate(config);
    case 'sim': {
      // The sim takes its own flags; --config is tickflow's. The config's `sim` section and the
      // symbols of its `sim` exchange entry are the defaults, as in `tickflow start`; flags win.
      const simArgs = argv.filter((a, i) => a !== 'sim' && a !== '--config' && argv[i - 1] !== '--config' && !a.startsWith('--config='));
      const simEntry = (await import('./start.ts')).simEntryOf(config);
      return (await import('../sim/main.ts')).main(simArgs, {
        port: config.sim.port,
        seed: config.sim.seed,
        tradesPerSecond: config.sim.tradesPerSecond,
        ...(simEntry && simEntry.symbols !== 'all' && !simEntry.symbols.some((s) => /[*?]/.test(s)) ? { symbols: [...simEntry.symbols] } : {}),
      });
    }
    case 'sink':
      return (await import('../sink/cli.ts')).sinkCommand(config, rest);
    case 'api': {
      const { runApi } = await import('../api/main.ts');
      return runApi(config, out);
    }
    case 'broadcast':
      return (await import('../broadcast/cli.ts')).broadcastCommand(config);
    case 'gateway':
      return (await import('../gateways/cli.ts')).gatewayCommand(config, argv);
    case 'backfill':
      return (await import('../gateways/cli.ts')).backfillCommand(config, argv);
    default:
      process.stderr.write(`tickflow: unknown command ${command} (commands: start, infra, migrate, gateway, backfill, sink, api, broadcast, sim; tickflow --help)\n`);
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
