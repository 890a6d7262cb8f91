/**
 * `npm run bench:gateway`: per dialect the sim speaks (Binance, OKX, Kraken, Bybit, ... : every
 * name in sim's DIALECTS), trades per second from the sim through the gateway (the real ccxt pro
 * class of that exchange: watchTrades → normalize → Avro → kafkajs) into Kafka, beside the limit
 * measured in the same run on the same dialect: the same sim messages read with a plain `ws`
 * client speaking that dialect's subscribe protocol, JSON.parse'd, encoded to Avro and produced
 * with the same publisher and producer, no ccxt.
 *
 * The sim runs in a child process (its own event loop), serving only the dialect measured. For
 * each dialect and pipeline the offered rate steps up; a step is sustained when Kafka
 * acknowledged at least 97 % of what the sim printed in the window, with p99 receive-to-ack under
 * 1 s, and the stream kept up (no gap, no drop). The ladder stops at the first step not
 * sustained (`--patience 2` tolerates one). Reported per dialect: the highest sustained rate per
 * pipeline, the ratio, and the p99 receive-to-ack latency at 20,000 trades/s and at the highest
 * sustained rate; written to bench-results/gateway.json.
 *
 * Options: --dialects a,b (default all the sim speaks), --seconds N (measured per step, default
 * 4), --warmup N (default 2), --rates a,b,c (total trades/s over all symbols, default
 * 5000,20000,30000,45000,70000), --patience n (steps not sustained before a ladder stops, default 1),
 * --symbols n (default 2), --only limit|gateway. Kafka: KAFKA_BROKERS, or a throwaway broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { createCodec } from '../core/avro.ts';
import { loadConfig, parseConfig, type Config } from '../config/schema.ts';
import { createKafka } from '../core/kafka.ts';
import { benchBrokers } from './kafka.ts';
import type { Trade } from '../schemas/index.ts';
import { GatewayEvents } from '../gateways/events.ts';
import { buildGateway } from '../gateways/index.ts';
import { kafkaTransport, Publisher } from '../gateways/publisher.ts';
import { DIALECTS } from '../sim/dialects/types.ts';

const ALL_SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'BNB/USDT'];

interface Args {
  dialects: string[];
  seconds: number;
  warmup: number;
  rates: number[];
  patience: number;
  symbols: number;
  only: string | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { dialects: [...DIALECTS], seconds: 4, warmup: 2, rates: [5_000, 20_000, 30_000, 45_000, 70_000], patience: 1, symbols: 2, only: undefined };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--dialects') a.dialects = String(v).split(',').map((d) => d.trim().toLowerCase()).filter(Boolean);
    else if (argv[i] === '--seconds') a.seconds = Number(v);
    else if (argv[i] === '--warmup') a.warmup = Number(v);
    else if (argv[i] === '--rates') a.rates = String(v).split(',').map(Number);
    else if (argv[i] === '--patience') a.patience = Math.max(1, Number(v));
    else if (argv[i] === '--symbols') a.symbols = Math.min(ALL_SYMBOLS.length, Number(v));
    else if (argv[i] === '--only') a.only = v;
    else continue;
    i++;
  }
  const unknown = a.dialects.filter((d) => !(DIALECTS as readonly string[]).includes(d));
  if (unknown.length) throw new Error(`bench:gateway: --dialects names ${unknown.join(', ')}; the sim speaks ${DIALECTS.join(', ')}`);
  return a;
}

/** One dialect as the sim describes it (`/__sim/info`, and the line sim/main.ts prints). */
interface DialectInfo {
  ccxtId: string;
  prefix: string;
  ccxtOptions: { urls?: { api?: Record<string, unknown> }; options?: Record<string, unknown> };
}

interface SimProc {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  dialects: Record<string, DialectInfo>;
}

async function startSim(dialect: string, totalRate: number, symbols: readonly string[]): Promise<SimProc> {
  const main = fileURLToPath(new URL('../sim/main.ts', import.meta.url));
  const perSymbol = totalRate / symbols.length;
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--rate', String(perSymbol), '--symbols', symbols.join(','), '--history-days', '0', '--dialects', dialect], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  const info = JSON.parse(line) as Omit<SimProc, 'child'>;
  if (!info.dialects[dialect]) throw new Error(`the sim does not serve dialect ${dialect}`);
  return { child, ...info };
}

async function stopSim(s: SimProc): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

