/**
 * `tickflow gateway [--exchange a,b]` and `tickflow backfill <exchange> <symbol> <timeframe>
 * --from ISO [--to ISO]`. Problems with exchange entries go to stderr, one line each, naming
 * the entry; the good entries run until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import type { ConfigForGateway } from './config.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { SHARD_GROUP_DEFAULTS, parseShardArg, type ShardSpec } from './shard.ts';
import { parseTimeArg } from '../core/time.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { serveMetrics } from '../core/metrics-server.ts';
import { logFormat } from '../core/log.ts';
import { collectProcessMetrics } from '../core/metrics.ts';
import { resolveBrokers } from '../infra/brokers.ts';
import { runBackfill } from './backfill.ts';
import { buildGateway, type GatewayReport, type Problem } from './index.ts';
import { entryName } from './worker.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);


const problemLine = (p: Problem) => `tickflow gateway: ${p.severity}: ${p.message}`;

export async function gatewayCommand(config: ConfigForGateway, argv: readonly string[]): Promise<number> {
  // A gateway process on its own favours memory over speed (gateways/README.md, Memory): V8's
  // young generation stays small and the heap grows only as far as it must. Set at run time, it
  // takes effect from the next collection; `tickflow start` (sink, API and database alongside)
  // keeps V8's defaults.
  if (config.gateway.optimizeForSize) v8.setFlagsFromString('--optimize-for-size');
  const { values } = parseArgs({ args: [...argv], options: { exchange: { type: 'string' }, config: { type: 'string' }, shard: { type: 'string' }, 'shard-group': { type: 'string' } }, allowPositionals: true, strict: false });
  const only = typeof values.exchange === 'string' ? values.exchange.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  let shard: ShardSpec | undefined;
  if (values.shard !== undefined && values['shard-group'] !== undefined) {
    err('tickflow gateway: --shard and --shard-group exclude each other (a fixed share, or one that moves with the group)');
    return 2;
  }
  if (values.shard !== undefined) {
    try {
      shard = parseShardArg(String(values.shard));
    } catch (e) {
      err(`tickflow gateway: ${messageOf(e)}`);
      return 2;
    }
  } else if (values['shard-group'] !== undefined) {
    const group = String(values['shard-group']);
    if (!/^[A-Za-z0-9._-]+$/.test(group)) {
      err(`tickflow gateway: --shard-group expects a name of letters, digits, ., _ or -, got ${group}`);
      return 2;
    }
    // The group's timings from gateway.shard when it names a group, else the defaults.
    const cfg = config.gateway.shard;
    shard = { ...SHARD_GROUP_DEFAULTS, ...(cfg && 'group' in cfg ? cfg : {}), group };
  }
  if (only) {
    const names = new Set([...config.exchanges.map(entryName), ...config.exchangeErrors.map((e) => e.id ?? '')]);
    const unknown = only.filter((n) => !names.has(n));
    if (unknown.length > 0) {
      err(`tickflow gateway: --exchange names no entry of the config: ${unknown.join(', ')} (configured: ${[...names].filter(Boolean).join(', ') || 'none'})`);
      return 2;
    }
  }
  if (config.exchanges.length === 0 && config.exchangeErrors.length === 0) {
    err(`tickflow gateway: no exchanges configured in ${config.source ?? 'the config'} (add an entry under exchanges:)`);
    return 2;
  }
  const brokers = await resolveBrokers(config);
  // Problems are printed here, one line each; as human log lines they would show twice.
  const gw = buildGateway(config, { brokers, logProblems: logFormat() === 'json', ...(only ? { only } : {}), ...(shard ? { shard } : {}) });
  // An entry still waiting for its exchange to answer may yet run; the command gives up only once
  // every entry has failed for good (at start, or later when a waiting exchange refuses).
  const allFailed = (r: GatewayReport) => r.workers.every((w) => w.status === 'failed' || w.status === 'stopped');
  const noneLeft = (r: GatewayReport) =>
    `tickflow gateway: no exchange entry could start (${[...new Set([...r.workers.map((w) => w.name), ...r.problems.map((p) => p.exchange)])].join(', ')}); see the errors above`;
  let gaveUp: (line: string) => void = () => undefined;
  const givenUp = new Promise<string>((r) => (gaveUp = r));
  // Problems found later (an exchange that answers only after a while) are reported the same way.
  let startedUp = false;
  gw.events.on('problem', (p) => {
    if (!startedUp) return;
    err(problemLine(p));
    // The worker marks itself failed right after reporting: look once it has.
    setImmediate(() => {
      const r = gw.report();
      if (allFailed(r)) gaveUp(noneLeft(r));
    });
  });
  // Metrics answer from the first second (buffered records, reconnects while exchanges or the
  // registry are still being waited for); closed on every way out so nothing keeps the process up.
  collectProcessMetrics();
  const metrics = await serveMetrics(config.gateway.metricsHost, config.gateway.metricsPort);
  let report: GatewayReport;
  try {
    report = await gw.start();
  } catch (e) {
    await metrics.close();
    throw e;
  }
  startedUp = true;
  for (const p of report.problems) err(problemLine(p));
  if (allFailed(report)) {
    err(noneLeft(report));
    await gw.close();
    await metrics.close();
    return 1;
  }
  const running = report.workers.filter((w) => w.status === 'running' || w.status === 'starting');
  // Sharded: this process's share (the rest run in the others).
  const mine = (w: (typeof running)[number]) => (gw.shard ? w.symbols.filter((s) => gw.shard!.owns(w.name, s)) : w.symbols);
  for (const w of running) out(`gateway: ${w.name} ${w.status === 'running' ? `running ${mine(w).join(', ') || `none of its instruments (shard ${gw.shard?.label})`} (${w.channels.join(', ')})` : 'waiting for the exchange to answer'}`);
  out(`gateway: producing to ${brokers.join(',')}, topics ${config.kafka.topicPrefix}.*; metrics at ${metrics.url}/metrics; Ctrl-C to stop`);
  const stop = await Promise.race([untilSignal().then(() => undefined), givenUp]);
  if (stop !== undefined) err(stop);
  else out('gateway: stopping (sending what is buffered)...');
  await gw.close();
  await metrics.close();
  // kafkajs may keep a retry timer alive after a failed last flush; do not hang on it.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref();
  return stop === undefined ? 0 : 1;
}

/** An ISO time, epoch ms, `now`, or `now-<n><m|h|d|w>` (relative to the local clock). */
export function parseTime(flag: string, v: unknown, now = Date.now()): number | undefined {
  if (v === undefined) return undefined;
  const t = typeof v === 'string' ? parseTimeArg(v, now) : undefined;
  if (t === undefined) throw new TickflowError('CONFIG_INVALID', `backfill: ${flag} expects an ISO time (2024-01-01T00:00:00Z), epoch ms, now or now-6h (m, h, d, w), got ${String(v)}`);
  return t;
}

