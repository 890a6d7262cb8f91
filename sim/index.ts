/**
 * sim/: an offline exchange. One deterministic market (MarketEngine: seeded trades, books, candles,
 * tickers per symbol) spoken in several exchanges' wire formats at once (dialects/: Binance spot at
 * the root, the others under `/<name>`), so the real ccxt classes run against it unchanged through
 * URL overrides (`ccxtOptions(dialect)`). It is the demo source, the gateways' test fixture
 * (everything it sent is kept in `emitted`) and the load generator of the benchmarks. Fault
 * controls (faults.ts) apply to every dialect and are reachable over HTTP (control.ts).
 *
 * This file assembles them: the HTTP server and its routing (control → dialect REST → 404;
 * upgrades → dialect), the timer tick, state saving, and the `Sim` facade.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TickflowError } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { handleControl } from './control.ts';
import { DIALECT_MODULES } from './dialects/index.ts';
import type { Dialect, DialectName } from './dialects/types.ts';
import { Faults, type SimFault } from './faults.ts';
import { marketSpec, unitsToNumber } from './market.ts';
import { MarketEngine } from './market-engine.ts';
import { type SimOptions, resolveOptions } from './options.ts';
import { readSimState, writeSimState, writeSimStateSync } from './state.ts';
import type { Sim, SimCcxtOptions, SimConnection, SimStats } from './types.ts';

export { INTERVALS, type Interval } from './candles.ts';
export { STREAM_CHANNELS, type StreamChannel, type PauseTarget, type SimFault } from './faults.ts';
export { DIALECTS, DIALECT_MODULES, type DialectName } from './dialects/index.ts';
export { SIM_DEFAULTS, type SimOptions } from './options.ts';
export { SIM_STATE_FORMAT, type SimState, type SimSymbolState } from './state.ts';
export { connectSim, type SimControl, type SimInfo } from './control.ts';
export type * from './types.ts';

function invalid(msg: string): TickflowError {
  return new TickflowError('CONFIG_INVALID', `sim: ${msg}`);
}

export function buildSim(opts: SimOptions = {}): Sim {
  const o = resolveOptions(opts);
  const log = logger('sim');
  const resume = o.resume ?? (o.stateFile ? readSimState(o.stateFile, log) : undefined);
  const specs = o.symbols.map((s) => marketSpec(s, resume?.symbols[s]?.specPrice ?? o.startPrice?.[s]));
  if (new Set(specs.map((s) => s.id)).size !== specs.length) throw invalid('two symbols map to the same exchange id');

  const market = new MarketEngine(o, specs, resume, log);
  const faults = new Faults();
  let dialects: Dialect[] = [];
  const restRequests = new Map<string, number>();

  let server: Server | undefined;
  let timer: NodeJS.Timeout | undefined;
  let port = 0;
  let running = false;
  let closed = false;
  let elu0 = performance.eventLoopUtilization();
  let saveTimer: NodeJS.Timeout | undefined;
  let saving: Promise<void> | undefined;
  const host = o.host;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  /** The dialect a path belongs to (longest prefix first) and the path under its prefix. */
  const route = (path: string): [Dialect, string] | undefined => {
    for (const d of dialects) {
      if (d.prefix === '') return [d, path];
      if (path === d.prefix || path.startsWith(`${d.prefix}/`)) return [d, path.slice(d.prefix.length)];
    }
    return undefined;
  };

  const forDialects = (name: string | undefined): Dialect[] => (name === undefined ? dialects : dialects.filter((d) => d.name === name));

  function applyFault(f: SimFault): number {
    switch (f.kind) {
      case 'drop': {
        let n = 0;
        for (const d of forDialects(f.dialect)) n += d.hub.dropAll(f.how ?? 'abrupt');
        log.info({ connections: n, how: f.how ?? 'abrupt', dialect: f.dialect }, 'sim dropped websocket connections');
        return n;
      }
      case 'pause': {
        faults.pause(f.channel, f.ms, f.dialect);
        let n = 0;
        for (const d of forDialects(f.dialect)) n += d.hub.dropChannel(f.channel);
        log.info({ channel: f.channel, ms: f.ms, dropped: n, dialect: f.dialect }, 'sim paused streams');
        return n;
      }
      case 'refuse': {
        const target = f.target ?? 'rest';
        const status = f.status ?? (target === 'rest' ? 503 : 403);
        faults.refuse(target, f.ms, status, f.dialect);
        log.info({ target, ms: f.ms, status, dialect: f.dialect }, target === 'rest' ? 'sim refusing REST' : 'sim refusing websocket upgrades');
        return 0;
      }
      case 'refuseSubscribe':
        faults.refuseSubscribe(f.symbols, f.ms, f.dialect);
        log.info({ symbols: f.symbols, ms: f.ms, dialect: f.dialect }, 'sim refusing websocket subscriptions naming these symbols');
        return 0;
      case 'rateLimit':
        faults.rateLimit(f.requestsPerSecond, f.ms, f.dialect);
        log.info({ requestsPerSecond: f.requestsPerSecond, ms: f.ms, dialect: f.dialect }, 'sim rate-limiting REST');
        return 0;
      case 'quirk':
        faults.quirk(f.quirk, f.ms, f.latest, f.dialect);
        log.info({ quirk: f.quirk, latest: f.latest, ms: f.ms, dialect: f.dialect }, 'sim REST quirk on');
        return 0;
      case 'tradeRate':
        if (!Number.isFinite(f.perSecond) || f.perSecond < 0) throw invalid(`trade rate must be a non-negative number, got ${f.perSecond}`);
        market.setTradeRate(f.perSecond);
        return 0;
      case 'clear':
        faults.clear();
        log.info('sim cleared every fault');
        return 0;
    }
  }

  function ccxtOptions(): SimCcxtOptions;
  function ccxtOptions(dialect: DialectName): Record<string, unknown>;
  function ccxtOptions(dialect: DialectName = 'binance'): SimCcxtOptions | Record<string, unknown> {
    return DIALECT_MODULES[dialect].ccxtOptions({ url: sim.url, wsUrl: sim.wsUrl });
  }

  const sim: Sim = {
    async start() {
      if (running) return;
      if (closed) throw new TickflowError('INTERNAL', 'sim: a closed sim cannot be restarted; build a new one');
      market.start();
      const ctx = {
        market,
        faults,
        log,
        maxBufferedBytes: o.maxBufferedBytes,
        klinePushIntervalMs: o.klinePushIntervalMs,
        venueLimits: o.venueLimits,
        venueMessageRate: o.venueMessageRate,
        onError: (err: unknown, path: string) => log.error({ err, path }, 'sim REST handler failed'),
      };
      // Root-mounted dialects last, so a prefixed one is matched first.
      dialects = o.dialects.map((d) => DIALECT_MODULES[d].build(ctx)).sort((a, b) => b.prefix.length - a.prefix.length);
      for (const d of dialects) market.listen(d);
      market.listen({
        onTick: () => {
          for (const d of dialects) d.hub.flush();
          if (o.stateFile && !saving && market.leaseRunningLow()) saveState();
        },
      });
      const srv = createServer((req, res) => {
        const url = new URL(req.url ?? '/', 'http://sim');
        if (handleControl(sim, req, res, url.pathname, url)) return;
        const r = route(url.pathname);
        if (r) restRequests.set(r[0].name, (restRequests.get(r[0].name) ?? 0) + 1);
        if (!r || !r[0].handleRest(req, res, r[1], url)) res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
      });
      srv.on('upgrade', (req, socket, head) => {
        const r = route(new URL(req.url ?? '/', 'http://sim').pathname);
        if (!r || !r[0].handleUpgrade(req, socket, head, r[1])) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      });
      srv.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(o.port, host, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      server = srv;
      port = (srv.address() as AddressInfo).port;
      running = true;
      elu0 = performance.eventLoopUtilization();
      timer = setInterval(() => market.tick(), o.tickIntervalMs);
      if (o.stateFile) {
        saveState();
        saveTimer = setInterval(saveState, o.stateSaveIntervalMs);
        saveTimer.unref();
      }
      log.info(
        { url: sim.url, dialects: o.dialects, symbols: o.symbols.length > 20 ? `${o.symbols.slice(0, 5).join(',')},... (${o.symbols.length})` : o.symbols, rateSkew: o.rateSkew || undefined, tradesPerSecond: o.tradesPerSecond, seed: o.seed, speed: o.speed, resumedFrom: resume ? resume.virtualNow : undefined },
        'sim exchange listening',
      );
    },

    async close() {
      if (!running) return;
      running = false;
      closed = true;
      if (timer) clearInterval(timer);
      timer = undefined;
      if (saveTimer) clearInterval(saveTimer);
      saveTimer = undefined;
      await saving;
      if (o.stateFile) {
        // Synchronous: a close from a signal handler must leave the file whole.
        try {
          writeSimStateSync(o.stateFile, sim.state());
        } catch (err) {
          log.warn({ err, file: o.stateFile }, 'sim: could not save its state; the next start begins afresh');
        }
      }
      await Promise.all(dialects.map((d) => d.hub.close()));
      const srv = server;
      server = undefined;
      if (srv) {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeAllConnections();
        });
      }
      log.info({ url: sim.url }, 'sim exchange closed');
    },

    get port() {
      return port;
    },
    get url() {
      return `http://${urlHost}:${port}`;
    },
    get wsUrl() {
      return `ws://${urlHost}:${port}`;
    },
    get symbols() {
      return market.engines.length > 0 ? market.symbols : o.symbols;
    },
    markets(change) {
      if (!running) throw new TickflowError('INTERNAL', 'sim: markets change only while it runs');
      const add = (change.add ?? []).map((a) => (typeof a === 'string' ? { symbol: a } : a));
      const r = market.changeMarkets(add, change.remove ?? []);
      return { ...r, markets: market.engines.length };
    },
    dialects: o.dialects,
    ccxtOptions,
    now: () => market.now(),
    dropConnections: (how = 'abrupt') => applyFault({ kind: 'drop', how }),
    pauseStream: (channel, ms) => void applyFault({ kind: 'pause', channel, ms }),
    refuseService: (ms, status = 503) => void applyFault({ kind: 'refuse', target: 'rest', ms, status }),
    refuseWebsocket: (ms, status = 403) => void applyFault({ kind: 'refuse', target: 'ws', ms, status }),
    rateLimit: (requestsPerSecond, ms) => void applyFault({ kind: 'rateLimit', requestsPerSecond, ms }),
    applyFault,
    clearFaults: () => void applyFault({ kind: 'clear' }),
    setTradeRate: (rate) => void applyFault({ kind: 'tradeRate', perSecond: rate }),
    orderBook: (symbol, limit) => market.orderBook(symbol, limit),
    emitted: market.emitted,
    get resumed() {
      return market.resumed;
    },
    state: () => market.state(running),
    stats: () => stats(),
  };

  function stats(): SimStats {
    const symbols: Record<string, { trades: number; lastId: number; storedTrades: number; bid: number; ask: number }> = {};
    let total = 0;
    for (const e of market.engines) {
      const generated = e.trades.nextId - e.firstLiveId;
      total += generated;
      symbols[e.spec.symbol] = {
        trades: generated,
        lastId: e.trades.lastId,
        storedTrades: e.trades.count,
        bid: unitsToNumber(e.bid, e.spec.tickDecimals),
        ask: unitsToNumber(e.ask, e.spec.tickDecimals),
      };
    }
    const n = Math.min(market.ticks, market.recentTickMs.length);
    const sorted = Array.from(market.recentTickMs.subarray(0, n)).sort((a, b) => a - b);
    const loop = performance.eventLoopUtilization(elu0);
    const pct = (p: number) => (n === 0 ? 0 : Number(sorted[Math.min(n - 1, Math.floor(p * n))]!.toFixed(3)));
    const ws: Record<string, number> = {};
    const perDialect: Record<string, { ws: Record<string, number>; restRequests: number; connections: SimConnection[] }> = {};
    for (const d of dialects) {
      for (const [k, v] of Object.entries(d.hub.stats)) ws[k] = (ws[k] ?? 0) + v;
      perDialect[d.name] = { ws: { ...d.hub.stats }, restRequests: restRequests.get(d.name) ?? 0, connections: d.hub.connections() };
    }
    return {
      running,
      url: sim.url,
      virtualNow: market.now(),
      speed: o.speed,
      tradesPerSecond: market.tradeRate.value,
      symbols,
      tradesGenerated: total,
      ticks: market.ticks,
      tickMs: { p50: pct(0.5), p99: pct(0.99), max: Number(market.maxTickMs.toFixed(3)) },
      overrunTicks: market.overrunTicks,
      eventLoopUtilization: Number(loop.utilization.toFixed(3)),
      eventLoop: { busyMs: Math.round(loop.active), wallMs: Math.round(loop.active + loop.idle) },
      ws,
      dialects: perDialect,
      markets: market.engines.length,
      restRequests: [...restRequests.values()].reduce((a, b) => a + b, 0),
    };
  }

  function saveState(): void {
    if (!o.stateFile || saving || !running) return;
    const file = o.stateFile;
    const st = sim.state();
    saving = writeSimState(file, st)
      .catch((err: unknown) => log.warn({ err, file }, 'sim: could not save its state'))
      .finally(() => {
        saving = undefined;
      });
  }

  return sim;
}
