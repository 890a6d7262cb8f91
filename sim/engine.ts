import { MinuteCandles, type Kline, type MinuteRun, type Interval, bucketOpen, nextOpen } from './candles.ts';
import type { MarketSpec } from './market.ts';
import { Rng, deriveSeed } from './rng.ts';
import { TradeStore, chunkBitsFor } from './trades.ts';

/**
 * The market of one symbol: a seeded price process, the trades it prints, the 1-minute candles
 * they build, and an order book around the current quote. Time is passed in (`advanceTo`), never
 * read from a clock, so the same seed and the same start time give the same trades — whatever the
 * timer jitter — which is what makes the sim usable as a test fixture.
 *
 * Prices are integers in ticks, quantities integers in steps (see MarketSpec).
 */
export interface EngineOptions {
  readonly seed: number;
  readonly spec: MarketSpec;
  /** Poisson arrival rate of trades, per (virtual) second. */
  readonly tradesPerSecond: number;
  /** Virtual time at which live trading starts; history ends at this minute's open. */
  readonly startTime: number;
  readonly historyDays: number;
  readonly bookDepth: number;
  readonly maxStoredTrades: number;
  /** Log-price volatility per square-root second (1e-4 ≈ BTC on a normal day). */
  readonly volatility: number;
  readonly bookIntervalMs: number;
  /** Offset of this symbol's book grid in the interval (ms, default 0): many symbols don't all move at once. */
  readonly bookPhaseMs?: number;
  /** Id of the first (history) trade; Binance's BTCUSDT ids are past 2^32 already. */
  readonly firstTradeId: number;
  /** Continue an earlier engine of the same symbol (its `snapshot`) instead of starting afresh. */
  readonly resume?: EngineResume;
}

/** An engine's state for a later one to continue from (see `SymbolEngine.snapshot`). */
export interface EngineResume {
  /** The 1-minute candles it served, oldest first; the last one may be partial. */
  readonly minutes: MinuteRun;
  /** Virtual time its trades were complete up to. */
  readonly generatedUntil: number;
  /** Log of its fair price (quote units). */
  readonly logFair: number;
  /** The first trade id the next run may use. */
  readonly nextTradeId: number;
  /** Its order book's last update id (Binance's `u`). */
  readonly bookUpdateId: number;
}

export interface BookDiff {
  /** Virtual time of the book change. */
  readonly time: number;
  /** First and last update id in this diff (Binance's U and u). */
  readonly U: number;
  readonly u: number;
  /** [priceTicks, qtySteps], qty 0 = level removed. */
  readonly bids: ReadonlyArray<readonly [number, number]>;
  readonly asks: ReadonlyArray<readonly [number, number]>;
}

export interface BookSnapshot {
  readonly lastUpdateId: number;
  readonly bids: ReadonlyArray<readonly [number, number]>;
  readonly asks: ReadonlyArray<readonly [number, number]>;
}

/** Rolling 24 h statistics at minute granularity (Binance's are to the millisecond). */
export interface Stats24h {
  readonly openTime: number;
  readonly closeTime: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly last: number;
  readonly lastQty: number;
  readonly prevClose: number;
  readonly volume: number;
  readonly quoteVolume: number;
  readonly firstId: number;
  readonly lastId: number;
  readonly count: number;
  readonly bid: number;
  readonly bidQty: number;
  readonly ask: number;
  readonly askQty: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
/** Median trade notional, quote units; log-normal with this sigma. */
const TRADE_NOTIONAL = 300;
const TRADE_NOTIONAL_SIGMA = 1.2;
const LEVEL_NOTIONAL = 3_000;

export class SymbolEngine {
  readonly spec: MarketSpec;
  readonly trades: TradeStore;
  readonly minutes: MinuteCandles;
  readonly startTime: number;
  /** Id of the first live trade (history candles account for the ids before it). */
  readonly firstLiveId: number;
  /** Trades are complete up to (and including) this virtual time. */
  generatedUntil: number;
  rate: number;
  bid = 0;
  ask = 0;
  private readonly rng: Rng;
  private readonly bookRng: Rng;
  private readonly sigma: number;
  private logFair: number;
  private lastArrival: number;
  private nextArrival: number;
  private readonly bids = new Map<number, number>();
  private readonly asks = new Map<number, number>();
  /** The levels each side wants for the best price it was last synced to. */
  private readonly bidGrid = { best: NaN, want: [] as number[] };
  private readonly askGrid = { best: NaN, want: [] as number[] };
  private lastUpdateId: number;
  private nextBookAt: number;
  private readonly bookIntervalMs: number;
  private readonly bookDepth: number;
  /** Book levels sit on a grid of this many ticks (plus the best level itself). */
  private readonly gap: number;

