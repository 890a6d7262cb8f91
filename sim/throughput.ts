/**
 * How many trades per second one consumer receives from the sim over one loopback websocket.
 * Not a test: a measurement to run by hand, `npx tsx sim/throughput.ts [--seconds 5] [--rates 5000,20000,50000]`.
 *
 * The sim runs in its own process (`sim/main.ts`, as in a deployment), so the consumer gets a core
 * of its own. For each rate two consumers are measured one after the other:
 * - raw: a plain `ws` client that only counts frames (what the sim can push);
 * - ccxt: `ccxt.pro.binance.watchTrades` (what the gateway can take), checking ids for gaps and
 *   duplicates, once per `--trades-limits` value. ccxt keeps trades in an ArrayCache of
 *   `options.tradesLimit` (1000 by default) and `watchTrades` returns only what is new since the
 *   previous call (`newUpdates`): a burst larger than the cache between two calls is lost. But every
 *   call also copies the whole cache (filterBySinceLimit -> toArray), so a huge limit (100,000)
 *   caps one consumer near 20k trades/s; a few thousand is the sweet spot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import ccxt from 'ccxt';
import WebSocket from 'ws';

interface Args {
  seconds: number;
  rates: number[];
  tradesLimits: number[];
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { seconds: 5, rates: [5_000, 20_000, 50_000], tradesLimits: [5_000, 100_000] };
  const list = (v: string | undefined): number[] => String(v).split(',').map(Number);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--seconds') a.seconds = Number(argv[++i]);
    else if (argv[i] === '--rates') a.rates = list(argv[++i]);
    else if (argv[i] === '--trades-limits') a.tradesLimits = list(argv[++i]);
  }
  return a;
}

interface Started {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  ccxtOptions: Record<string, unknown>;
}

async function startSim(rate: number): Promise<Started> {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--rate', String(rate), '--symbols', 'BTC/USDT', '--history-days', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as Omit<Started, 'child'>) };
}

async function stopSim(s: Started): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

async function simStats(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/sim/stats`);
  return (await res.json()) as Record<string, unknown>;
}

/** The sim's event-loop utilization between two /sim/stats samples. */
function elu(before: Record<string, unknown>, after: Record<string, unknown>): number {
  const b = before.eventLoop as { busyMs: number; wallMs: number };
  const a = after.eventLoop as { busyMs: number; wallMs: number };
  return (a.busyMs - b.busyMs) / Math.max(1, a.wallMs - b.wallMs);
}

async function measureRaw(s: Started, seconds: number): Promise<number> {
  const ws = new WebSocket(`${s.wsUrl}/ws/raw`);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  let n = 0;
  let counting = false;
  ws.on('message', () => {
    if (counting) n++;
  });
  ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: ['btcusdt@trade'], id: 1 }));
  await new Promise((r) => setTimeout(r, 500));
  counting = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const dt = (performance.now() - t0) / 1000;
  ws.terminate();
  return n / dt;
}

async function measureCcxt(s: Started, seconds: number, tradesLimit: number) {
  const opts = s.ccxtOptions as { options: Record<string, unknown> };
  const ex = new ccxt.pro.binance({
    ...s.ccxtOptions,
    httpAgent: new http.Agent({ keepAlive: true }),
    enableRateLimit: false,
    options: { ...opts.options, tradesLimit },
  });
  await ex.loadMarkets();
  let last: number | undefined;
  // Warm up: connect, subscribe, let the JIT settle.
  const warmUntil = performance.now() + 500;
  while (performance.now() < warmUntil) {
    const b = await ex.watchTrades('BTC/USDT');
    last = Number(b[b.length - 1]!.id);
  }
  let received = 0;
  let gaps = 0;
  let dups = 0;
  let maxBatch = 0;
  let lagMsMax = 0;
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  let error = '';
  while (performance.now() < until) {
    let batch;
    try {
      batch = await ex.watchTrades('BTC/USDT');
    } catch (err) {
      // The sim drops a consumer whose backlog passes maxBufferedBytes, as Binance does.
      error = err instanceof Error ? `${err.constructor.name}: ${err.message.slice(0, 80)}` : String(err);
      break;
    }
    received += batch.length;
    if (batch.length > maxBatch) maxBatch = batch.length;
    for (const t of batch) {
      const id = Number(t.id);
      if (last !== undefined) {
        if (id <= last) dups++;
        else if (id !== last + 1) gaps += id - last - 1;
      }
      last = id;
    }
    const lag = Date.now() - batch[batch.length - 1]!.timestamp!;
    if (lag > lagMsMax) lagMsMax = lag;
  }
  const dt = (performance.now() - t0) / 1000;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  await ex.close();
  return { perSecond: received / dt, gaps, dups, maxBatch, lagMsMax, consumerElu: elu, error };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rows: Record<string, unknown>[] = [];
  for (const rate of args.rates) {
    const s = await startSim(rate);
    try {
      const before = await simStats(s.url);
      const raw = await measureRaw(s, args.seconds);
      const after = await simStats(s.url);
      const row = {
        rate,
        consumer: 'raw ws',
        perSec: Math.round(raw),
        gaps: '',
        dups: '',
        maxBatch: '',
        maxLagMs: '',
        consumerElu: '',
        simElu: Number(elu(before, after).toFixed(2)),
        simTickP99Ms: (after.tickMs as { p99: number }).p99,
        simOverrunTicks: (after.overrunTicks as number) - (before.overrunTicks as number),
        error: '',
      };
      rows.push(row);
      console.log(JSON.stringify(row));
      for (const limit of args.tradesLimits) {
        const b = await simStats(s.url);
        const c = await measureCcxt(s, args.seconds, limit);
        const a = await simStats(s.url);
        const r = {
          rate,
          consumer: `ccxt tradesLimit=${limit}`,
          perSec: Math.round(c.perSecond),
          gaps: c.gaps,
          dups: c.dups,
          maxBatch: c.maxBatch,
          maxLagMs: c.lagMsMax,
          consumerElu: Number(c.consumerElu.toFixed(2)),
          simElu: Number(elu(b, a).toFixed(2)),
          simTickP99Ms: (a.tickMs as { p99: number }).p99,
          simOverrunTicks: (a.overrunTicks as number) - (b.overrunTicks as number),
          error: c.error,
        };
        rows.push(r);
        console.log(JSON.stringify(r));
      }
    } finally {
      await stopSim(s);
    }
  }
  console.table(rows);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
