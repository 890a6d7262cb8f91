/**
 * Candle arithmetic for the sim: Binance's interval set and bucket boundaries, and a columnar
 * store of 1-minute candles (synthetic history, then built from every live trade) from which any
 * longer interval is aggregated on demand. One store is the single truth behind REST klines,
 * websocket kline pushes and `emitted.candles()`, so they cannot disagree.
 */

/** Binance spot kline intervals (`1s` is left out: the sim keeps minutes as its finest unit). */
export const INTERVALS = ['1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M'] as const;
export type Interval = (typeof INTERVALS)[number];

const MINUTE = 60_000;
const DAY = 86_400_000;
const WEEK = 7 * DAY;
/** 1970-01-01 was a Thursday; Binance weeks open on Monday 00:00 UTC. */
const WEEK_OFFSET = 4 * DAY;

const FIXED_MS: Partial<Record<Interval, number>> = {
  '1m': MINUTE,
  '3m': 3 * MINUTE,
  '5m': 5 * MINUTE,
  '15m': 15 * MINUTE,
  '30m': 30 * MINUTE,
  '1h': 60 * MINUTE,
  '2h': 120 * MINUTE,
  '4h': 240 * MINUTE,
  '6h': 360 * MINUTE,
  '8h': 480 * MINUTE,
  '12h': 720 * MINUTE,
  '1d': DAY,
  '3d': 3 * DAY,
};

export function isInterval(s: string): s is Interval {
  return (INTERVALS as readonly string[]).includes(s);
}

/** Open time of the bucket containing `t`. */
export function bucketOpen(iv: Interval, t: number): number {
  const d = FIXED_MS[iv];
  if (d !== undefined) return Math.floor(t / d) * d;
  if (iv === '1w') return Math.floor((t - WEEK_OFFSET) / WEEK) * WEEK + WEEK_OFFSET;
  const date = new Date(t);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
}

/** Open time of the bucket after the one opening at `open`. */
export function nextOpen(iv: Interval, open: number): number {
  const d = FIXED_MS[iv];
  if (d !== undefined) return open + d;
  if (iv === '1w') return open + WEEK;
  const date = new Date(open);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

export function prevOpen(iv: Interval, open: number): number {
  const d = FIXED_MS[iv];
  if (d !== undefined) return open - d;
  if (iv === '1w') return open - WEEK;
  const date = new Date(open);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() - 1, 1);
}

/** First bucket open at or after `t`. */
export function ceilOpen(iv: Interval, t: number): number {
  const o = bucketOpen(iv, t);
  return o === t ? o : nextOpen(iv, o);
}

/** An aggregated candle; prices in ticks, base quantities in steps (see MarketSpec). */
export interface Kline {
  readonly openTime: number;
  /** Binance's close time: next open - 1 ms. */
  readonly closeTime: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
  readonly volume: number;
  readonly quoteVolume: number;
  readonly trades: number;
  readonly takerBuyVolume: number;
  readonly takerBuyQuoteVolume: number;
  /** First and last trade id in the bucket, -1 when it had none. */
  readonly firstId: number;
  readonly lastId: number;
}

/** The columns of MinuteCandles, in one fixed order (saved state relies on it). */
export const MINUTE_COLUMNS = ['o', 'h', 'l', 'c', 'v', 'q', 'n', 'V', 'Q', 'f', 'L'] as const;
export type MinuteColumn = (typeof MINUTE_COLUMNS)[number];

/** A run of minutes copied out of a MinuteCandles (see `slice`); index 0 opens at `baseOpen`. */
export interface MinuteRun {
  readonly baseOpen: number;
  readonly length: number;
  readonly columns: Readonly<Record<MinuteColumn, Float64Array>>;
}

/** Columnar 1-minute candles, index i opening at `baseOpen + i` minutes. */
export class MinuteCandles {
  readonly baseOpen: number;
  length = 0;
  private cap: number;
  o: Float64Array;
  h: Float64Array;
  l: Float64Array;
  c: Float64Array;
  v: Float64Array;
  q: Float64Array;
  n: Float64Array;
  V: Float64Array;
  Q: Float64Array;
  f: Float64Array;
  L: Float64Array;

  constructor(baseOpen: number, initialCapacity = 16_384) {
    this.baseOpen = baseOpen;
    this.cap = Math.max(16, initialCapacity);
    this.o = new Float64Array(this.cap);
    this.h = new Float64Array(this.cap);
    this.l = new Float64Array(this.cap);
    this.c = new Float64Array(this.cap);
    this.v = new Float64Array(this.cap);
    this.q = new Float64Array(this.cap);
    this.n = new Float64Array(this.cap);
    this.V = new Float64Array(this.cap);
    this.Q = new Float64Array(this.cap);
    this.f = new Float64Array(this.cap);
    this.L = new Float64Array(this.cap);
  }

  indexOf(t: number): number {
    return Math.floor((t - this.baseOpen) / MINUTE);
  }