  constructor(o: EngineOptions) {
    const r = o.resume;
    if (r && o.startTime < r.generatedUntil) {
      throw new RangeError(`sim: ${o.spec.symbol} cannot resume at ${o.startTime}, before the saved state's end ${r.generatedUntil}`);
    }
    this.spec = o.spec;
    this.startTime = o.startTime;
    this.rate = Math.max(0, o.tradesPerSecond);
    this.sigma = o.volatility;
    this.bookIntervalMs = o.bookIntervalMs;
    this.bookDepth = Math.max(1, o.bookDepth);
    // A resumed run draws fresh random streams (labelled by where it resumes), else its path
    // would repeat the shape of the first run's from a new level.
    const label = r ? `:${r.nextTradeId}` : '';
    this.rng = new Rng(deriveSeed(o.seed, `${o.spec.symbol}:trades${label}`));
    this.bookRng = new Rng(deriveSeed(o.seed, `${o.spec.symbol}:book${label}`));
    this.gap = Math.max(1, Math.round((o.spec.startPrice * 2e-5) / o.spec.tick));
    this.lastUpdateId = r ? r.bookUpdateId : 1_000_000 + Math.floor(this.bookRng.next() * 1_000_000);

    const startMinute = Math.floor(o.startTime / MINUTE) * MINUTE;
    const historyMinutes = Math.max(0, Math.round(o.historyDays * 1440));
    // Room for the history and an hour; it grows by doubling (a thousand symbols must not each take a week ahead).
    this.minutes = new MinuteCandles(startMinute - historyMinutes * MINUTE, historyMinutes + 60);
    let firstLiveId: number;
    if (r) {
      const resumed = this.continueFrom(o, r, startMinute);
      firstLiveId = resumed.nextId;
      this.logFair = resumed.logFair;
    } else {
      firstLiveId = this.buildHistory(o, historyMinutes);
      this.logFair = Math.log(o.spec.startPrice);
    }
    this.firstLiveId = firstLiveId;
    this.trades = new TradeStore(firstLiveId, o.maxStoredTrades, chunkBitsFor(o.tradesPerSecond));

    this.requote();
    this.lastArrival = o.startTime;
    this.nextArrival = this.rate > 0 ? o.startTime + (this.rng.exp() * 1000) / this.rate : Infinity;
    this.generatedUntil = o.startTime;
    this.minutes.ensure(this.minutes.indexOf(o.startTime), this.bid);
    this.updateBook(o.startTime);
    this.nextBookAt = o.startTime + this.bookIntervalMs + (o.bookPhaseMs ?? 0);
  }

  /**
   * What a later engine needs to continue this one (`EngineOptions.resume`): the minutes from
   * `since` on, the price, the book's update id, and the next trade id — or `idLease` when that
   * is higher (ids the running sim may still hand out before its state is saved again).
   */
  snapshot(since: number, idLease = 0): EngineResume {
    return {
      minutes: this.minutes.slice(this.minutes.indexOf(since), this.minutes.length),
      generatedUntil: this.generatedUntil,
      logFair: this.logFair,
      nextTradeId: Math.max(this.trades.nextId, idLease),
      bookUpdateId: this.lastUpdateId,
    };
  }

  /** Changes the arrival rate from `now` on (the next arrival is drawn anew). */
  setRate(rate: number, now: number): void {
    this.rate = Math.max(0, rate);
    const from = Math.max(now, this.generatedUntil);
    this.nextArrival = this.rate > 0 ? from + (this.rng.exp() * 1000) / this.rate : Infinity;
  }

  /** Generates every trade and book change up to `now`; book diffs go to `onDiff` in order. */
  advanceTo(now: number, onDiff?: (d: BookDiff) => void): void {
    if (now <= this.generatedUntil) return;
    while (this.nextBookAt <= now) {
      this.generate(this.nextBookAt);
      const d = this.updateBook(this.nextBookAt);
      if (d && onDiff) onDiff(d);
      this.nextBookAt += this.bookIntervalMs;
    }
    this.generate(now);
  }

