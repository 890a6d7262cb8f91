/**
 * Runs the sim exchange on its own: `tsx sim/main.ts --port 9000 --rate 20 --symbols BTC/USDT,ETH/USDT`.
 * Prints one JSON line on stdout, `{"url", "wsUrl", "ccxtOptions", "control", "dialects"}`, once it
 * listens (logs go to stderr), and closes cleanly on SIGINT/SIGTERM. `tickflow sim` builds the
 * same thing from `parseSimArgs` + `buildSim`. Faults are applied over HTTP (control.ts).
 */
import { pathToFileURL } from 'node:url';
import { TickflowError } from '../core/errors.ts';
import { CONTROL_PREFIX, simInfo } from './control.ts';
import { DIALECTS } from './dialects/types.ts';
import { buildSim, type SimOptions } from './index.ts';

/** The standalone sim's port: config/tickflow.yaml's `sim` exchange entry points here. */
export const SIM_DEFAULT_PORT = 9500;

export const SIM_USAGE = `usage: sim [options]
  --host <addr>            interface to bind (default 127.0.0.1)
  --port <n>               port, 0 = any free one (default: the config's sim.port, 9500)
  --seed <n>               seed of prices, trades, history and book (default: sim.seed, 1)
  --rate <n>               trades per second per symbol (default: sim.tradesPerSecond, 5)
  --total-rate <n>         trades per second over all symbols (wins over --rate)
  --instruments <n>        serve n markets: --symbols first, then generated ABA/USDT, BBA/USDT, ...
  --skew <s>               Zipf exponent of the per-symbol rates by rank (0 = even, 1 = real venues)
  --max-buffered-bytes <n> drop a websocket whose unsent backlog exceeds this (default 64 MiB)
  --venue-message-rate     enforce Binance's 5 incoming messages/s per websocket (closed 1008)
  --no-venue-limits        lift the per-connection stream limits (Binance 1,024 streams)
  --symbols <a,b>          unified spot symbols (default: the config's \`sim\` entry's, else
                           BTC/USDT,ETH/USDT)
  --history-days <n>       days of synthetic 1m klines before the start (default 7)
  --book-depth <n>         order book levels per side (default 100)
  --speed <x>              virtual clock speed, 60 = a minute per second (default 1)
  --start-time <ms|iso>    virtual start time (default now)
  --tick-ms <n>            generation/send tick in real ms (default 10)
  --max-stored-trades <n>  trades kept per symbol for REST refills (default 2000000)
  --dialects <a,b>         exchange formats served, each under its own path prefix
                           (default all: ${DIALECTS.join(',')}; binance at the root)

Faults over HTTP, on the same port (any process; "dialect" optional):
  curl -XPOST <url>/__sim/faults -d '{"kind":"drop"}'
  curl -XPOST <url>/__sim/faults -d '{"kind":"pause","channel":"trades","ms":5000}'
  curl -XPOST <url>/__sim/faults -d '{"kind":"refuse","target":"ws","status":403,"ms":10000}'
  curl -XPOST <url>/__sim/faults -d '{"kind":"rateLimit","requestsPerSecond":2,"ms":10000}'
  kinds: drop, pause, refuse (target rest|ws), rateLimit, tradeRate, clear.
  curl -XPOST <url>/__sim/markets -d '{"add":["NEW/USDT"],"remove":["ETH/USDT"]}'
  GET <url>/__sim/info, /__sim/stats, /__sim/markets, /__sim/emitted/counts,
      /__sim/emitted/trades?symbol=BTC/USDT&fromId=N, /__sim/book?symbol=...`;

const NUMERIC: Record<string, keyof SimOptions> = {
  '--port': 'port',
  '--seed': 'seed',
  '--rate': 'tradesPerSecond',
  '--history-days': 'historyDays',
  '--book-depth': 'bookDepth',
  '--speed': 'speed',
  '--tick-ms': 'tickIntervalMs',
  '--max-stored-trades': 'maxStoredTrades',
  '--total-rate': 'totalTradesPerSecond',
  '--instruments': 'instruments',
  '--skew': 'rateSkew',
  '--max-buffered-bytes': 'maxBufferedBytes',
};

/** Parses CLI arguments (without node and script) into SimOptions; `help` when -h/--help was given. */
export function parseSimArgs(argv: readonly string[]): SimOptions & { help?: boolean } {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      out.help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const takeValue = (): string => {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw bad(flag, 'needs a value');
      return v;
    };
    if (flag in NUMERIC) {
      const raw = takeValue();
      const n = Number(raw);
      if (!Number.isFinite(n)) throw bad(flag, `expects a number, got "${raw}"`);
      out[NUMERIC[flag]!] = n;
    } else if (flag === '--venue-message-rate') {
      out.venueMessageRate = true;
    } else if (flag === '--no-venue-limits') {
      out.venueLimits = false;
    } else if (flag === '--host') {
      out.host = takeValue();
    } else if (flag === '--symbols') {
      out.symbols = takeValue()
        .split(',')
        .map((s) => s.trim().toUpperCase())
        .filter((s) => s.length > 0);
    } else if (flag === '--dialects') {
      const list = takeValue()
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s.length > 0);
      for (const d of list) if (!(DIALECTS as readonly string[]).includes(d)) throw bad(flag, `names an unknown dialect "${d}" (known: ${DIALECTS.join(', ')})`);
      out.dialects = list;
    } else if (flag === '--start-time') {
      const raw = takeValue();
      const t = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
      if (!Number.isFinite(t)) throw bad(flag, `expects epoch ms or an ISO time, got "${raw}"`);
      out.startTime = t;
    } else {
      throw bad(flag, 'is not an option (see --help)');
    }
  }
  return out as SimOptions & { help?: boolean };
}

function bad(flag: string, why: string): TickflowError {
  return new TickflowError('CONFIG_INVALID', `sim: ${flag} ${why}`);
}

/**
 * `tickflow sim [options]`: runs until SIGINT/SIGTERM; resolves to the exit code. `defaults` (the
 * config's `sim` section, from `tickflow sim`) apply where no flag says otherwise.
 */
export async function main(argv: readonly string[], defaults: SimOptions = {}): Promise<number> {
  let opts: ReturnType<typeof parseSimArgs>;
  try {
    opts = parseSimArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${SIM_USAGE}\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(`${SIM_USAGE}\n`);
    return 0;
  }
  const { help: _help, ...simOpts } = opts;
  const sim = buildSim({ port: SIM_DEFAULT_PORT, ...defaults, ...simOpts });
  await sim.start();
  const { dialects } = simInfo(sim);
  process.stdout.write(`${JSON.stringify({ url: sim.url, wsUrl: sim.wsUrl, ccxtOptions: sim.ccxtOptions(), control: `${sim.url}${CONTROL_PREFIX}`, dialects })}\n`);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  try {
    await sim.close();
    return 0;
  } catch (err) {
    process.stderr.write(`sim: close failed after ${signal}: ${String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`sim: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