const BACKFILL_USAGE = 'usage: tickflow backfill <exchange> <symbol> <timeframe> --from TIME [--to TIME]   TIME: ISO, epoch ms, now-6h (m, h, d, w); e.g. tickflow backfill sim BTC/USDT 1m --from now-6h';

export async function backfillCommand(config: ConfigForGateway, argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { from: { type: 'string' }, to: { type: 'string' }, config: { type: 'string' } },
    allowPositionals: true,
    strict: false,
  });
  const [, exchange, symbol, timeframe] = positionals;
  if (!exchange || !symbol || !timeframe || values.from === undefined) {
    err(BACKFILL_USAGE);
    return 2;
  }
  if (!/^\d+[smhdwM]$/.test(timeframe)) {
    err(`tickflow backfill: not a timeframe: ${timeframe} (expected like 1m, 1h, 1d)\n${BACKFILL_USAGE}`);
    return 2;
  }
  const from = parseTime('--from', values.from)!;
  const to = parseTime('--to', values.to);
  const brokers = await resolveBrokers(config);
  const t0 = Date.now();
  let latest = { candles: 0, fraction: 0, at: from };
  let shownAt = 0;
  const show = (final = false) => {
    const s = (Date.now() - t0) / 1000;
    const rate = s > 0 ? Math.round(latest.candles / s) : 0;
    out(`backfill ${exchange} ${symbol} ${timeframe}: ${(latest.fraction * 100).toFixed(1)}% (${latest.candles} candles, up to ${new Date(latest.at).toISOString()}), ${rate} candles/s${final ? ', done' : ''}`);
  };
  // A line at least every 2 s while pages come in, and one while a slow page is awaited.
  const timer = setInterval(() => {
    if (Date.now() - shownAt >= 2_000) {
      shownAt = Date.now();
      show();
    }
  }, 500);
  try {
    const r = await runBackfill(config, { exchange, symbol, timeframe, from, ...(to !== undefined ? { to } : {}) }, {
      brokers,
      onProgress: (p) => {
        latest = p;
      },
    });
    clearInterval(timer);
    latest = { ...latest, fraction: 1 };
    show(true);
    if (r.startsLate !== undefined) {
      err(`tickflow backfill: warning: ${r.exchange} has no ${symbol} ${timeframe} candles before ${new Date(r.startsLate).toISOString()} (asked from ${new Date(r.from).toISOString()}); the backfill starts there`);
    }
    out(`backfill: ${r.candles} closed candles in ${r.seconds.toFixed(1)} s (${Math.round(r.candles / Math.max(r.seconds, 0.001))} candles/s), ${r.acked} acknowledged by Kafka (${config.kafka.topicPrefix}.candles)`);
    if (r.undelivered > 0) {
      err(`tickflow backfill: ${r.undelivered} candles were not delivered (Kafka unreachable); run the same command again`);
      return 1;
    }
    return 0;
  } finally {
    clearInterval(timer);
  }
}