  private generate(until: number): void {
    const rng = this.rng;
    const spec = this.spec;
    const tick = spec.tick;
    const step = spec.step;
    const minutes = this.minutes;
    const trades = this.trades;
    let minuteIdx = minutes.length - 1;
    let minuteEnd = minutes.baseOpen + (minuteIdx + 1) * MINUTE;
    while (this.nextArrival <= until) {
      const at = this.nextArrival;
      const dt = (at - this.lastArrival) / 1000;
      this.lastArrival = at;
      if (dt > 0) this.logFair += this.sigma * Math.sqrt(dt) * rng.normal();
      this.requote();
      const buyerIsMaker = rng.next() < 0.5; // the taker sold into the bid
      const price = buyerIsMaker ? this.bid : this.ask;
      const notional = TRADE_NOTIONAL * Math.exp(TRADE_NOTIONAL_SIGMA * rng.normal());
      const qty = Math.max(spec.minQtySteps, Math.round(notional / (price * tick) / step));
      const time = Math.floor(at);
      const id = trades.push(time, price, qty, buyerIsMaker);
      if (time >= minuteEnd) {
        minuteIdx = minutes.indexOf(time);
        minutes.ensure(minuteIdx, price);
        minuteEnd = minutes.baseOpen + (minuteIdx + 1) * MINUTE;
      }
      minutes.addTrade(minuteIdx, price, qty, price * tick * qty * step, !buyerIsMaker, id);
      this.nextArrival = at + (rng.exp() * 1000) / this.rate;
    }
    if (until > this.generatedUntil) this.generatedUntil = until;
    minutes.ensure(minutes.indexOf(this.generatedUntil), this.bid);
  }

  private requote(): void {
    const fairTicks = Math.exp(this.logFair) / this.spec.tick;
    const spread = this.rng.next() < 0.2 ? 2 : 1;
    this.bid = Math.max(1, Math.floor(fairTicks - spread / 2));
    this.ask = this.bid + spread;
  }

  private levelQty(price: number): number {
    const notional = LEVEL_NOTIONAL * Math.exp(this.bookRng.normal());
    return Math.max(this.spec.minQtySteps, Math.round(notional / (price * this.spec.tick) / this.spec.step));
  }

  /** Moves the book to the current quote; returns the changed levels, if any. */
  private updateBook(time: number): BookDiff | undefined {
    const bidChanges = new Map<number, number>();
    const askChanges = new Map<number, number>();
    this.syncSide(this.bids, this.bid, -1, bidChanges, this.bidGrid);
    this.syncSide(this.asks, this.ask, 1, askChanges, this.askGrid);
    const n = bidChanges.size + askChanges.size;
    if (n === 0) return undefined;
    const U = this.lastUpdateId + 1;
    this.lastUpdateId += n;
    return { time, U, u: this.lastUpdateId, bids: [...bidChanges], asks: [...askChanges] };
  }

  /**
   * One side to the levels wanted around `best` (the best level, then a grid of `gap` ticks), plus
   * some churn at unchanged prices. While `best` stays where it was (a quiet symbol: most of a
   * thousand), the side already holds exactly the wanted levels, so only the churn runs: the same
   * random draws, the same diffs, at a fraction of the work.
   */
  private syncSide(side: Map<number, number>, best: number, dir: -1 | 1, changes: Map<number, number>, grid: { best: number; want: number[] }): void {
    const want = grid.want;
    if (grid.best !== best) {
      grid.best = best;
      want.length = 0;
      want.push(best);
      let p = dir < 0 ? Math.floor((best - 1) / this.gap) * this.gap : Math.ceil((best + 1) / this.gap) * this.gap;
      while (want.length < this.bookDepth && p > 0) {
        want.push(p);
        p += dir * this.gap;
      }
      // Wanted: the best level, or a grid level between the first and the last (no Set: this runs 10k times a second at 1,000 symbols).
      const gap = this.gap;
      const lo = dir < 0 ? want[want.length - 1]! : want.length > 1 ? want[1]! : best;
      const hi = dir < 0 ? (want.length > 1 ? want[1]! : best) : want[want.length - 1]!;
      for (const price of side.keys()) {
        if (price !== best && (price % gap !== 0 || price < lo || price > hi)) {
          side.delete(price);
          changes.set(price, 0);
        }
      }
      for (const price of want) {
        if (!side.has(price)) {
          const q = this.levelQty(price);
          side.set(price, q);
          changes.set(price, q);
        }
      }
    }
    // Some resting orders come and go at unchanged prices.
    const churn = this.bookRng.int(0, 3);
    for (let k = 0; k < churn; k++) {
      const price = want[this.bookRng.int(0, want.length - 1)]!;
      const q = this.levelQty(price);
      side.set(price, q);
      changes.set(price, q);
    }
  }

