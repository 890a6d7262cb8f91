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
import { type BookDiff, type Stats24h, SymbolEngine } from './engine.ts';
import { type MarketSpec, fmtFloat, fmtUnits, unitsToNumber } from './market.ts';
import type { ResolvedOptions } from './options.ts';
import { SIM_DEFAULTS } from './options.ts';
import { SIM_STATE_FORMAT, type SimState, type SimSymbolState, encodeColumn, engineResume } from './state.ts';
import type { SimBook, SimCandle, SimEmitted, SimTicker, SimTrade } from './types.ts';

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
  /** Every `tickerPushIntervalMs`: one ticker per symbol, in symbol order. */
  onTickers?(t: number, tickers: readonly TickerView[]): void;
  /** Last: per-tick work (candle updates, slow books), then flushing sockets. */
  onTick?(t: number): void;
}

export class MarketEngine {
  engines: SymbolEngine[] = [];
  readonly tradeRate: { value: number };
  private readonly bySymbol = new Map<string, SymbolEngine>();
  private readonly tickers = new Map<string, SimTicker[]>();
  private readonly listeners: EngineListener[] = [];
  private realStart = 0;
  private virtualStart = 0;
  private lastTickerAt = -Infinity;
  ticks = 0;
  overrunTicks = 0;
  maxTickMs = 0;
  readonly recentTickMs = new Float64Array(1024);
  /** Per engine: ids below this may be handed out before the state file is written again. */
  private readonly leases = new Map<SymbolEngine, number>();

  constructor(
    private readonly o: ResolvedOptions,
    readonly specs: readonly MarketSpec[],
    private readonly resume: SimState | undefined,
    private readonly log: Logger,
  ) {
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
    this.engines = this.specs.map(
      (s) =>
        new SymbolEngine({
          seed: this.o.seed,
          spec: s,
          tradesPerSecond: this.tradeRate.value,
          startTime: this.virtualStart,
          historyDays: this.o.historyDays,
          bookDepth: this.o.bookDepth,
          maxStoredTrades: this.o.maxStoredTrades,
          volatility: this.o.volatility,
          bookIntervalMs: SIM_DEFAULTS.bookIntervalMs,
          firstTradeId: SIM_DEFAULTS.firstTradeId,
          resume: engineResume(this.saved(s.symbol)),
        }),
    );
    for (const e of this.engines) {
      this.bySymbol.set(e.spec.symbol, e);
      this.tickers.set(e.spec.symbol, []);
    }
  }

  /** The virtual clock, ms. */
  now(): number {
    return this.realStart > 0 ? Math.floor(this.virtualStart + (Date.now() - this.realStart) * this.o.speed) : Date.now();
  }

  engineFor(symbol: string): SymbolEngine {
    const e = this.bySymbol.get(symbol);
    if (!e) throw new TickflowError('SYMBOL_UNKNOWN', `sim: unknown symbol ${symbol} (serving ${this.o.symbols.join(', ')})`);
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
    if (t - this.lastTickerAt >= this.o.tickerPushIntervalMs) {
      this.lastTickerAt = t;
      const views = this.engines.map((e) => this.takeTicker(e, 'ws'));
      for (const l of ls) l.onTickers?.(t, views);
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
    for (const e of this.engines) e.setRate(rate, t);
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
      const list = symbol === undefined ? this.engines : [this.engineFor(symbol)];
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
      const e = this.engineFor(symbol);
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
      if (symbol !== undefined) this.engineFor(symbol);
      const all = symbol !== undefined ? (this.tickers.get(symbol) ?? []) : this.o.symbols.flatMap((s) => this.tickers.get(s) ?? []);
      return source === undefined ? [...all] : all.filter((t) => t.source === source);
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
