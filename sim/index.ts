/**
 * sim/: an offline exchange that speaks Binance spot's public REST and websocket formats, so the
 * real ccxt code (`ccxt.binance`, `ccxt.pro.binance`) runs against it unchanged through URL
 * overrides (see `ccxtOptions()`). It is the demo source, the gateways' test fixture (everything it
 * sent is kept in `emitted`) and the load generator of the benchmarks.
 *
 * Flow: a timer tick (every `tickIntervalMs`) advances each symbol's engine to "now", which prints
 * every trade whose Poisson arrival time has passed (timestamps spread inside the tick, never one
 * timer per trade) and moves the order book on a 100 ms grid; the tick then fans the new events
 * out to websocket subscribers in one corked write per socket. REST answers from the same state.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TickflowError } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { type Interval, MINUTE_COLUMNS, type MinuteColumn, bucketOpen, isInterval, nextOpen } from './candles.ts';
import { type BookDiff, type EngineResume, type Stats24h, SymbolEngine } from './engine.ts';
import { marketSpec, unitsToNumber } from './market.ts';
import { createRestHandler } from './rest.ts';
import * as wire from './wire.ts';
import { type PauseTarget, StreamHub } from './ws.ts';

export { INTERVALS, type Interval } from './candles.ts';
export { STREAM_CHANNELS, type StreamChannel, type PauseTarget } from './ws.ts';

export interface SimOptions {
  /** Interface to bind; default 127.0.0.1. */
  readonly host?: string;
  /** 0 = any free port (default). */
  readonly port?: number;
  /** Seeds prices, trades, history and book; default 1. */
  readonly seed?: number;
  /** Unified spot symbols; default ['BTC/USDT', 'ETH/USDT']. */
  readonly symbols?: readonly string[];
  /** Mean trades per second per symbol (Poisson arrivals); default 5. */
  readonly tradesPerSecond?: number;
  /** Start price per unified symbol; defaults to rough real levels (BTC 60000, ETH 3000, else 100). */
  readonly startPrice?: Readonly<Record<string, number>>;
  /** Days of synthetic 1m history before the start, served by klines; default 7. */
  readonly historyDays?: number;
  /** Price levels per book side; default 100. */
  readonly bookDepth?: number;
  /** Virtual start time (ms); default: the wall clock at start(). */
  readonly startTime?: number;
  /** Virtual clock speed: 60 = one simulated minute per real second. Default 1. */
  readonly speed?: number;
  /** How often trades are generated and sent (real ms); default 10. */
  readonly tickIntervalMs?: number;
  /** Trades kept per symbol for REST refills and `emitted`; default 2,000,000. */
  readonly maxStoredTrades?: number;
  /** Kline update cadence per subscribed stream (virtual ms); default 1000. */
  readonly klinePushIntervalMs?: number;
  /** Ticker cadence per symbol (virtual ms); default 1000. */
  readonly tickerPushIntervalMs?: number;
  /** Log-price volatility per √second; default 1e-4. */
  readonly volatility?: number;
  /** Drop a websocket whose unsent backlog exceeds this; default 64 MiB. */
  readonly maxBufferedBytes?: number;
  /** Tickers remembered per symbol in `emitted.tickers`; default 100,000. */
  readonly maxEmittedTickers?: number;
  /**
   * Continue an earlier sim (its `state()`): the same candles for the minutes it served, prices
   * on from its last one, trade ids on from its last one, the virtual clock never behind it.
   * Symbols it did not have start afresh. Wins over `stateFile`'s contents.
   */
  readonly resume?: SimState;
  /**
   * Keep the state in this JSON file: read at build (a missing file = a first run; an unreadable
   * one is logged and ignored), rewritten every `stateSaveIntervalMs`, early when the trade ids
   * leased to the running sim run low, and on close. Unset: nothing is kept.
   */
  readonly stateFile?: string;
  /** How often the state file is rewritten (real ms); default 30,000. */
  readonly stateSaveIntervalMs?: number;
}

/**
 * What a sim needs to continue where another stopped; plain JSON (`sim.state()`, the state file).
 * After `close()` it is exact; taken while running, each symbol's `nextTradeId` is a lease past
 * every id the sim can hand out before it saves again, so a crash never makes ids repeat.
 */
export interface SimState {
  readonly format: typeof SIM_STATE_FORMAT;
  /** Wall clock when taken, ms. */
  readonly savedAt: number;
  /** The virtual clock when taken, ms. */
  readonly virtualNow: number;
  /** True when taken after close(): ids are exact, not leased. */
  readonly final: boolean;
  readonly symbols: Readonly<Record<string, SimSymbolState>>;
}