  book(limit = Infinity): BookSnapshot {
    const bids = [...this.bids].sort((a, b) => b[0] - a[0]);
    const asks = [...this.asks].sort((a, b) => a[0] - b[0]);
    if (bids.length > limit) bids.length = limit;
    if (asks.length > limit) asks.length = limit;
    return { lastUpdateId: this.lastUpdateId, bids, asks };
  }

  bestBid(): readonly [number, number] {
    let best = 0;
    for (const p of this.bids.keys()) if (p > best) best = p;
    return [best, this.bids.get(best) ?? 0];
  }

  bestAsk(): readonly [number, number] {
    let best = Infinity;
    for (const p of this.asks.keys()) if (p < best) best = p;
    return best === Infinity ? [0, 0] : [best, this.asks.get(best) ?? 0];
  }

  /** The candle of `interval` opening at `open`, as of `generatedUntil`. */
  kline(iv: Interval, open: number): Kline | undefined {
    return this.minutes.aggregate(open, nextOpen(iv, open));
  }

  /** Open time of the first bucket that has data. */
  firstOpen(iv: Interval): number {
    return bucketOpen(iv, this.minutes.baseOpen);
  }

  /** Open time of the bucket still forming. */
  currentOpen(iv: Interval): number {
    return bucketOpen(iv, this.generatedUntil);
  }

  stats24h(): Stats24h {
    const now = this.generatedUntil;
    const m = this.minutes;
    const i1 = m.indexOf(now);
    const i0 = Math.max(0, i1 - 1439);
    let open = NaN;
    let high = -Infinity;
    let low = Infinity;
    let volume = 0;
    let quoteVolume = 0;
    let count = 0;
    let firstId = -1;
    let lastId = -1;
    for (let i = i0; i <= i1 && i < m.length; i++) {
      if (m.n[i] === 0) continue;
      if (count === 0) {
        open = m.o[i]!;
        firstId = m.f[i]!;
      }
      if (m.h[i]! > high) high = m.h[i]!;
      if (m.l[i]! < low) low = m.l[i]!;
      volume += m.v[i]!;
      quoteVolume += m.q[i]!;
      count += m.n[i]!;
      lastId = m.L[i]!;
    }
    const last = m.c[Math.min(i1, m.length - 1)]!;
    if (count === 0) open = high = low = last;
    const prevClose = i0 > 0 ? m.c[i0 - 1]! : open;
    const lastQty = this.trades.count > 0 ? this.trades.qty(this.trades.lastId) : 0;
    const [bid, bidQty] = this.bestBid();
    const [ask, askQty] = this.bestAsk();
    return {
      openTime: now - DAY,
      closeTime: now,
      open,
      high,
      low,
      last,
      lastQty,
      prevClose,
      volume,
      quoteVolume,
      firstId,
      lastId,
      count,
      bid,
      bidQty,
      ask,
      askQty,
    };
  }

  /**
   * Synthetic 1-minute history before the start: a random walk run backwards from the start
   * price, so history ends exactly where live trading begins. Its own random stream: the live
   * trades don't depend on `historyDays`. Returns the first live trade id.
   */
  private buildHistory(o: EngineOptions, count: number): number {
    const rng = new Rng(deriveSeed(o.seed, `${o.spec.symbol}:history`));
    const { opens, closes } = walk(rng, o.spec.startPrice, count, o.volatility, -1);
    return this.pushSynthetic(this.minutes, rng, o, opens, closes, o.firstTradeId);
  }