  /** Appends one complete minute (synthetic history). */
  pushMinute(o: number, h: number, l: number, c: number, v: number, q: number, n: number, V: number, Q: number, f: number, L: number): void {
    const i = this.length;
    this.grow(i + 1);
    this.o[i] = o;
    this.h[i] = h;
    this.l[i] = l;
    this.c[i] = c;
    this.v[i] = v;
    this.q[i] = q;
    this.n[i] = n;
    this.V[i] = V;
    this.Q[i] = Q;
    this.f[i] = f;
    this.L[i] = L;
    this.length = i + 1;
  }

  /** Copies minutes [i0, i1) out (clamped to what exists). */
  slice(i0: number, i1: number): MinuteRun {
    const a = Math.max(0, Math.min(i0, this.length));
    const b = Math.max(a, Math.min(i1, this.length));
    const columns = Object.fromEntries(MINUTE_COLUMNS.map((k) => [k, this[k].slice(a, b)])) as Record<MinuteColumn, Float64Array>;
    return { baseOpen: this.baseOpen + a * MINUTE, length: b - a, columns };
  }

  /** Appends minutes [i0, i1) of `run`; the caller keeps them contiguous with what is held. */
  append(run: MinuteRun, i0 = 0, i1 = run.length): void {
    const n = Math.max(0, i1 - i0);
    if (n === 0) return;
    this.grow(this.length + n);
    for (const k of MINUTE_COLUMNS) this[k].set(run.columns[k].subarray(i0, i1), this.length);
    this.length += n;
  }

  /**
   * Makes minutes up to index `idx` exist; minutes without trades carry the previous close as
   * open/high/low/close and zero volume, like Binance's klines for quiet minutes.
   */
  ensure(idx: number, fallbackPrice: number): void {
    if (idx < this.length) return;
    this.grow(idx + 1);
    const prev = this.length > 0 ? this.c[this.length - 1]! : fallbackPrice;
    for (let i = this.length; i <= idx; i++) {
      this.o[i] = prev;
      this.h[i] = prev;
      this.l[i] = prev;
      this.c[i] = prev;
      this.v[i] = 0;
      this.q[i] = 0;
      this.n[i] = 0;
      this.V[i] = 0;
      this.Q[i] = 0;
      this.f[i] = -1;
      this.L[i] = -1;
    }
    this.length = idx + 1;
  }

  /** Adds one live trade; the caller has `ensure`d the minute. */
  addTrade(idx: number, price: number, qty: number, quote: number, takerIsBuyer: boolean, id: number): void {
    if (this.n[idx] === 0) {
      this.o[idx] = price;
      this.h[idx] = price;
      this.l[idx] = price;
      this.f[idx] = id;
    } else {
      if (price > this.h[idx]!) this.h[idx] = price;
      if (price < this.l[idx]!) this.l[idx] = price;
    }
    this.c[idx] = price;
    this.v[idx] = this.v[idx]! + qty;
    this.q[idx] = this.q[idx]! + quote;
    this.n[idx] = this.n[idx]! + 1;
    this.L[idx] = id;
    if (takerIsBuyer) {
      this.V[idx] = this.V[idx]! + qty;
      this.Q[idx] = this.Q[idx]! + quote;
    }
  }

  /** Aggregates minutes [from, to) (times); undefined when none of them exist. */
  aggregate(from: number, to: number): Kline | undefined {
    const i0 = Math.max(0, this.indexOf(from));
    const i1 = Math.min(this.length, this.indexOf(to - 1) + 1);
    if (i1 <= i0) return undefined;
    let open = NaN;
    let high = -Infinity;
    let low = Infinity;
    let close = NaN;
    let v = 0;
    let q = 0;
    let n = 0;
    let V = 0;
    let Q = 0;
    let f = -1;
    let L = -1;
    for (let i = i0; i < i1; i++) {
      if (this.n[i] === 0) continue;
      if (n === 0) {
        open = this.o[i]!;
        f = this.f[i]!;
      }
      if (this.h[i]! > high) high = this.h[i]!;
      if (this.l[i]! < low) low = this.l[i]!;
      close = this.c[i]!;
      v += this.v[i]!;
      q += this.q[i]!;
      n += this.n[i]!;
      V += this.V[i]!;
      Q += this.Q[i]!;
      L = this.L[i]!;
    }
    if (n === 0) {
      // No trade in the whole bucket: flat at the previous close (stored as the first minute's open).
      open = high = low = close = this.o[i0]!;
    }
    return {
      openTime: from,
      closeTime: to - 1,
      open,
      high,
      low,
      close,
      volume: v,
      quoteVolume: q,
      trades: n,
      takerBuyVolume: V,
      takerBuyQuoteVolume: Q,
      firstId: f,
      lastId: L,
    };
  }

  private grow(need: number): void {
    if (need <= this.cap) return;
    let cap = this.cap;
    while (cap < need) cap *= 2;
    const re = (a: Float64Array): Float64Array => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, this.length));
      return b;
    };
    this.o = re(this.o);
    this.h = re(this.h);
    this.l = re(this.l);
    this.c = re(this.c);
    this.v = re(this.v);
    this.q = re(this.q);
    this.n = re(this.n);
    this.V = re(this.V);
    this.Q = re(this.Q);
    this.f = re(this.f);
    this.L = re(this.L);
    this.cap = cap;
  }
}