export interface SimSymbolState {
  /** The price the tick and step sizes were derived from (kept, so the resumed market is the same). */
  readonly specPrice: number;
  /** The last trade's price, quote units (for people; the engine resumes from `logFair`). */
  readonly lastPrice: number | null;
  readonly generatedUntil: number;
  readonly logFair: number;
  readonly nextTradeId: number;
  readonly bookUpdateId: number;
  /** 1-minute candles over the history window, as little-endian float64 columns in base64. */
  readonly minutes: { readonly baseOpen: number; readonly length: number; readonly columns: Readonly<Record<MinuteColumn, string>> };
}

export const SIM_STATE_FORMAT = 'tickflow-sim-state/1';

type SimDefaults = Readonly<Required<Omit<SimOptions, 'startPrice' | 'startTime' | 'resume' | 'stateFile'>>> & {
  /** Book update grid (virtual ms); Binance's fast diff stream is 100 ms. */
  readonly bookIntervalMs: number;
  /** Id of the first history trade (Binance's BTCUSDT ids are past 2^32: keep gateways honest). */
  readonly firstTradeId: number;
};

export const SIM_DEFAULTS: SimDefaults = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  seed: 1,
  symbols: Object.freeze(['BTC/USDT', 'ETH/USDT']),
  tradesPerSecond: 5,
  historyDays: 7,
  bookDepth: 100,
  speed: 1,
  tickIntervalMs: 10,
  maxStoredTrades: 2_000_000,
  klinePushIntervalMs: 1000,
  tickerPushIntervalMs: 1000,
  volatility: 1e-4,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxEmittedTickers: 100_000,
  stateSaveIntervalMs: 30_000,
  bookIntervalMs: 100,
  firstTradeId: 3_000_000_000,
});

/** A trade as the sim printed it; numbers are exactly what a client parses from the wire. */
export interface SimTrade {
  readonly symbol: string;
  readonly id: number;
  /** Trade time, ms. */
  readonly timestamp: number;
  readonly price: number;
  /** Base quantity (Binance's `qty`). */
  readonly amount: number;
  /** Taker side. */
  readonly side: 'buy' | 'sell';
  readonly isBuyerMaker: boolean;
}

export interface SimCandle {
  readonly symbol: string;
  readonly timeframe: Interval;
  /** Bucket open, ms. */
  readonly timestamp: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
  readonly volume: number;
  readonly quoteVolume: number;
  readonly trades: number;
  /** False for the bucket still forming. */
  readonly closed: boolean;
}

export interface SimTicker {
  readonly symbol: string;
  /** 'ws': pushed on `@ticker` (every tickerPushIntervalMs, subscribers or not); 'rest': served by `ticker/24hr`. */
  readonly source: 'ws' | 'rest';
  /** Binance's close time `C` of the 24 h window = ccxt's ticker timestamp. */
  readonly timestamp: number;
  readonly bid: number;
  readonly bidVolume: number;
  readonly ask: number;
  readonly askVolume: number;
  readonly last: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly previousClose: number;
  readonly change: number;
  readonly percentage: number;
  readonly vwap: number;
  readonly baseVolume: number;
  readonly quoteVolume: number;
}

export interface SimBook {
  readonly symbol: string;
  readonly nonce: number;
  /** [price, amount], best first. */
  readonly bids: ReadonlyArray<readonly [number, number]>;
  readonly asks: ReadonlyArray<readonly [number, number]>;
}

export interface TradeQuery {
  /** Only trades with id >= fromId. */
  readonly fromId?: number;
  /** Only trades with timestamp >= since. */
  readonly since?: number;
  /** Only trades with timestamp <= until. */
  readonly until?: number;
}

export interface SimEmitted {
  /** Every trade generated (bounded by maxStoredTrades), oldest first; all symbols in symbol order when none is named. */
  trades(symbol?: string, query?: TradeQuery): readonly SimTrade[];
  /** Candles from the sim's start (with `includeHistory`, from the first history bucket); the last one may be forming. */
  candles(symbol: string, timeframe: Interval, opts?: { includeHistory?: boolean }): readonly SimCandle[];
  /** Every full ticker pushed (one per symbol per tickerPushIntervalMs, subscribers or not) or served by REST, oldest first. */
  tickers(symbol?: string, source?: SimTicker['source']): readonly SimTicker[];
}