async function simGenerated(s: SimProc): Promise<number> {
  const r = (await (await fetch(`${s.url}/__sim/stats`)).json()) as { tradesGenerated: number };
  return r.tradesGenerated;
}

/** Receive-to-ack latencies (µs) of the records acknowledged while `on`; counts acked trades. */
class Meter {
  on = false;
  acked = 0;
  /** A trade was acknowledged, measured or not: the pipeline is up. */
  delivering = false;
  private lat = new Float64Array(1 << 20);
  private n = 0;
  private seen = 0;
  record(receivedAtUs: number, ackedAtUs: number): void {
    this.delivering = true;
    if (!this.on) return;
    this.acked++;
    // Reservoir sampling keeps the percentile honest at any rate.
    const i = this.seen++ < this.lat.length ? this.n++ : Math.floor(Math.random() * this.seen);
    if (i < this.lat.length) this.lat[i] = ackedAtUs - receivedAtUs;
  }
  percentile(p: number): number {
    if (this.n === 0) return NaN;
    const s = this.lat.slice(0, this.n).sort();
    return s[Math.min(this.n - 1, Math.floor(p * this.n))]! / 1000;
  }
}

interface StepResult {
  dialect: string;
  pipeline: 'limit' | 'gateway';
  rate: number;
  offered: number;
  acked: number;
  p50Ms: number;
  p99Ms: number;
  ok: boolean;
  note: string;
}

type Pipeline = (dialect: string, topicPrefix: string, sim: SimProc, symbols: readonly string[], meter: Meter, problems: string[]) => Promise<{ stop(): Promise<void>; buffered(): number }>;

/** The gateway as deployed: buildGateway with one entry on the sim's dialect, trades over ccxt pro. */
function gatewayPipeline(config: Config, brokers: readonly string[]): Pipeline {
  return async (dialect, topicPrefix, sim, symbols, meter, problems) => {
    const d = sim.dialects[dialect]!;
    // A fresh entry name per step: each step's sim starts afresh, so no position of an earlier
    // step (same topics) may be resumed and refilled from.
    const name = `bench-${dialect}-${randomBytes(3).toString('hex')}`;
    const cfg = parseConfig(
      {
        kafka: { ...config.kafka, brokers: [...brokers], topicPrefix },
        exchanges: [{ id: d.ccxtId, name, symbols, channels: { trades: {} }, backfillLookbackMinutes: 0, options: { ...d.ccxtOptions, enableRateLimit: false } }],
      },
      { env: {} },
    );
    const events = new GatewayEvents();
    events.on('produce.ack', (e) => {
      for (const r of e.records) if (r.kind === 'trade') meter.record(r.receivedAtUs, e.ackedAtUs);
    });
    events.on('stream.down', (e) => problems.push(`gap ${e.symbol}: ${e.reason.slice(0, 80)}`));
    events.on('buffer.drop', (e) => problems.push(`buffer drop ${e.count}`));
    const gw = buildGateway(cfg, { brokers, events, telemetry: false });
    const r = await gw.start();
    if (r.problems.length) throw new Error(r.problems.map((p) => p.message).join('; '));
    return { stop: () => gw.close(), buffered: () => gw.publisher.buffered };
  };
}

/** A trade as read off the wire by the limit pipeline. */
type RawTrade = Pick<Trade, 'id' | 'ts' | 'side' | 'price' | 'amount'>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- wire messages, read as the exchange documents them
type Msg = any;

/**
 * How a plain websocket client reads one dialect's trade stream: the URL (from the dialect's ccxt
 * options, as ccxt would), the subscribe message for one unified symbol, and the trades of one
 * message (`ts` in µs). Written from each exchange's public websocket documentation.
 */
interface RawClient {
  url(sim: SimProc, d: DialectInfo, socket: number): string;
  subscribe(symbol: string): unknown;
  trades(m: Msg): RawTrade[] | undefined;
}

const ws = (d: DialectInfo): Record<string, unknown> => (d.ccxtOptions.urls?.api?.ws ?? {}) as Record<string, unknown>;
const noSlash = (s: string) => s.replace('/', '');