  /**
   * Continues an earlier engine (its `snapshot`): its minutes inside the history window are
   * served again unchanged (the database already holds them as candles), the minutes it was down
   * for are a random walk from its last price (the market traded on meanwhile), and ids go on
   * from its next id. History older than the saved minutes, when the window reaches further,
   * walks backwards from their first open.
   */
  private continueFrom(o: EngineOptions, r: EngineResume, startMinute: number): { nextId: number; logFair: number } {
    const m = this.minutes;
    const run = r.minutes;
    let id = r.nextTradeId;
    let logFair = r.logFair;
    const i0 = Math.max(0, Math.round((m.baseOpen - run.baseOpen) / MINUTE));
    const i1 = Math.min(run.length, Math.round((startMinute - run.baseOpen) / MINUTE) + 1);
    if (i1 > i0) {
      const before = Math.round((run.baseOpen - m.baseOpen) / MINUTE);
      if (before > 0) {
        const rng = new Rng(deriveSeed(o.seed, `${o.spec.symbol}:history:${r.nextTradeId}`));
        const { opens, closes } = walk(rng, run.columns.o[0]! * o.spec.tick, before, o.volatility, -1);
        const prefix = new MinuteCandles(m.baseOpen, before);
        const end = this.pushSynthetic(prefix, rng, o, opens, closes, 0);
        // Ids end where the saved minutes' begin.
        let firstSaved = id;
        for (let i = 0; i < run.length; i++) {
          if (run.columns.f[i]! >= 0) {
            firstSaved = run.columns.f[i]!;
            break;
          }
        }
        for (let i = 0; i < prefix.length; i++) {
          prefix.f[i] = prefix.f[i]! + firstSaved - end;
          prefix.L[i] = prefix.L[i]! + firstSaved - end;
        }
        m.append(prefix.slice(0, prefix.length));
      }
      m.append(run, i0, i1);
    }
    const gapFrom = m.baseOpen + m.length * MINUTE;
    const down = Math.round((startMinute - gapFrom) / MINUTE);
    if (down > 0) {
      const rng = new Rng(deriveSeed(o.seed, `${o.spec.symbol}:gap:${r.nextTradeId}`));
      const { opens, closes } = walk(rng, Math.exp(logFair), down, o.volatility, 1);
      id = this.pushSynthetic(m, rng, o, opens, closes, id);
      logFair = Math.log(closes[down - 1]!);
    }
    return { nextId: id, logFair };
  }

  /** Appends synthetic minutes with the given opens and closes (quote units), trade ids from `firstId`; returns the next id. */
  private pushSynthetic(m: MinuteCandles, rng: Rng, o: EngineOptions, opens: Float64Array, closes: Float64Array, firstId: number): number {
    const { tick, step } = o.spec;
    const sigmaMin = o.volatility * Math.sqrt(60);
    const perMinute = Math.max(1, o.tradesPerSecond * 60);
    let id = firstId;
    for (let i = 0; i < opens.length; i++) {
      const op = Math.max(1, Math.round(opens[i]! / tick));
      const cl = Math.max(1, Math.round(closes[i]! / tick));
      const wick = Math.abs(rng.normal()) * sigmaMin * 0.5;
      const hi = Math.max(op, cl, Math.ceil((Math.max(op, cl) * (1 + wick))));
      const lo = Math.max(1, Math.min(op, cl, Math.floor(Math.min(op, cl) * (1 - wick))));
      const n = Math.max(1, Math.round(perMinute * Math.exp(0.3 * rng.normal() - 0.045)));
      const mid = ((op + cl) / 2) * tick;
      const meanQty = (TRADE_NOTIONAL * Math.exp((TRADE_NOTIONAL_SIGMA * TRADE_NOTIONAL_SIGMA) / 2)) / mid;
      const v = Math.max(n * o.spec.minQtySteps, Math.round(((n * meanQty) / step) * Math.exp(0.2 * rng.normal())));
      const buyShare = Math.min(0.9, Math.max(0.1, 0.5 + 0.1 * rng.normal()));
      const V = Math.round(v * buyShare);
      m.pushMinute(op, hi, lo, cl, v, v * step * mid, n, V, V * step * mid, id, id + n - 1);
      id += n;
    }
    return id;
  }
}

/**
 * `count` minutes of a log-normal random walk that ends (dir -1: backwards) or starts (dir 1:
 * forwards) at `price`; opens and closes in quote units, oldest first.
 */
function walk(rng: Rng, price: number, count: number, volatility: number, dir: -1 | 1): { opens: Float64Array; closes: Float64Array } {
  const sigmaMin = volatility * Math.sqrt(60);
  const opens = new Float64Array(count);
  const closes = new Float64Array(count);
  let p = price;
  if (dir < 0) {
    for (let i = count - 1; i >= 0; i--) {
      closes[i] = p;
      p *= Math.exp(-sigmaMin * rng.normal());
      opens[i] = p;
    }
  } else {
    for (let i = 0; i < count; i++) {
      opens[i] = p;
      p *= Math.exp(sigmaMin * rng.normal());
      closes[i] = p;
    }
  }
  return { opens, closes };
}
