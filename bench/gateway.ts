/**
 * `npm run bench:gateway`: trades per second from the sim through the gateway (ccxt pro
 * watchTrades → normalize → Avro → kafkajs) into Kafka, beside the limit measured in the same
 * run: the same sim messages read with a plain `ws` client, JSON.parse'd, encoded to Avro and
 * produced with the same publisher and producer, no ccxt.
 *
 * The sim runs in a child process (its own event loop). For each pipeline the offered rate
 * steps up; a step is sustained when Kafka acknowledged at least 97 % of what the sim printed
 * in the window, with p99 receive-to-ack under 1 s, and the stream kept up (no gap, no drop).
 * Reported: the highest sustained rate per pipeline, the ratio, and the p99 receive-to-ack
 * latency at 20,000 trades/s and at the highest sustained rate.
 *
 * Options: --seconds N (measured per step, default 5), --rates a,b,c (total trades/s over both
 * symbols), --symbols n (default 2), --only limit|gateway. Kafka: KAFKA_BROKERS, or the broker from `tickflow infra up`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { createCodec } from '../core/avro.ts';
import { loadConfig, parseConfig, type Config } from '../config/schema.ts';
import { createKafka } from '../core/kafka.ts';
import { benchBrokers } from './kafka.ts';
import { topicFor, RECORD_KINDS, type Trade } from '../schemas/index.ts';
import { GatewayEvents } from '../gateways/events.ts';
import { buildGateway } from '../gateways/index.ts';
import { kafkaTransport, Publisher } from '../gateways/publisher.ts';

const ALL_SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'BNB/USDT'];

interface Args {
  seconds: number;
  warmup: number;
  rates: number[];
  symbols: number;
  only: string | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { seconds: 5, warmup: 2, rates: [10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000], symbols: 2, only: undefined };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--seconds') a.seconds = Number(v);
    else if (argv[i] === '--warmup') a.warmup = Number(v);
    else if (argv[i] === '--rates') a.rates = String(v).split(',').map(Number);
    else if (argv[i] === '--symbols') a.symbols = Math.min(ALL_SYMBOLS.length, Number(v));
    else if (argv[i] === '--only') a.only = v;
    else continue;
    i++;
  }
  return a;
}

interface SimProc {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  ccxtOptions: { urls: unknown; options: Record<string, unknown> };
}

async function startSim(totalRate: number, symbols: readonly string[]): Promise<SimProc> {
  const main = fileURLToPath(new URL('../sim/main.ts', import.meta.url));
  const perSymbol = totalRate / symbols.length;
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--rate', String(perSymbol), '--symbols', symbols.join(','), '--history-days', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as Omit<SimProc, 'child'>) };
}

async function stopSim(s: SimProc): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

async function simGenerated(s: SimProc): Promise<number> {
  const r = (await (await fetch(`${s.url}/sim/stats`)).json()) as { tradesGenerated: number };
  return r.tradesGenerated;
}

/** Receive-to-ack latencies (µs) of the records acknowledged while `on`; counts acked trades. */
class Meter {
  on = false;
  acked = 0;
  private lat = new Float64Array(1 << 20);
  private n = 0;
  private seen = 0;
  record(receivedAtUs: number, ackedAtUs: number): void {
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
  pipeline: string;
  offered: number;
  acked: number;
  p50Ms: number;
  p99Ms: number;
  ok: boolean;
  note: string;
}

type Pipeline = (sim: SimProc, symbols: readonly string[], meter: Meter, problems: string[]) => Promise<{ stop(): Promise<void>; buffered(): number }>;

/** The gateway as deployed: buildGateway with one entry on the sim, trades over ccxt pro. */
function gatewayPipeline(config: Config, brokers: readonly string[]): Pipeline {
  return async (sim, symbols, meter, problems) => {
    const o = sim.ccxtOptions;
    const cfg = parseConfig(
      {
        kafka: { ...config.kafka, brokers: [...brokers] },
        exchanges: [{ id: 'binance', name: 'bench-ccxt', symbols, channels: { trades: {} }, backfillLookbackMinutes: 0, options: { ...o, enableRateLimit: false } }],
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

/** The limit: a plain ws client on the same stream, JSON.parse, Avro, the same publisher and producer. */
function rawPipeline(config: Config, brokers: readonly string[]): Pipeline {
  return async (sim, symbols, meter, problems) => {
    const events = new GatewayEvents();
    events.on('produce.ack', (e) => {
      for (const r of e.records) if (r.kind === 'trade') meter.record(r.receivedAtUs, e.ackedAtUs);
    });
    events.on('buffer.drop', (e) => problems.push(`buffer drop ${e.count}`));
    const codec = createCodec(config.kafka);
    const publisher = new Publisher({ topicPrefix: config.kafka.topicPrefix, codec, transport: kafkaTransport({ ...config.kafka, brokers }, codec), events });
    publisher.start();
    const box = publisher.outbox('bench-raw', 250_000);
    const unified = new Map(symbols.map((s) => [s.replace('/', ''), s]));
    const sockets = symbols.map((s, i) => {
      const ws = new WebSocket(`${sim.wsUrl}/stream/ws/${i}`);
      ws.on('open', () => ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: [`${s.replace('/', '').toLowerCase()}@aggTrade`], id: 1 })));
      ws.on('message', (data) => {
        const receivedAtUs = Date.now() * 1000;
        const m = JSON.parse(data.toString()) as { e?: string; s: string; a: number; p: string; q: string; T: number; m: boolean };
        if (m.e !== 'aggTrade') return;
        const t: Trade = { exchange: 'bench-raw', symbol: unified.get(m.s)!, ts: m.T * 1000, received_at: receivedAtUs, id: String(m.a), side: m.m ? 'sell' : 'buy', price: Number(m.p), amount: Number(m.q) };
        box.add('trade', t);
      });
      ws.on('close', () => problems.push('ws closed'));
      return ws;
    });
    await Promise.all(sockets.map((ws) => new Promise((r) => ws.once('open', r))));
    return {
      async stop() {
        for (const ws of sockets) {
          ws.removeAllListeners('close');
          ws.terminate();
        }
        await publisher.close(10_000);
      },
      buffered: () => publisher.buffered,
    };
  };
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

async function runStep(name: string, pipeline: Pipeline, rate: number, symbols: readonly string[], args: Args): Promise<StepResult> {
  const sim = await startSim(rate, symbols);
  const meter = new Meter();
  const problems: string[] = [];
  let p: Awaited<ReturnType<Pipeline>> | undefined;
  try {
    p = await pipeline(sim, symbols, meter, problems);
    await new Promise((r) => setTimeout(r, args.warmup * 1000));
    const g0 = await simGenerated(sim);
    const t0 = performance.now();
    meter.on = true;
    const elu0 = performance.eventLoopUtilization();
    for (let s = 1; s <= args.seconds; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      const dt = (performance.now() - t0) / 1000;
      process.stdout.write(`  ${name} @ ${fmt(rate)}/s offered: t+${s}s acked ${fmt(meter.acked / dt)}/s, buffered ${fmt(p.buffered())}${problems.length ? `, ${problems[0]}` : ''}\n`);
    }
    const g1 = await simGenerated(sim);
    const dt = (performance.now() - t0) / 1000;
    meter.on = false;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const offered = (g1 - g0) / dt;
    const acked = meter.acked / dt;
    const p99 = meter.percentile(0.99);
    const ok = acked >= 0.97 * offered && p99 < 1_000 && problems.length === 0;
    return { pipeline: name, offered, acked, p50Ms: meter.percentile(0.5), p99Ms: p99, ok, note: problems.length ? problems.slice(0, 2).join('; ') : `bench process event loop ${(elu * 100).toFixed(0)}% busy` };
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
    const topics = RECORD_KINDS.map((k) => topicFor(prefix, k)).filter((t) => existing.has(t));
    if (topics.length) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const base = loadConfig();
  const kafka = await benchBrokers();
  const brokers = kafka.brokers;
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  const config = parseConfig({ kafka: { ...base.kafka, brokers: [...brokers], topicPrefix: prefix } }, { env: {} });
  const symbols = ALL_SYMBOLS.slice(0, args.symbols);
  process.stdout.write(`bench:gateway: sim in a child process (${symbols.join(', ')}), Kafka ${brokers.join(',')}, topics ${prefix}.*, ${args.seconds}s per step after ${args.warmup}s warm-up\n`);

  const pipelines: [string, Pipeline][] = [
    ['limit: ws + JSON.parse + Avro + kafkajs', rawPipeline(config, brokers)],
    ['gateway: ccxt + normalize + Avro + kafkajs', gatewayPipeline(config, brokers)],
  ];
  const steps: StepResult[] = [];
  const best = new Map<string, StepResult | undefined>();
  const at20k = new Map<string, StepResult | undefined>();
  try {
    for (const [name, pipeline] of pipelines) {
      if (args.only && !name.startsWith(args.only)) continue;
      let failures = 0;
      for (const rate of args.rates) {
        const r = await runStep(name.split(':')[0]!, pipeline, rate, symbols, args);
        r.pipeline = name;
        steps.push(r);
        process.stdout.write(`  => ${r.ok ? 'sustained' : 'NOT sustained'}: ${fmt(r.acked)}/s of ${fmt(r.offered)}/s, p99 ${r.p99Ms.toFixed(1)} ms\n`);
        if (rate === 20_000) at20k.set(name, r);
        if (r.ok) {
          failures = 0;
          if (!best.get(name) || r.acked > best.get(name)!.acked) best.set(name, r);
        } else if (++failures >= 2) break;
      }
    }
  } finally {
    await deleteBenchTopics(brokers, prefix).catch(() => undefined);
    await kafka.stop();
  }

  console.log('\nsteps:');
  console.table(steps.map((s) => ({ pipeline: s.pipeline.split(':')[0], 'offered/s': fmt(s.offered), 'acked/s': fmt(s.acked), 'p50 ms': s.p50Ms.toFixed(1), 'p99 ms': s.p99Ms.toFixed(1), sustained: s.ok, note: s.note })));
  const limit = best.get(pipelines[0]![0]);
  const gw = best.get(pipelines[1]![0]);
  console.log('\nresult (highest sustained rate; p99 = receive-to-ack latency):');
  console.table(
    pipelines.map(([name]) => {
      const b = best.get(name);
      const t = at20k.get(name);
      return {
        pipeline: name,
        'trades/s': fmt(b?.acked ?? NaN),
        'p99 ms at that rate': b ? b.p99Ms.toFixed(1) : '-',
        'p99 ms at 20,000/s': t ? `${t.p99Ms.toFixed(1)}${t.ok ? '' : ' (not sustained)'}` : '-',
      };
    }),
  );
  if (limit && gw) {
    const ratio = gw.acked / limit.acked;
    console.log(`gateway / limit = ${(ratio * 100).toFixed(0)} % (target >= 33 %); gateway ${fmt(gw.acked)} trades/s (target >= 20,000)`);
    const highest = args.rates.at(-1)!;
    if (limit.offered >= 0.95 * highest) console.log(`note: the limit pipeline kept up with the highest rate tried (${fmt(highest)}/s): the limit is at least that; add higher --rates`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