const RAW_CLIENTS: Record<string, RawClient> = {
  binance: {
    url: (sim, _d, i) => `${sim.wsUrl}/stream/ws/${i}`,
    subscribe: (s) => ({ method: 'SUBSCRIBE', params: [`${noSlash(s).toLowerCase()}@aggTrade`], id: 1 }),
    trades: (m) => (m.e === 'aggTrade' ? [{ id: String(m.a), ts: m.T * 1000, side: m.m ? 'sell' : 'buy', price: Number(m.p), amount: Number(m.q) }] : undefined),
  },
  okx: {
    url: (_sim, d) => `${String(d.ccxtOptions.urls?.api?.ws)}/public`,
    subscribe: (s) => ({ op: 'subscribe', args: [{ channel: 'trades', instId: s.replace('/', '-') }] }),
    trades: (m) =>
      m.arg?.channel === 'trades' && Array.isArray(m.data)
        ? m.data.map((t: Msg) => ({ id: String(t.tradeId), ts: Number(t.ts) * 1000, side: t.side, price: Number(t.px), amount: Number(t.sz) }))
        : undefined,
  },
  kraken: {
    url: (_sim, d) => String(ws(d).publicV2),
    subscribe: (s) => ({ method: 'subscribe', params: { channel: 'trade', symbol: [s] } }),
    trades: (m) =>
      m.channel === 'trade' && m.type === 'update'
        ? m.data.map((t: Msg) => ({ id: String(t.trade_id), ts: Date.parse(t.timestamp) * 1000, side: t.side, price: Number(t.price), amount: Number(t.qty) }))
        : undefined,
  },
  bybit: {
    url: (_sim, d) => String((ws(d).public as Record<string, unknown>).spot),
    subscribe: (s) => ({ op: 'subscribe', args: [`publicTrade.${noSlash(s)}`] }),
    trades: (m) =>
      typeof m.topic === 'string' && m.topic.startsWith('publicTrade.')
        ? m.data.map((t: Msg) => ({ id: String(t.i), ts: t.T * 1000, side: t.S === 'Sell' ? 'sell' : 'buy', price: Number(t.p), amount: Number(t.v) }))
        : undefined,
  },
  // Coinbase Exchange's `matches` channel: `side` is the maker's, the taker's is the other one.
  coinbaseexchange: {
    url: (_sim, d) => String(d.ccxtOptions.urls?.api?.ws),
    subscribe: (s) => ({ type: 'subscribe', product_ids: [s.replace('/', '-')], channels: ['matches'] }),
    trades: (m) =>
      m.type === 'match'
        ? [{ id: String(m.trade_id), ts: Date.parse(m.time) * 1000, side: m.side === 'buy' ? 'sell' : 'buy', price: Number(m.price), amount: Number(m.size) }]
        : undefined,
  },
};