/**
 * Constructor options for `ccxt.binance` / `ccxt.pro.binance`, plain data (fit for YAML config).
 * The caller must add what cannot be data: `httpAgent: new http.Agent()` — ccxt refuses `ws://`
 * URLs without one (NotSupported) — or call `await exchange.loadHttpProxyAgent()` before watching.
 */
export interface SimCcxtOptions {
  readonly urls: { readonly api: { readonly public: string; readonly ws: { readonly spot: string; readonly margin: string } } };
  readonly options: { readonly fetchMarkets: { readonly types: readonly string[] } };
}

export interface SimStats {
  readonly running: boolean;
  readonly url: string;
  readonly virtualNow: number;
  readonly speed: number;
  readonly tradesPerSecond: number;
  readonly symbols: Readonly<Record<string, { trades: number; lastId: number; storedTrades: number; bid: number; ask: number }>>;
  readonly tradesGenerated: number;
  readonly ticks: number;
  /** Tick processing time, real ms. */
  readonly tickMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Ticks whose processing took longer than the tick interval (the sim falling behind). */
  readonly overrunTicks: number;
  /** Share of wall time the event loop was busy since start (0..1). */
  readonly eventLoopUtilization: number;
  /** Busy and total event-loop time since start, ms: diff two samples for a window's utilization. */
  readonly eventLoop: { readonly busyMs: number; readonly wallMs: number };
  readonly ws: Readonly<Record<string, number>>;
  readonly restRequests: number;
}

export interface Sim {
  start(): Promise<void>;
  close(): Promise<void>;
  readonly port: number;
  /** http://host:port */
  readonly url: string;
  /** ws://host:port */
  readonly wsUrl: string;
  readonly symbols: readonly string[];
  ccxtOptions(): SimCcxtOptions;
  /** The sim's (virtual) clock, ms. */
  now(): number;
  /** Closes every websocket now: 'abrupt' (default) resets the TCP connection (clients see 1006), 'clean' sends close 1001. */
  dropConnections(how?: 'abrupt' | 'clean'): number;
  /** Drops the sockets carrying `channel`'s streams and refuses them ('all': refuses every upgrade) for `ms` real ms; trades keep being generated. */
  pauseStream(channel: PauseTarget, ms: number): void;
  /** REST answers `status` (503 default; 429/418 carry Binance's -1003 body) with Retry-After for `ms` real ms. */
  refuseService(ms: number, status?: number): void;
  setTradeRate(perSecondPerSymbol: number): void;
  orderBook(symbol: string, limit?: number): SimBook;
  readonly emitted: SimEmitted;
  stats(): SimStats;
  /** What a later sim needs to continue this one (`SimOptions.resume`); exact after close(). */
  state(): SimState;
  /** True when this sim continues an earlier one's state. */
  readonly resumed: boolean;
}

interface KlineStreamState {
  readonly engine: SymbolEngine;
  readonly interval: Interval;
  lastOpen: number;
  lastPushAt: number;
}

interface DepthAccumulator {
  U: number;
  u: number;
  readonly bids: Map<number, number>;
  readonly asks: Map<number, number>;
}

interface StreamNames {
  readonly trade: string;
  readonly aggTrade: string;
  readonly depth100: string;
  readonly depth1s: string;
  /** `@depth@1000ms`: what ccxt sends with watchOrderBookRate 1000; same stream as `@depth`. */
  readonly depth1sAlias: string;
  readonly ticker: string;
  readonly miniTicker: string;
  readonly bookTicker: string;
}

function invalid(msg: string): TickflowError {
  return new TickflowError('CONFIG_INVALID', `sim: ${msg}`);
}

