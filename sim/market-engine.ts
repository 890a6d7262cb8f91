/**
 * The one deterministic market under every dialect: a SymbolEngine per symbol, the virtual clock,
 * the tick that advances them, what was emitted (the truth tests compare with) and the saved state.
 * It knows no wire format: each tick it hands the new trades, book diffs and tickers to its
 * listeners (the dialects), which print them in their exchange's format.
 *
 * Flow: a timer tick advances each symbol's engine to "now", which prints every trade whose
 * Poisson arrival time has passed (timestamps spread inside the tick, never one timer per trade)
 * and moves the order book on a 100 ms grid; then every `tickerPushIntervalMs` a 24 h ticker per
 * symbol is taken (whether anyone subscribed or not), then the listeners' per-tick work runs.
 */
import { performance } from 'node:perf_hooks';
import { TickflowError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { type Interval, MINUTE_COLUMNS, type MinuteColumn, bucketOpen, isInterval, nextOpen } from './candles.ts';
import { type BookDiff, type EngineResume, type Stats24h, SymbolEngine } from './engine.ts';
import { type MarketSpec, fmtFloat, fmtUnits, marketSpec, unitsToNumber } from './market.ts';
import { type ResolvedOptions, SIM_DEFAULTS, rateWeights } from './options.ts';
import { deriveSeed } from './rng.ts';
import { SIM_STATE_FORMAT, type SimState, type SimSymbolState, encodeColumn, engineResume } from './state.ts';
import type { SimBook, SimCandle, SimEmitted, SimEmittedCounts, SimTicker, SimTrade } from './types.ts';

/** The 24 h ticker's numbers as text (exact: `Number(text)` is what a client parses), taken once per push. */
export interface TickerText {
  readonly priceChange: string;
  readonly priceChangePercent: string;
  readonly weightedAvgPrice: string;
  readonly prevClosePrice: string;
  readonly lastPrice: string;
  readonly lastQty: string;
  readonly bidPrice: string;
  readonly bidQty: string;
  readonly askPrice: string;
  readonly askQty: string;
  readonly openPrice: string;
  readonly highPrice: string;
  readonly lowPrice: string;
  readonly volume: string;
  readonly quoteVolume: string;
}

export function tickerText(spec: MarketSpec, s: Stats24h): TickerText {
  const price = (ticks: number) => fmtUnits(ticks, spec.tickDecimals);
  const qty = (steps: number) => fmtUnits(steps, spec.stepDecimals);
  const pct = s.open > 0 ? ((s.last - s.open) / s.open) * 100 : 0;
  const vwap = s.volume > 0 ? s.quoteVolume / (s.volume * spec.step) : 0;
  return {
    priceChange: price(s.last - s.open),
    priceChangePercent: pct.toFixed(3),
    weightedAvgPrice: fmtFloat(vwap),
    prevClosePrice: price(s.prevClose),
    lastPrice: price(s.last),
    lastQty: qty(s.lastQty),
    bidPrice: price(s.bid),
    bidQty: qty(s.bidQty),
    askPrice: price(s.ask),
    askQty: qty(s.askQty),
    openPrice: price(s.open),
    highPrice: price(s.high),
    lowPrice: price(s.low),
    volume: qty(s.volume),
    quoteVolume: fmtFloat(s.quoteVolume),
  };
}

/** One ticker as taken: the engine's statistics and their text. */
export interface TickerView {
  readonly engine: SymbolEngine;
  readonly stats: Stats24h;
  readonly text: TickerText;
}

/** What a dialect hears from the engine each tick, in this order. */
export interface EngineListener {
  /** A book diff (100 ms grid), in order, interleaved with trade generation. */
  onBookDiff?(e: SymbolEngine, d: BookDiff): void;
  /** Trades with ids in [from, to) were printed this tick; `eventTime` = the tick's virtual time. */
  onTrades?(e: SymbolEngine, from: number, to: number, eventTime: number): void;
  /** Every `tickerPushIntervalMs`: one ticker per symbol, in symbol order (past 100 symbols, in slices over the interval's ticks). */
  onTickers?(t: number, tickers: readonly TickerView[]): void;
  /** Last: per-tick work (candle updates, slow books), then flushing sockets. */
  onTick?(t: number): void;
  /** Markets were listed (`added`) or delisted (`removed`) at runtime: serve them, or stop. */
  onMarkets?(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void;
}

/** A market to list at runtime (`POST /__sim/markets`). */
export interface MarketListing {
  readonly symbol: string;
  /** Start price; default: the symbol's usual level (see market.ts), else 100. */
  readonly startPrice?: number;
  /** Its trade rate; default: the rate of the last rank under `rateSkew` (the long tail), else `tradesPerSecond`. */
  readonly tradesPerSecond?: number;
}

/** Above this many symbols, tickers are taken spread over the push interval and book grids are offset, not all in one tick. */
const STAGGER_TICKERS_ABOVE = 100;

export class MarketEngine {
  private readonly o: ResolvedOptions;
  readonly specs: readonly MarketSpec[];
  private readonly resume: SimState | undefined;
  private readonly log: Logger;
  engines: SymbolEngine[] = [];
  readonly tradeRate: { value: number };
  private readonly bySymbol = new Map<string, SymbolEngine>();
  /** Delisted markets: no longer traded or served, still in `emitted` (the truth of what they sent). */
  private readonly retired = new Map<string, SymbolEngine>();
  /** Per engine: its rate relative to `tradeRate` (Zipf by rank under `rateSkew`, else 1). */
  private readonly weights = new Map<SymbolEngine, number>();
  /** Weight of a market listed at runtime without a rate: the last rank's. */
  private tailWeight = 1;
  private readonly tickers = new Map<string, SimTicker[]>();
  /** Per symbol: tickers taken on the push cadence, ever (`emitted.counts`). */
  private readonly wsTickers = new Map<string, number>();
  private readonly listeners: EngineListener[] = [];
  private realStart = 0;
  private virtualStart = 0;
  private lastTickerAt = -Infinity;
  /** Past 100 symbols: the next symbol whose ticker this interval still owes. */
  private tickerCursor = Infinity;
  ticks = 0;
  overrunTicks = 0;
  maxTickMs = 0;
  readonly recentTickMs = new Float64Array(1024);
  /** Per engine: ids below this may be handed out before the state file is written again. */
  private readonly leases = new Map<SymbolEngine, number>();

  constructor(o: ResolvedOptions, specs: readonly MarketSpec[], resume: SimState | undefined, log: Logger) {
    this.o = o;
    this.specs = specs;
    this.resume = resume;
    this.log = log;
    this.tradeRate = { value: o.tradesPerSecond };
  }

  listen(l: EngineListener): void {
    this.listeners.push(l);
  }

  private saved(symbol: string): SimSymbolState | undefined {
    return this.resume?.symbols[symbol];
  }

  /** True when this engine continues an earlier one's state. */
  get resumed(): boolean {
    return this.resume !== undefined && this.o.symbols.some((s) => this.saved(s) !== undefined);
  }

  /** Builds the symbols' engines; the virtual clock starts now (or at `startTime`, never behind the saved state). */
  start(): void {
    this.realStart = Date.now();
    this.virtualStart = this.o.startTime ?? this.realStart;
    const resumeAt = Math.max(-Infinity, ...this.specs.map((s) => this.saved(s.symbol)?.generatedUntil ?? -Infinity));
    if (resumeAt > this.virtualStart) {
      // The clock never runs backwards over what was already served (a faster earlier run).
      this.log.info({ requested: this.virtualStart, resumeAt }, 'sim: the saved state is ahead of the start time; the virtual clock continues from it');
      this.virtualStart = resumeAt;
    }
    const w = rateWeights(this.specs.length, this.o.rateSkew);
    this.tailWeight = w[w.length - 1] ?? 1;
    const n = this.specs.length;
    this.engines = this.specs.map((s, i) => this.newEngine(s, w[i]!, this.virtualStart, this.o.historyDays, engineResume(this.saved(s.symbol)), n > STAGGER_TICKERS_ABOVE ? i / n : 0));
    for (const e of this.engines) {
      this.bySymbol.set(e.spec.symbol, e);
      this.tickers.set(e.spec.symbol, []);
    }
  }

  /** `phase` in [0, 1): where in the book interval this symbol's book moves. */
  private newEngine(spec: MarketSpec, weight: number, startTime: number, historyDays: number, resume: EngineResume | undefined, phase = 0): SymbolEngine {
    const e = new SymbolEngine({
      seed: this.o.seed,
      spec,
      tradesPerSecond: this.tradeRate.value * weight,
      startTime,
      historyDays,
      bookDepth: this.o.bookDepth,
      maxStoredTrades: this.o.maxStoredTrades,
      volatility: this.o.volatility,
      bookIntervalMs: SIM_DEFAULTS.bookIntervalMs,
      bookPhaseMs: Math.floor(phase * SIM_DEFAULTS.bookIntervalMs),
      firstTradeId: SIM_DEFAULTS.firstTradeId,
      resume,
    });
    this.weights.set(e, weight);
    return e;
  }

  /** The symbols served now, in rank order. */
  get symbols(): string[] {
    return this.engines.map((e) => e.spec.symbol);
  }

  /**
   * Lists and delists markets at runtime. A listed symbol trades from now on (no history, as a
   * new listing; one delisted earlier continues from where it stopped, like a restart), its
   * markets endpoint lists it, its streams run; a delisted one stops trading and streaming at
   * once and leaves the markets endpoint, but stays in `emitted`. Unknown removals and duplicate
   * additions are errors naming the symbol; nothing changes then.
   */
  changeMarkets(add: readonly MarketListing[], remove: readonly string[]): { added: string[]; removed: string[] } {
    const adding = new Set<string>();
    for (const l of add) {
      if (this.bySymbol.has(l.symbol) && !remove.includes(l.symbol)) throw new TickflowError('CONFIG_INVALID', `sim: ${l.symbol} is already listed`);
      if (adding.has(l.symbol)) throw new TickflowError('CONFIG_INVALID', `sim: ${l.symbol} is listed twice in one request`);
      if (l.tradesPerSecond !== undefined && !(l.tradesPerSecond >= 0)) throw new TickflowError('CONFIG_INVALID', `sim: tradesPerSecond of ${l.symbol} must be a non-negative number`);
      adding.add(l.symbol);
    }
    for (const s of remove) if (!this.bySymbol.has(s)) throw new TickflowError('SYMBOL_UNKNOWN', `sim: cannot delist ${s}: it is not listed`);
    const specs = add.map((l) => marketSpec(l.symbol, l.startPrice ?? this.retired.get(l.symbol)?.spec.startPrice));
    const ids = new Set(this.engines.filter((e) => !remove.includes(e.spec.symbol)).map((e) => e.spec.id));
    for (const sp of specs) {
      if (ids.has(sp.id)) throw new TickflowError('CONFIG_INVALID', `sim: ${sp.symbol} maps to the exchange id ${sp.id} of a listed market`);
      ids.add(sp.id);
    }
    const t = this.now();
    const removed: SymbolEngine[] = [];
    for (const s of remove) {
      const e = this.bySymbol.get(s)!;
      // Not advanced to `t`: what the last tick sent is all it ever printed.
      this.bySymbol.delete(s);
      this.retired.set(s, e);
      removed.push(e);
    }
    if (removed.length > 0) this.engines = this.engines.filter((e) => !removed.includes(e));
    const added = specs.map((spec, i) => {
      const l = add[i]!;
      const old = this.retired.get(spec.symbol);
      const weight = l.tradesPerSecond !== undefined ? (this.tradeRate.value > 0 ? l.tradesPerSecond / this.tradeRate.value : 0) : old ? (this.weights.get(old) ?? this.tailWeight) : this.tailWeight;
      const from = old ? Math.max(t, old.generatedUntil) : t;
      const e = this.newEngine(spec, weight, from, 0, old?.snapshot(from - this.o.historyDays * 86_400_000), this.engines.length > STAGGER_TICKERS_ABOVE ? (deriveSeed(this.o.seed, `${spec.symbol}:phase`) % 1000) / 1000 : 0);
      if (l.tradesPerSecond !== undefined && this.tradeRate.value === 0) e.setRate(l.tradesPerSecond, from);
      this.retired.delete(spec.symbol);
      this.bySymbol.set(spec.symbol, e);
      if (!this.tickers.has(spec.symbol)) this.tickers.set(spec.symbol, []);
      this.engines.push(e);
      return e;
    });
    for (const l of this.listeners) l.onMarkets?.(added, removed);
    this.log.info({ added: add.map((l) => l.symbol), removed: remove, markets: this.engines.length }, 'sim markets changed');
    return { added: added.map((e) => e.spec.symbol), removed: removed.map((e) => e.spec.symbol) };
  }

  /** The virtual clock, ms. */
  now(): number {
    return this.realStart > 0 ? Math.floor(this.virtualStart + (Date.now() - this.realStart) * this.o.speed) : Date.now();
  }

  /** A listed market's engine; with `retired`, a delisted one's too (what it emitted stays the truth). */
  engineFor(symbol: string, retired = false): SymbolEngine {
    const e = this.bySymbol.get(symbol) ?? (retired ? this.retired.get(symbol) : undefined);
    if (!e) {
      const n = this.engines.length;
      const list = n > 20 ? `${this.symbols.slice(0, 20).join(', ')} and ${n - 20} more` : this.symbols.join(', ');
      throw new TickflowError('SYMBOL_UNKNOWN', `sim: unknown symbol ${symbol} (serving ${list})`);
    }
    return e;
  }

  tick(): void {
    const started = performance.now();
    const t = this.now();
    const ls = this.listeners;
    for (const e of this.engines) {
      const from = e.trades.nextId;
      e.advanceTo(t, (d) => {
        for (const l of ls) l.onBookDiff?.(e, d);
      });
      const to = e.trades.nextId;
      if (from < to) for (const l of ls) l.onTrades?.(e, from, to, t);
    }
    const n = this.engines.length;
    if (n <= STAGGER_TICKERS_ABOVE) {
      if (t - this.lastTickerAt >= this.o.tickerPushIntervalMs) {
        this.lastTickerAt = t;
        const views = this.engines.map((e) => this.takeTicker(e, 'ws'));
        for (const l of ls) l.onTickers?.(t, views);
      }
    } else {
      // Many symbols: each interval's tickers spread over its ticks in symbol order (a thousand
      // 24 h windows at once would stall one tick), every symbol still once per interval.
      if (this.tickerCursor >= n && t - this.lastTickerAt >= this.o.tickerPushIntervalMs) {
        this.lastTickerAt = t;
        this.tickerCursor = 0;
      }
      const due = Math.min(n, Math.ceil(((t - this.lastTickerAt + this.o.tickIntervalMs * this.o.speed) / this.o.tickerPushIntervalMs) * n));
      if (due > this.tickerCursor) {
        const views = this.engines.slice(this.tickerCursor, due).map((e) => this.takeTicker(e, 'ws'));
        this.tickerCursor = due;
        for (const l of ls) l.onTickers?.(t, views);
      }
    }
    for (const l of ls) l.onTick?.(t);
    const ms = performance.now() - started;
    this.recentTickMs[this.ticks % this.recentTickMs.length] = ms;
    this.ticks++;
    if (ms > this.maxTickMs) this.maxTickMs = ms;
    if (ms > this.o.tickIntervalMs) this.overrunTicks++;
  }

  /**
   * The 24 h ticker of `e` now, recorded in `emitted.tickers` under `source`: 'ws' for the pushed
   * ones (the engine's cadence), 'rest' for each full ticker a dialect serves over REST.
   */
  takeTicker(e: SymbolEngine, source: SimTicker['source']): TickerView {
    const s = e.stats24h();
    const x = tickerText(e.spec, s);
    const list = this.tickers.get(e.spec.symbol)!;
    if (source === 'ws') this.wsTickers.set(e.spec.symbol, (this.wsTickers.get(e.spec.symbol) ?? 0) + 1);
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
    if (list.length > this.o.maxEmittedTickers * 1.1) list.splice(0, list.length - this.o.maxEmittedTickers);
    return { engine: e, stats: s, text: x };
  }

  setTradeRate(rate: number): void {
    const t = this.now();
    for (const e of this.engines) e.setRate(rate * (this.weights.get(e) ?? 1), t);
    this.tradeRate.value = rate;
  }

  orderBook(symbol: string, limit?: number): SimBook {
    const e = this.engineFor(symbol);
    const b = e.book(limit);
    const conv = (side: ReadonlyArray<readonly [number, number]>) =>
      side.map(([p, q]) => [unitsToNumber(p, e.spec.tickDecimals), unitsToNumber(q, e.spec.stepDecimals)] as const);
    return { symbol, nonce: b.lastUpdateId, bids: conv(b.bids), asks: conv(b.asks) };
  }

  toTrade(e: SymbolEngine, id: number): SimTrade {
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

  readonly emitted: SimEmitted = {
    trades: (symbol, q = {}) => {
      const list = symbol === undefined ? [...this.engines, ...this.retired.values()] : [this.engineFor(symbol, true)];
      const out: SimTrade[] = [];
      for (const e of list) {
        const t = e.trades;
        let from = Math.max(t.firstId, q.fromId ?? 0);
        if (q.since !== undefined) from = Math.max(from, t.lowerBoundTime(q.since));
        const to = q.until === undefined ? t.nextId : t.upperBoundTime(q.until);
        for (let id = from; id < to; id++) out.push(this.toTrade(e, id));
      }
      return out;
    },
    candles: (symbol, timeframe, opts = {}) => {
      if (!isInterval(timeframe)) throw new TickflowError('CHANNEL_UNSUPPORTED', `sim: unknown timeframe ${String(timeframe)}`);
      const e = this.engineFor(symbol, true);
      const out: SimCandle[] = [];
      const first = opts.includeHistory ? e.firstOpen(timeframe) : bucketOpen(timeframe, e.startTime);
      const last = e.currentOpen(timeframe);
      for (let open = first; open <= last; open = nextOpen(timeframe, open)) {
        const c = candleOf(e, timeframe, open);
        if (c) out.push(c);
      }
      return out;
    },
    tickers: (symbol, source) => {
      if (symbol !== undefined) this.engineFor(symbol, true);
      const all = symbol !== undefined ? (this.tickers.get(symbol) ?? []) : [...this.tickers.values()].flat();
      return source === undefined ? [...all] : all.filter((t) => t.source === source);
    },
    counts: () => {
      const out: Record<string, SimEmittedCounts> = {};
      const put = (e: SymbolEngine, listed: boolean): void => {
        const tickers = this.wsTickers.get(e.spec.symbol) ?? 0;
        out[e.spec.symbol] = { listed, firstLiveId: e.firstLiveId, nextId: e.trades.nextId, storedFromId: e.trades.firstId, until: e.generatedUntil, tickers, tradesPerSecond: e.rate };
      };
      for (const e of this.engines) put(e, true);
      for (const e of this.retired.values()) put(e, false);
      return out;
    },
  };

  /** Ids one save interval may use, four times over (a rate change between saves saves early). */
  private leaseSize(): number {
    return Math.max(10_000, Math.ceil(((this.tradeRate.value * this.o.speed * this.o.stateSaveIntervalMs) / 1000) * 4));
  }

  /** True when some symbol has used half the ids leased at the last save (save early). */
  leaseRunningLow(): boolean {
    const half = this.leaseSize() / 2;
    return this.engines.some((e) => e.trades.nextId >= (this.leases.get(e) ?? 0) - half);
  }

  /** The state a later sim continues from; `running` leases ids ahead (see SimState). */
  state(running: boolean): SimState {
    const symbols: Record<string, SimSymbolState> = {};
    for (const e of this.engines) {
      let lease = 0;
      if (running) {
        lease = e.trades.nextId + this.leaseSize();
        this.leases.set(e, lease);
      }
      const snap = e.snapshot(e.generatedUntil - this.o.historyDays * 86_400_000, lease);
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
    return { format: SIM_STATE_FORMAT, savedAt: Date.now(), virtualNow: this.now(), final: !running, symbols };
  }
}

/** The candle of `timeframe` opening at `open`, as a client parses it. */
export function candleOf(e: SymbolEngine, timeframe: Interval, open: number): SimCandle | undefined {
  const k = e.kline(timeframe, open);
  if (!k) return undefined;
  return {
    symbol: e.spec.symbol,
    timeframe,
    timestamp: open,
    open: unitsToNumber(k.open, e.spec.tickDecimals),
    high: unitsToNumber(k.high, e.spec.tickDecimals),
    low: unitsToNumber(k.low, e.spec.tickDecimals),
    close: unitsToNumber(k.close, e.spec.tickDecimals),
    volume: unitsToNumber(k.volume, e.spec.stepDecimals),
    quoteVolume: Number(fmtFloat(k.quoteVolume)),
    trades: k.trades,
    closed: nextOpen(timeframe, open) <= e.generatedUntil,
  };
}