/** The limit: a plain ws client on the same stream, JSON.parse, Avro, the same publisher and producer. */
function rawPipeline(config: Config, brokers: readonly string[]): Pipeline {
  return async (dialect, topicPrefix, sim, symbols, meter, problems) => {
    const client = RAW_CLIENTS[dialect];
    if (!client) throw new Error(`no plain-websocket client for dialect ${dialect} in bench/gateway.ts RAW_CLIENTS`);
    const d = sim.dialects[dialect]!;
    const events = new GatewayEvents();
    events.on('produce.ack', (e) => {
      for (const r of e.records) if (r.kind === 'trade') meter.record(r.receivedAtUs, e.ackedAtUs);
    });
    events.on('buffer.drop', (e) => problems.push(`buffer drop ${e.count}`));
    const codec = createCodec(config.kafka);
    const publisher = new Publisher({ topicPrefix, codec, transport: kafkaTransport({ ...config.kafka, brokers, topicPrefix }, codec), events });
    publisher.start();
    const exchange = `bench-raw-${dialect}`;
    const box = publisher.outbox(exchange, 250_000);
    const sockets = symbols.map((symbol, i) => {
      const socket = new WebSocket(client.url(sim, d, i));
      socket.on('open', () => socket.send(JSON.stringify(client.subscribe(symbol))));
      socket.on('message', (data) => {
        const receivedAtUs = Date.now() * 1000;
        const text = data.toString();
        if (text === 'pong') return;
        const trades = client.trades(JSON.parse(text));
        if (trades) for (const t of trades) box.add('trade', { exchange, symbol, received_at: receivedAtUs, ...t } satisfies Trade);
      });
      socket.on('close', () => problems.push('ws closed'));
      socket.on('error', (err) => problems.push(`ws error: ${err.message}`));
      return socket;
    });
    await Promise.all(sockets.map((s) => new Promise((r) => s.once('open', r))));
    return {
      async stop() {
        for (const s of sockets) {
          s.removeAllListeners('close');
          s.terminate();
        }
        await publisher.close(10_000);
      },
      buffered: () => publisher.buffered,
    };
  };
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

/**
 * One step: a fresh sim at `rate`, the pipeline on its own topics (`topicPrefix`: the gateway's
 * start-up scan of its topics' tails then finds nothing to read), measured once it delivers.
 */
async function runStep(dialect: string, topicPrefix: string, pipelineName: 'limit' | 'gateway', pipeline: Pipeline, rate: number, symbols: readonly string[], args: Args): Promise<StepResult> {
  const sim = await startSim(dialect, rate, symbols);
  const meter = new Meter();
  const problems: string[] = [];
  let p: Awaited<ReturnType<Pipeline>> | undefined;
  const label = `${dialect} ${pipelineName}`;
  try {
    p = await pipeline(dialect, topicPrefix, sim, symbols, meter, problems);
    // The gateway's start() returns before its streams run (positions, markets): wait for the first ack.
    const deadline = Date.now() + 30_000;
    while (!meter.delivering) {
      if (Date.now() > deadline) throw new Error(`no trade reached Kafka within 30 s${problems.length ? ` (${problems[0]})` : ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, args.warmup * 1000));
    const g0 = await simGenerated(sim);
    const t0 = performance.now();
    meter.on = true;
    const elu0 = performance.eventLoopUtilization();
    for (let s = 1; s <= args.seconds; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      const dt = (performance.now() - t0) / 1000;
      process.stdout.write(`  ${label} @ ${fmt(rate)}/s offered: t+${s}s acked ${fmt(meter.acked / dt)}/s, buffered ${fmt(p.buffered())}${problems.length ? `, ${problems[0]}` : ''}\n`);
    }
    const g1 = await simGenerated(sim);
    const dt = (performance.now() - t0) / 1000;
    meter.on = false;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const offered = (g1 - g0) / dt;
    const acked = meter.acked / dt;
    const p99 = meter.percentile(0.99);
    const ok = acked >= 0.97 * offered && p99 < 1_000 && problems.length === 0;
    return { dialect, pipeline: pipelineName, rate, offered, acked, p50Ms: meter.percentile(0.5), p99Ms: p99, ok, note: problems.length ? problems.slice(0, 2).join('; ') : `bench process event loop ${(elu * 100).toFixed(0)}% busy` };
  } finally {
    await p?.stop().catch(() => undefined);
    await stopSim(sim);
  }
}

async function deleteBenchTopics(brokers: readonly string[], prefix: string): Promise<void> {
  const admin = createKafka({ brokers, clientId: 'bench', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const topics = [...existing].filter((t) => t.startsWith(`${prefix}s`));
    if (topics.length) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

interface DialectResult {
  dialect: string;
  limit?: StepResult;
  gateway?: StepResult;
  /** The highest rate tried was sustained: the pipeline's ceiling is at least that. */
  limitAtLeast: boolean;
  gatewayAtLeast: boolean;
  error?: string;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const base = loadConfig();
  const kafka = await benchBrokers();
  const brokers = kafka.brokers;
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  const config = parseConfig({ kafka: { ...base.kafka, brokers: [...brokers], topicPrefix: prefix } }, { env: {} });
  const symbols = ALL_SYMBOLS.slice(0, args.symbols);
  const loadBefore = loadavg();
  const started = Date.now();
  process.stdout.write(
    `bench:gateway: dialects ${args.dialects.join(', ')}; sim in a child process (${symbols.join(', ')}), Kafka ${brokers.join(',')}, topics ${prefix}s<step>.*, ` +
      `${args.seconds}s per step after ${args.warmup}s warm-up, rates ${args.rates.map(fmt).join(', ')}; ${cpus().length} cores, load ${loadBefore.map((l) => l.toFixed(1)).join(' ')}\n`,
  );

  const pipelines: ['limit' | 'gateway', Pipeline][] = [
    ['limit', rawPipeline(config, brokers)],
    ['gateway', gatewayPipeline(config, brokers)],
  ];
  const steps: StepResult[] = [];
  const results: DialectResult[] = [];
  const highest = Math.max(...args.rates);
  let stepNo = 0;
  try {
    for (const dialect of args.dialects) {
      const res: DialectResult = { dialect, limitAtLeast: false, gatewayAtLeast: false };
      results.push(res);
      for (const [name, pipeline] of pipelines) {
        if (args.only && name !== args.only) continue;
        let failures = 0;
        for (const rate of args.rates) {
          let r: StepResult;
          try {
            r = await runStep(dialect, `${prefix}s${++stepNo}`, name, pipeline, rate, symbols, args);
          } catch (err) {
            const msg = err instanceof Error ? err.message : String(err);
            process.stdout.write(`  ${dialect} ${name}: ${msg}\n`);
            res.error = [res.error, `${name}: ${msg.slice(0, 200)}`].filter(Boolean).join('; ');
            break;
          }
          steps.push(r);
          process.stdout.write(`  => ${dialect} ${name}: ${r.ok ? 'sustained' : 'NOT sustained'}: ${fmt(r.acked)}/s of ${fmt(r.offered)}/s, p99 ${r.p99Ms.toFixed(1)} ms\n`);
          if (r.ok) {
            failures = 0;
            if (!res[name] || r.acked > res[name].acked) res[name] = r;
            if (rate === highest) res[`${name}AtLeast`] = true;
          } else if (++failures >= args.patience) break;
        }
      }
    }
  } finally {
    await deleteBenchTopics(brokers, prefix).catch(() => undefined);
    await kafka.stop();
  }
  const loadAfter = loadavg();
  const minutes = (Date.now() - started) / 60_000;

  console.log('\nsteps:');
  console.table(steps.map((s) => ({ dialect: s.dialect, pipeline: s.pipeline, 'offered/s': fmt(s.offered), 'acked/s': fmt(s.acked), 'p50 ms': s.p50Ms.toFixed(1), 'p99 ms': s.p99Ms.toFixed(1), sustained: s.ok, note: s.note })));
  const at20k = (d: string, p: string) => steps.find((s) => s.dialect === d && s.pipeline === p && s.rate === 20_000);
  const cell = (r: StepResult | undefined, atLeast: boolean) => (r ? `${atLeast ? '≥ ' : ''}${fmt(r.acked)}` : '-');
  console.log('\nresult per dialect (highest sustained trades/s into Kafka; p99 = receive-to-ack latency there):');
  console.table(
    results.map((r) => {
      const t = at20k(r.dialect, 'gateway');
      return {
        dialect: r.dialect,
        'limit trades/s': cell(r.limit, r.limitAtLeast),
        'gateway trades/s': cell(r.gateway, r.gatewayAtLeast),
        'gateway / limit': r.limit && r.gateway ? `${((r.gateway.acked / r.limit.acked) * 100).toFixed(0)} %` : '-',
        'limit p99 ms': r.limit ? r.limit.p99Ms.toFixed(1) : '-',
        'gateway p99 ms': r.gateway ? r.gateway.p99Ms.toFixed(1) : '-',
        ...(t ? { 'gateway p99 ms at 20,000/s': `${t.p99Ms.toFixed(1)}${t.ok ? '' : ' (not sustained)'}` } : {}),
        ...(r.error ? { error: r.error.slice(0, 80) } : {}),
      };
    }),
  );
  console.log(`"≥" = the highest rate tried (${fmt(highest)}/s) was sustained: add higher --rates to find the ceiling. Load average ${loadBefore[0]!.toFixed(1)} before, ${loadAfter[0]!.toFixed(1)} after (${cpus().length} cores); ${minutes.toFixed(1)} min.`);

  const file = path.join(process.cwd(), 'bench-results', 'gateway.json');
  mkdirSync(path.dirname(file), { recursive: true });
  const summary = (r: StepResult | undefined) => (r ? { tradesPerSecond: Math.round(r.acked), offeredPerSecond: Math.round(r.offered), p50Ms: r.p50Ms, p99Ms: r.p99Ms } : null);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        at: new Date(started).toISOString(),
        minutes,
        machine: { cores: cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: loadAfter },
        args,
        symbols,
        dialects: Object.fromEntries(
          results.map((r) => [
            r.dialect,
            {
              limit: summary(r.limit),
              limitAtLeast: r.limitAtLeast,
              gateway: summary(r.gateway),
              gatewayAtLeast: r.gatewayAtLeast,
              ratio: r.limit && r.gateway ? r.gateway.acked / r.limit.acked : null,
              ...(r.error ? { error: r.error } : {}),
            },
          ]),
        ),
        steps,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`written: ${file}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