function resolveOptions(opts: SimOptions) {
  const o = { ...SIM_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof SIM_DEFAULTS &
    Pick<SimOptions, 'startPrice' | 'startTime' | 'resume' | 'stateFile'>;
  const positive = (name: keyof typeof SIM_DEFAULTS, v: number, allowZero = false): void => {
    if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) throw invalid(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`);
  };
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw invalid(`port must be 0..65535, got ${o.port}`);
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`);
  positive('tradesPerSecond', o.tradesPerSecond, true);
  positive('historyDays', o.historyDays, true);
  positive('bookDepth', o.bookDepth);
  positive('speed', o.speed);
  positive('tickIntervalMs', o.tickIntervalMs);
  positive('maxStoredTrades', o.maxStoredTrades);
  positive('klinePushIntervalMs', o.klinePushIntervalMs);
  positive('tickerPushIntervalMs', o.tickerPushIntervalMs);
  positive('stateSaveIntervalMs', o.stateSaveIntervalMs);
  positive('volatility', o.volatility, true);
  if (o.symbols.length === 0) throw invalid('symbols must not be empty');
  if (new Set(o.symbols).size !== o.symbols.length) throw invalid(`symbols must be unique, got ${o.symbols.join(',')}`);
  for (const s of Object.keys(o.startPrice ?? {})) {
    if (!o.symbols.includes(s)) throw invalid(`startPrice names ${s}, which is not in symbols`);
  }
  return o;
}

export function buildSim(opts: SimOptions = {}): Sim {
  const o = resolveOptions(opts);
  const log = logger('sim');
  const resume = o.resume ?? (o.stateFile ? readSimState(o.stateFile, log) : undefined);
  const saved = (symbol: string): SimSymbolState | undefined => resume?.symbols[symbol];
  const specs = o.symbols.map((s) => marketSpec(s, saved(s)?.specPrice ?? o.startPrice?.[s]));
  if (new Set(specs.map((s) => s.id)).size !== specs.length) throw invalid('two symbols map to the same exchange id');

  let engines: SymbolEngine[] = [];
  const bySymbol = new Map<string, SymbolEngine>();
  const byId = new Map<string, SymbolEngine>();
  const byLid = new Map<string, SymbolEngine>();
  const names = new Map<SymbolEngine, StreamNames>();
  const tickers = new Map<string, SimTicker[]>();
  const klineStreams = new Map<string, KlineStreamState>();
  const depth1s = new Map<SymbolEngine, DepthAccumulator>();
  const partialDepth = new Map<string, { engine: SymbolEngine; levels: number; fast: boolean }>();

  let realStart = 0;
  let virtualStart = 0;
  let server: Server | undefined;
  let timer: NodeJS.Timeout | undefined;
  let port = 0;
  let running = false;
  let closed = false;
  let lastTickerAt = -Infinity;
  let lastDepth1sAt = 0;
  let refuseUntil = 0;
  let refuseStatus = 503;
  let ticks = 0;
  let overrunTicks = 0;
  let maxTickMs = 0;
  const recentTickMs = new Float64Array(1024);
  let restRequests = 0;
  let tradeRate = o.tradesPerSecond;
  let elu0 = performance.eventLoopUtilization();
  let saveTimer: NodeJS.Timeout | undefined;
  let saving: Promise<void> | undefined;
  /** Per engine: ids below this may be handed out before the state file is written again. */
  const leases = new Map<SymbolEngine, number>();
  /** Ids one save interval may use, four times over (a rate change between saves saves early). */
  const leaseSize = (): number => Math.max(10_000, Math.ceil(((tradeRate * o.speed * o.stateSaveIntervalMs) / 1000) * 4));

  const now = (): number => (realStart > 0 ? Math.floor(virtualStart + (Date.now() - realStart) * o.speed) : Date.now());
  const host = o.host;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  const hub = new StreamHub({
    log,
    maxBufferedBytes: o.maxBufferedBytes,
    now: () => Date.now(),
    onStreamActive: (stream, active) => {
      const at = stream.indexOf('@');
      const engine = byLid.get(stream.slice(0, at));
      const kind = stream.slice(at + 1);
      if (!active) {
        klineStreams.delete(stream);
        partialDepth.delete(stream);
        return;
      }
      if (!engine) {
        // Binance accepts subscriptions to unknown streams silently; so do we.
        log.debug({ stream }, 'subscription to a stream the sim does not serve');
        return;
      }
      const kl = /^kline_(\w+)$/.exec(kind);
      if (kl && isInterval(kl[1]!)) {
        const interval = kl[1];
        klineStreams.set(stream, { engine, interval, lastOpen: engine.currentOpen(interval), lastPushAt: -Infinity });
        return;
      }
      const pd = /^depth(5|10|20)(@100ms|@1000ms)?$/.exec(kind);
      if (pd) partialDepth.set(stream, { engine, levels: Number(pd[1]), fast: pd[2] === '@100ms' });
    },
  });

  const engineFor = (symbol: string): SymbolEngine => {
    const e = bySymbol.get(symbol);
    if (!e) throw new TickflowError('SYMBOL_UNKNOWN', `sim: unknown symbol ${symbol} (serving ${o.symbols.join(', ')})`);
    return e;
  };

  function onDiff(e: SymbolEngine, d: BookDiff): void {
    const n = names.get(e)!;
    if (hub.subscribers(n.depth100)) hub.publish(n.depth100, wire.depthDiffEvent(e.spec, d, d.time));
    if (hub.subscribers(n.depth1s) || hub.subscribers(n.depth1sAlias)) {
      let acc = depth1s.get(e);
      if (!acc) {
        acc = { U: d.U, u: d.u, bids: new Map(), asks: new Map() };
        depth1s.set(e, acc);
      }
      acc.u = d.u;
      for (const [p, q] of d.bids) acc.bids.set(p, q);
      for (const [p, q] of d.asks) acc.asks.set(p, q);
    }
    if (hub.subscribers(n.bookTicker)) hub.publish(n.bookTicker, wire.bookTickerEvent(e.spec, d.u, e.bestBid(), e.bestAsk()));
    for (const [stream, p] of partialDepth) {
      if (p.engine === e && p.fast) hub.publish(stream, JSON.stringify(wire.depthSnapshot(e.spec, e.book(p.levels))));
    }
  }

  function fanOutTrades(e: SymbolEngine, from: number, to: number, eventTime: number): void {
    if (from >= to) return;
    const n = names.get(e)!;
    const t = e.trades;
    if (hub.subscribers(n.trade)) for (let id = from; id < to; id++) hub.publish(n.trade, wire.tradeEvent(e.spec, t, id, eventTime));
    if (hub.subscribers(n.aggTrade)) for (let id = from; id < to; id++) hub.publish(n.aggTrade, wire.aggTradeEvent(e.spec, t, id, eventTime));
  }

  function pushKlines(t: number): void {
    for (const [stream, st] of klineStreams) {
      const { engine, interval } = st;
      const cur = engine.currentOpen(interval);
      if (cur > st.lastOpen) {
        for (let open = st.lastOpen; open < cur; open = nextOpen(interval, open)) {
          const k = engine.kline(interval, open);
          if (k) hub.publish(stream, wire.klineEvent(engine.spec, interval, k, true, t));
        }
        st.lastOpen = cur;
      } else if (t - st.lastPushAt < o.klinePushIntervalMs) {
        continue;
      }
      const k = engine.kline(interval, cur);
      if (k) hub.publish(stream, wire.klineEvent(engine.spec, interval, k, false, t));
      st.lastPushAt = t;
    }
  }

  function recordTicker(e: SymbolEngine, s: Stats24h, x: wire.TickerText, source: SimTicker['source']): void {
    const list = tickers.get(e.spec.symbol)!;
    list.push({
      symbol: e.spec.symbol,
      source,
      timestamp: s.closeTime,
      bid: Number(x.bidPrice),
      bidVolume: Number(x.bidQty),
      ask: Number(x.askPrice),
      askVolume: Number(x.askQty),
      last: Number(x.lastPrice),
      open: Number(x.openPrice),
      high: Number(x.highPrice),
      low: Number(x.lowPrice),
      previousClose: Number(x.prevClosePrice),
      change: Number(x.priceChange),
      percentage: Number(x.priceChangePercent),
      vwap: Number(x.weightedAvgPrice),
      baseVolume: Number(x.volume),
      quoteVolume: Number(x.quoteVolume),
    });
    if (list.length > o.maxEmittedTickers * 1.1) list.splice(0, list.length - o.maxEmittedTickers);
  }

  function pushTickers(t: number): void {
    if (t - lastTickerAt < o.tickerPushIntervalMs) return;
    lastTickerAt = t;
    const fullArr: string[] = [];
    const miniArr: string[] = [];
    const wantFullArr = hub.subscribers('!ticker@arr') !== undefined;
    const wantMiniArr = hub.subscribers('!miniTicker@arr') !== undefined;
    for (const e of engines) {
      const s = e.stats24h();
      const x = wire.tickerText(e.spec, s);
      recordTicker(e, s, x, 'ws');
      const n = names.get(e)!;
      if (hub.subscribers(n.ticker) || wantFullArr) {
        const ev = wire.ticker24hEvent(e.spec, s, x, t);
        hub.publish(n.ticker, ev);
        if (wantFullArr) fullArr.push(ev);
      }
      if (hub.subscribers(n.miniTicker) || wantMiniArr) {
        const ev = wire.miniTickerEvent(e.spec, x, t);
        hub.publish(n.miniTicker, ev);
        if (wantMiniArr) miniArr.push(ev);
      }
    }
    if (wantFullArr) hub.publish('!ticker@arr', `[${fullArr.join(',')}]`);
    if (wantMiniArr) hub.publish('!miniTicker@arr', `[${miniArr.join(',')}]`);
  }

  function pushSlowDepth(t: number): void {
    if (t - lastDepth1sAt < 1000) return;
    lastDepth1sAt = t;
    for (const [e, acc] of depth1s) {
      const n = names.get(e)!;
      const d: BookDiff = { time: t, U: acc.U, u: acc.u, bids: [...acc.bids], asks: [...acc.asks] };
      const ev = wire.depthDiffEvent(e.spec, d, t);
      hub.publish(n.depth1s, ev);
      hub.publish(n.depth1sAlias, ev);
    }
    depth1s.clear();
    for (const [stream, p] of partialDepth) {
      if (!p.fast) hub.publish(stream, JSON.stringify(wire.depthSnapshot(p.engine.spec, p.engine.book(p.levels))));
    }
  }

  function tick(): void {
    const started = performance.now();
    const t = now();
    for (const e of engines) {
      const from = e.trades.nextId;
      e.advanceTo(t, (d) => onDiff(e, d));
      fanOutTrades(e, from, e.trades.nextId, t);
    }
    pushKlines(t);
    pushTickers(t);
    pushSlowDepth(t);
    hub.flush();
    if (o.stateFile && !saving) {
      const half = leaseSize() / 2;
      if (engines.some((e) => e.trades.nextId >= (leases.get(e) ?? 0) - half)) saveState();
    }
    const ms = performance.now() - started;
    recentTickMs[ticks % recentTickMs.length] = ms;
    ticks++;
    if (ms > maxTickMs) maxTickMs = ms;
    if (ms > o.tickIntervalMs) overrunTicks++;
  }

  function toTrade(e: SymbolEngine, id: number): SimTrade {
    const t = e.trades;
    const m = t.buyerIsMaker(id);
    return {
      symbol: e.spec.symbol,
      id,
      timestamp: t.time(id),
      price: unitsToNumber(t.price(id), e.spec.tickDecimals),
      amount: unitsToNumber(t.qty(id), e.spec.stepDecimals),
      side: m ? 'sell' : 'buy',
      isBuyerMaker: m,
    };
  }

  const emitted: SimEmitted = {
    trades(symbol, q = {}) {
      const list = symbol === undefined ? engines : [engineFor(symbol)];
      const out: SimTrade[] = [];
      for (const e of list) {
        const t = e.trades;
        let from = Math.max(t.firstId, q.fromId ?? 0);
        if (q.since !== undefined) from = Math.max(from, t.lowerBoundTime(q.since));
        const to = q.until === undefined ? t.nextId : t.upperBoundTime(q.until);
        for (let id = from; id < to; id++) out.push(toTrade(e, id));
      }
      return out;
    },
    candles(symbol, timeframe, opts = {}) {
      if (!isInterval(timeframe)) throw new TickflowError('CHANNEL_UNSUPPORTED', `sim: unknown timeframe ${String(timeframe)}`);
      const e = engineFor(symbol);
      const out: SimCandle[] = [];
      const first = opts.includeHistory ? e.firstOpen(timeframe) : bucketOpen(timeframe, e.startTime);
      const last = e.currentOpen(timeframe);
      for (let open = first; open <= last; open = nextOpen(timeframe, open)) {
        const k = e.kline(timeframe, open);
        if (!k) continue;
        const next = nextOpen(timeframe, open);
        out.push({
          symbol,
          timeframe,
          timestamp: open,
          open: unitsToNumber(k.open, e.spec.tickDecimals),
          high: unitsToNumber(k.high, e.spec.tickDecimals),
          low: unitsToNumber(k.low, e.spec.tickDecimals),
          close: unitsToNumber(k.close, e.spec.tickDecimals),
          volume: unitsToNumber(k.volume, e.spec.stepDecimals),
          quoteVolume: Number(wire.klineText(e.spec, k).q),
          trades: k.trades,
          closed: next <= e.generatedUntil,
        });
      }
      return out;
    },
    tickers(symbol, source) {
      if (symbol !== undefined) engineFor(symbol);
      const all = symbol !== undefined ? (tickers.get(symbol) ?? []) : o.symbols.flatMap((s) => tickers.get(s) ?? []);
      return source === undefined ? [...all] : all.filter((t) => t.source === source);
    },
  };

  const sim: Sim = {
    async start() {
      if (running) return;
      if (closed) throw new TickflowError('INTERNAL', 'sim: a closed sim cannot be restarted; build a new one');
      realStart = Date.now();
      virtualStart = o.startTime ?? realStart;
      const resumeAt = Math.max(-Infinity, ...specs.map((s) => saved(s.symbol)?.generatedUntil ?? -Infinity));
      if (resumeAt > virtualStart) {
        // The clock never runs backwards over what was already served (a faster earlier run).
        log.info({ requested: virtualStart, resumeAt }, 'sim: the saved state is ahead of the start time; the virtual clock continues from it');
        virtualStart = resumeAt;
      }
      engines = specs.map(
        (s) =>
          new SymbolEngine({
            seed: o.seed,
            spec: s,
            tradesPerSecond: tradeRate,
            startTime: virtualStart,
            historyDays: o.historyDays,
            bookDepth: o.bookDepth,
            maxStoredTrades: o.maxStoredTrades,
            volatility: o.volatility,
            bookIntervalMs: SIM_DEFAULTS.bookIntervalMs,
            firstTradeId: SIM_DEFAULTS.firstTradeId,
            resume: engineResume(saved(s.symbol)),
          }),
      );
      for (const e of engines) {
        bySymbol.set(e.spec.symbol, e);
        byId.set(e.spec.id, e);
        byLid.set(e.spec.lid, e);
        tickers.set(e.spec.symbol, []);
        const lid = e.spec.lid;
        names.set(e, {
          trade: `${lid}@trade`,
          aggTrade: `${lid}@aggTrade`,
          depth100: `${lid}@depth@100ms`,
          depth1s: `${lid}@depth`,
          depth1sAlias: `${lid}@depth@1000ms`,
          ticker: `${lid}@ticker`,
          miniTicker: `${lid}@miniTicker`,
          bookTicker: `${lid}@bookTicker`,
        });
      }
      const rest = createRestHandler({
        engines: byId,
        now,
        refusal: () => {
          const left = refuseUntil - Date.now();
          return left > 0 ? { status: refuseStatus, retryAfterS: Math.max(1, Math.ceil(left / 1000)) } : undefined;
        },
        simStats: () => sim.stats(),
        onError: (err, path) => log.error({ err, path }, 'sim REST handler failed'),
        onTicker: (e, s, x) => recordTicker(e, s, x, 'rest'),
      });
      const srv = createServer((req, res) => {
        restRequests++;
        rest(req, res);
      });
      srv.on('upgrade', (req, socket, head) => {
        if (!hub.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
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
      timer = setInterval(tick, o.tickIntervalMs);
      if (o.stateFile) {
        saveState();
        saveTimer = setInterval(saveState, o.stateSaveIntervalMs);
        saveTimer.unref();
      }
      log.info(
        { url: sim.url, symbols: o.symbols, tradesPerSecond: o.tradesPerSecond, seed: o.seed, speed: o.speed, resumedFrom: resume ? resume.virtualNow : undefined },
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
      await hub.close();
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
    symbols: o.symbols,

    ccxtOptions() {
      const ws = `${sim.wsUrl}/stream/ws`; // keep "/stream": ccxt's isSpotUrl() looks for it
      return {
        urls: { api: { public: `${sim.url}/api/v3`, ws: { spot: ws, margin: ws } } },
        options: { fetchMarkets: { types: ['spot'] } },
      };
    },

    now,

    dropConnections(how = 'abrupt') {
      const n = hub.dropAll(how);
      log.info({ connections: n, how }, 'sim dropped all websocket connections');
      return n;
    },

    pauseStream(channel, ms) {
      const n = hub.pause(channel, Date.now() + ms);
      log.info({ channel, ms, dropped: n }, 'sim paused streams');
    },

    refuseService(ms, status = 503) {
      refuseUntil = Date.now() + ms;
      refuseStatus = status;
      log.info({ ms, status }, 'sim refusing REST');
    },

    setTradeRate(rate) {
      if (!Number.isFinite(rate) || rate < 0) throw invalid(`trade rate must be a non-negative number, got ${rate}`);
      const t = now();
      for (const e of engines) e.setRate(rate, t);
      tradeRate = rate;
    },

    orderBook(symbol, limit) {
      const e = engineFor(symbol);
      const b = e.book(limit);
      const conv = (side: ReadonlyArray<readonly [number, number]>) =>
        side.map(([p, q]) => [unitsToNumber(p, e.spec.tickDecimals), unitsToNumber(q, e.spec.stepDecimals)] as const);
      return { symbol, nonce: b.lastUpdateId, bids: conv(b.bids), asks: conv(b.asks) };
    },

    emitted,

    get resumed() {
      return resume !== undefined && o.symbols.some((s) => saved(s) !== undefined);
    },

    state() {
      const symbols: Record<string, SimSymbolState> = {};
      for (const e of engines) {
        let lease = 0;
        if (running) {
          lease = e.trades.nextId + leaseSize();
          leases.set(e, lease);
        }
        const snap = e.snapshot(e.generatedUntil - o.historyDays * 86_400_000, lease);
        const t = e.trades;
        symbols[e.spec.symbol] = {
          specPrice: e.spec.startPrice,
          lastPrice: t.count > 0 ? unitsToNumber(t.price(t.lastId), e.spec.tickDecimals) : null,
          generatedUntil: snap.generatedUntil,
          logFair: snap.logFair,
          nextTradeId: snap.nextTradeId,
          bookUpdateId: snap.bookUpdateId,
          minutes: {
            baseOpen: snap.minutes.baseOpen,
            length: snap.minutes.length,
            columns: Object.fromEntries(MINUTE_COLUMNS.map((k) => [k, encodeColumn(snap.minutes.columns[k])])) as Record<MinuteColumn, string>,
          },
        };
      }
      return { format: SIM_STATE_FORMAT, savedAt: Date.now(), virtualNow: now(), final: !running, symbols };
    },

    stats() {
      const symbols: Record<string, { trades: number; lastId: number; storedTrades: number; bid: number; ask: number }> = {};
      let total = 0;
      for (const e of engines) {
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
      const n = Math.min(ticks, recentTickMs.length);
      const sorted = Array.from(recentTickMs.subarray(0, n)).sort((a, b) => a - b);
      const loop = performance.eventLoopUtilization(elu0);
      const pct = (p: number) => (n === 0 ? 0 : Number(sorted[Math.min(n - 1, Math.floor(p * n))]!.toFixed(3)));
      return {
        running,
        url: sim.url,
        virtualNow: now(),
        speed: o.speed,
        tradesPerSecond: tradeRate,
        symbols,
        tradesGenerated: total,
        ticks,
        tickMs: { p50: pct(0.5), p99: pct(0.99), max: Number(maxTickMs.toFixed(3)) },
        overrunTicks,
        eventLoopUtilization: Number(loop.utilization.toFixed(3)),
        eventLoop: { busyMs: Math.round(loop.active), wallMs: Math.round(loop.active + loop.idle) },
        ws: { ...hub.stats },
        restRequests,
      };
    },
  };

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

function encodeColumn(a: Float64Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

function decodeColumn(s: string, length: number): Float64Array {
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== length * 8) throw new Error(`a column holds ${b.byteLength} bytes, expected ${length * 8}`);
  const out = new Float64Array(length);
  new Uint8Array(out.buffer).set(b);
  return out;
}

function engineResume(s: SimSymbolState | undefined): EngineResume | undefined {
  if (!s) return undefined;
  const columns = Object.fromEntries(MINUTE_COLUMNS.map((k) => [k, decodeColumn(s.minutes.columns[k], s.minutes.length)])) as Record<MinuteColumn, Float64Array>;
  return {
    minutes: { baseOpen: s.minutes.baseOpen, length: s.minutes.length, columns },
    generatedUntil: s.generatedUntil,
    logFair: s.logFair,
    nextTradeId: s.nextTradeId,
    bookUpdateId: s.bookUpdateId,
  };
}

/** Checks a parsed state file enough that resuming from it cannot fail half-way. */
function checkSimState(x: unknown): SimState {
  const st = x as SimState;
  if (!st || typeof st !== 'object' || st.format !== SIM_STATE_FORMAT) throw new Error(`not a ${SIM_STATE_FORMAT} document`);
  if (!Number.isFinite(st.virtualNow) || typeof st.symbols !== 'object' || st.symbols === null) throw new Error('virtualNow or symbols missing');
  for (const [symbol, s] of Object.entries(st.symbols)) {
    const nums = [s.specPrice, s.generatedUntil, s.logFair, s.nextTradeId, s.bookUpdateId, s.minutes?.baseOpen, s.minutes?.length];
    if (!nums.every((n) => typeof n === 'number' && Number.isFinite(n)) || !(s.specPrice > 0)) throw new Error(`${symbol}: a number is missing or invalid`);
    engineResume(s); // decodes every column
  }
  return st;
}

/** Reads a state file; undefined when there is none or it cannot be used (logged). */
function readSimState(file: string, log: ReturnType<typeof logger>): SimState | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err, file }, 'sim: cannot read its saved state; starting afresh');
    return undefined;
  }
  try {
    return checkSimState(JSON.parse(text));
  } catch (err) {
    log.warn({ err, file }, 'sim: its saved state is unusable; starting afresh');
    return undefined;
  }
}

async function writeSimState(file: string, st: SimState): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(st));
  await rename(tmp, file);
}

function writeSimStateSync(file: string, st: SimState): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st));
  renameSync(tmp, file);
}
