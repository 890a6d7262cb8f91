/**
 * Many instruments on one subscription: ccxt pro's multi-symbol watches
 * (`watchTradesForSymbols`, `watchTickers(symbols)`, `watchOHLCVForSymbols`,
 * `watchOrderBookForSymbols`) carry a chunk of symbols each, while every instrument keeps its own
 * watch loop (watch.ts: gap, refill, silence, fallback, dedupe), fed from a mailbox instead of its
 * own ccxt call. One `Multiplexer` per channel (and timeframe) of a worker; one loop per chunk.
 *
 * A multi-symbol call resolves with ONE symbol's update (the first of the chunk's message hashes
 * that resolves: ccxt's `Future.race`); a message for another symbol that lands between two calls
 * resolves nobody (its future is settled and dropped) and would wait in ccxt's cache until that
 * symbol's next message. So after every call the loop sweeps the caches of its chunk (ccxt's
 * `trades`, `tickers`, `orderbooks`, `ohlcvs`): what is new for a symbol since the last sweep goes
 * to its mailbox. Trades are taken out of the cache as they are swept (the cache then only holds
 * trades not yet taken, as with releaseConsumedTrades on the per-symbol path).
 *
 * A failed call (the connection dropped, ended by the watchdog) fails every mailbox of the chunk
 * once, after the data swept before it, so each instrument opens its own gap and refills on its
 * own; the loop calls again after its backoff (ccxt dials and resubscribes).
 *
 * A subscribe request the exchange refuses (too many symbols for it, or one it will not stream:
 * venues refuse the whole request) is split instead, without failing anyone: the symbols the
 * refusal names go to a subscription of their own, else the chunk is halved, and both parts
 * subscribe at once, down to a symbol refused alone, whose loop gets the error (slow backoff,
 * REST polling meanwhile: watch.ts wsFallback). ccxt's record of the refused subscription is
 * dropped so the next call sends it again (ccxt.ts forgetRefusedSubscriptions). A refusal that
 * names only symbols of other subscriptions (OKX: ccxt fails every watch of the connection with
 * it) is not this chunk's: it calls again at once.
 *
 * Symbols leave by `detach` (their mailbox closes); their subscription stays on the chunk until
 * it next fails (the call is then made for the remaining symbols only) or empties (the loop ends
 * and the chunk is unwatched where ccxt can). A symbol that comes back while its chunk still
 * subscribes it rejoins that chunk; new symbols go into new chunks, one flush per reconcile.
 */
import type { OHLCV, OrderBook, Ticker as CcxtTicker, Trade as CcxtTrade } from 'ccxt';
import type { Channel } from './config.ts';
import { CHANNEL_WORDS, forgetRefusedSubscriptions, has, symbolsNamedIn, translateError, type Exchange } from './ccxt.ts';
import type { WorkerContext } from './context.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { sleep } from '../core/retry.ts';
import { abortable, retryDelay, StreamAttempts, type Source } from './watch.ts';

/** The ccxt capability of each channel's multi-symbol watch. */
export const MULTI_CAPABILITY: Readonly<Record<Channel, string>> = {
  trades: 'watchTradesForSymbols',
  ticker: 'watchTickers',
  ohlcv: 'watchOHLCVForSymbols',
  book: 'watchOrderBookForSymbols',
};

const PER_SYMBOL: Readonly<Record<Channel, string>> = { trades: 'watchTrades', ticker: 'watchTicker', ohlcv: 'watchOHLCV', book: 'watchOrderBook' };

/** The unwatch of each multi-symbol watch, where ccxt has one. */
const UNWATCH: Readonly<Record<Channel, string>> = {
  trades: 'unWatchTradesForSymbols',
  ticker: 'unWatchTickers',
  ohlcv: 'unWatchOHLCVForSymbols',
  book: 'unWatchOrderBookForSymbols',
};

/** Trades batches swept from a full ccxt cache (trades may have been lost before the sweep). */
const overflowed = new WeakSet<readonly CcxtTrade[]>();
export const isOverflowed = (batch: readonly CcxtTrade[]): boolean => overflowed.has(batch);

/** The error a detached instrument's pending `next()` gets. */
export class Detached extends TickflowError {
  constructor(symbol: string) {
    super('INTERNAL', `${symbol}: detached from its multi-symbol subscription`, { retriable: false });
  }
}

type Item<M> = { readonly data: M } | { readonly error: unknown };

/** One instrument's queue: data merged while it waits, an error kept in order after the data before it. */
export class Mailbox<M> {
  private readonly merge: (older: M, newer: M) => M;
  readonly symbol: string;
  private readonly queue: Item<M>[] = [];
  private waiter: { resolve: (m: M) => void; reject: (e: unknown) => void } | undefined;
  private closed: unknown;

  /** Called when the instrument's loop waits for data with nothing queued (its subscription is wanted). */
  onWait: (() => void) | undefined;

  constructor(merge: (older: M, newer: M) => M, symbol: string) {
    this.merge = merge;
    this.symbol = symbol;
  }

  /** The instrument's loop is waiting in `next()`. */
  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  put(m: M): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve(m);
      return;
    }
    const last = this.queue[this.queue.length - 1];
    if (last && 'data' in last) this.queue[this.queue.length - 1] = { data: this.merge(last.data, m) };
    else this.queue.push({ data: m });
  }

  fail(e: unknown): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.reject(e);
      return;
    }
    const last = this.queue[this.queue.length - 1];
    if (last && 'error' in last) return; // one outage, one error
    this.queue.push({ error: e });
  }

  next(): Promise<M> {
    if (this.closed) return Promise.reject(this.closed);
    const item = this.queue.shift();
    if (item) return 'data' in item ? Promise.resolve(item.data) : Promise.reject(item.error);
    const p = new Promise<M>((resolve, reject) => (this.waiter = { resolve, reject }));
    this.onWait?.();
    return p;
  }

  close(reason: unknown): void {
    if (this.closed) return;
    this.closed = reason;
    this.queue.length = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(reason);
  }
}

/** What a channel's multi-symbol watch is: the call, the sweep of ccxt's cache, the merge. */
interface Kind<M> {
  call(ex: Exchange, symbols: readonly string[], params: Record<string, unknown>): Promise<unknown>;
  /** What is new for `symbol` in ccxt's cache since the last sweep (`seen` is the sweep's memory of it). */
  sweep(ex: Exchange, symbol: string, seen: Map<string, unknown>): M | undefined;
  merge(older: M, newer: M): M;
}

type AnyCache = Record<string, unknown> | undefined;

function tradesKind(tradesLimit: number): Kind<CcxtTrade[]> {
  return {
    call: (ex, symbols, params) => ex.watchTradesForSymbols(symbols as string[], undefined, undefined, params),
    sweep: (ex, symbol) => {
      const cache = (ex.trades as AnyCache)?.[symbol] as CcxtTrade[] | undefined;
      if (!Array.isArray(cache) || cache.length === 0) return undefined;
      const batch = cache.slice();
      cache.length = 0;
      if (batch.length >= tradesLimit) overflowed.add(batch);
      return batch;
    },
    merge: (older, newer) => {
      // A backlog as long as ccxt's cache is the same loss signal as a full cache (the loop refills).
      const out = older.length + newer.length > tradesLimit ? [...older, ...newer].slice(-tradesLimit) : [...older, ...newer];
      if (out.length >= tradesLimit || overflowed.has(older) || overflowed.has(newer)) overflowed.add(out);
      return out;
    },
  };
}

const tickerKind: Kind<CcxtTicker> = {
  call: (ex, symbols, params) => ex.watchTickers(symbols as string[], params),
  sweep: (ex, symbol, seen) => {
    const t = (ex.tickers as AnyCache)?.[symbol] as CcxtTicker | undefined;
    if (!t || seen.get(symbol) === t) return undefined;
    seen.set(symbol, t);
    return t;
  },
  merge: (_older, newer) => newer,
};

function bookKind(limit: number | undefined): Kind<OrderBook> {
  return {
    call: (ex, symbols, params) => ex.watchOrderBookForSymbols(symbols as string[], limit, params),
    sweep: (ex, symbol, seen) => {
      const ob = (ex.orderbooks as AnyCache)?.[symbol] as OrderBook | undefined;
      if (!ob) return undefined;
      // The book is updated in place: its nonce, time and top say whether it changed.
      const sig = `${ob.nonce}|${ob.timestamp}|${ob.bids[0]?.[0]}|${ob.bids[0]?.[1]}|${ob.asks[0]?.[0]}|${ob.asks[0]?.[1]}`;
      if (seen.get(symbol) === sig) return undefined;
      seen.set(symbol, sig);
      return ob;
    },
    merge: (_older, newer) => newer,
  };
}

function ohlcvKind(timeframe: string): Kind<OHLCV[]> {
  return {
    call: (ex, symbols, params) => ex.watchOHLCVForSymbols(symbols.map((s) => [s, timeframe]), undefined, undefined, params),
    sweep: (ex, symbol, seen) => {
      const rows = ((ex.ohlcvs as AnyCache)?.[symbol] as Record<string, OHLCV[]> | undefined)?.[timeframe];
      if (!Array.isArray(rows) || rows.length === 0) return undefined;
      const prev = seen.get(symbol) as { ts: number; sig: string } | undefined;
      // Rows from the last one handed on (again if it changed: the forming bucket); the newest row at first.
      let i = rows.length - 1;
      if (prev !== undefined) while (i > 0 && (rows[i - 1]![0] ?? 0) >= prev.ts) i--;
      const out: OHLCV[] = [];
      for (let k = i; k < rows.length; k++) {
        const r = rows[k]!;
        const ts = r[0] ?? 0;
        if (prev !== undefined && (ts < prev.ts || (ts === prev.ts && r.join() === prev.sig))) continue;
        out.push([...r] as OHLCV);
      }
      if (out.length === 0) return undefined;
      const last = rows[rows.length - 1]!;
      seen.set(symbol, { ts: last[0] ?? 0, sig: last.join() });
      return out;
    },
    merge: (older, newer) => {
      const byTs = new Map<number, OHLCV>();
      for (const r of [...older, ...newer]) byTs.set(r[0] ?? 0, r);
      return [...byTs.values()].sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
    },
  };
}

/** The market group a chunk may mix: ccxt picks a multi-symbol call's URL by its first symbol's market. */
function groupOf(ex: Exchange, symbol: string): string {
  try {
    const m = ex.market(symbol);
    return `${m.type}:${m.linear ? 'linear' : m.inverse ? 'inverse' : ''}`;
  } catch {
    return '?';
  }
}

/** The exchange answered the subscribe request with a refusal (not a dropped or unreachable connection). */
function isRefusal(err: TickflowError): boolean {
  return !err.retriable && (err.code === 'EXCHANGE_REJECTED' || err.code === 'SYMBOL_UNKNOWN');
}

class Chunk<M> {
  private readonly mux: Multiplexer<M>;
  /** The symbols of the subscription (detached ones included until it is renewed). */
  private symbols: string[];
  readonly boxes = new Map<string, Mailbox<M>>();
  private readonly seen = new Map<string, unknown>();
  private done = false;
  /** The refusal of this chunk's one symbol was logged. */
  private refusedAlone = false;
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  readonly loop: Promise<void>;

  constructor(
    mux: Multiplexer<M>,
    symbols: string[],
  ) {
    this.mux = mux;
    this.symbols = symbols;
    this.loop = this.run();
  }

  get subscribed(): readonly string[] {
    return this.symbols;
  }

  private sweep(): void {
    const { kind, ctx } = this.mux;
    for (const s of this.symbols) {
      const m = kind.sweep(ctx.ex, s, this.seen);
      if (m !== undefined) this.boxes.get(s)?.put(m);
    }
  }

  private async run(): Promise<void> {
    const { ctx, kind, params } = this.mux;
    const attempts = new StreamAttempts();
    while (!this.done && !ctx.signal.aborted) {
      try {
        await abortable(kind.call(ctx.ex, this.symbols, { ...params }), this.abort.signal);
        attempts.ok();
        this.sweep();
      } catch (e) {
        if (this.done || ctx.signal.aborted) break;
        this.sweep();
        const err = translateError(e, `${this.mux.call}(${this.symbols.length} symbols)`, ctx.ex);
        if (isRefusal(err) && this.refused(err)) continue;
        // Each instrument's error names its own call, as on the per-symbol path.
        for (const [s, b] of this.boxes) b.fail(translateError(e, this.mux.label(s), ctx.ex));
        ctx.log.debug({ channel: this.mux.channel, symbols: this.symbols.length, err: err.message }, 'multi-symbol subscription failed');
        // Renewed for the symbols still attached (the failed subscription's connection is gone or failing).
        if (this.boxes.size < this.symbols.length) this.symbols = [...this.boxes.keys()];
        if (this.symbols.length === 0) break;
        // Dialled again when an instrument's loop asks (after its own backoff, or its fallback's
        // websocket probe), as it would dial on the per-symbol path; the chunk's own backoff is the cap.
        await Promise.race([sleep(retryDelay(err, attempts.failed()), this.abort.signal).catch(() => undefined), this.demand()]);
        this.wake = undefined;
      }
    }
  }

  /**
   * The exchange refused the subscribe request (too many symbols for it, or one it will not
   * stream): a chunk of several symbols is split in two and both halves subscribe at once, so the
   * good symbols keep streaming without a gap and a refused one ends up alone. True when split;
   * false for a symbol refused alone, whose loop gets the error (retried with the slow backoff,
   * REST polling meanwhile: watch.ts wsFallback).
   */
  private refused(err: TickflowError): boolean {
    const { ctx, channel, call } = this.mux;
    const live = this.symbols.filter((s) => this.boxes.has(s));
    const text = messageOf(err.cause ?? err);
    const named = symbolsNamedIn(ctx.ex, text);
    const mine = live.filter((s) => named.has(s));
    // Names another channel only (OKX `channel:trades,instId:...` failing a ticker watch).
    const otherChannel = !CHANNEL_WORDS[channel].test(text) && Object.values(CHANNEL_WORDS).some((w) => w.test(text));
    if ((named.size > 0 && mine.length === 0) || otherChannel) {
      // Another subscription's refusal: ccxt fails every watch of the connection with it when the
      // answer names no request (OKX). This one still stands; called again at once.
      ctx.log.debug({ channel, symbols: live.length, err: err.message }, 'multi-symbol watch failed with the refusal of another subscription; calling again');
      return true;
    }
    forgetRefusedSubscriptions(ctx.ex, this.symbols, channel);
    const who = `${ctx.name}${ctx.name === ctx.ex.id ? '' : ` (${ctx.ex.id})`}`;
    if (live.length > 1) {
      // The symbols the venue named go to a subscription of their own; else two halves.
      const moved = mine.length > 0 && mine.length < live.length ? mine : live.slice(Math.ceil(live.length / 2));
      const keep = live.filter((s) => !moved.includes(s));
      ctx.log.warn(
        { exchange: ctx.name, id: ctx.ex.id, channel, symbols: live, err: err.message },
        `${who} refused ${call} for ${live.length} symbols (${live.join(', ')}): ${err.message}; subscribing ${moved === mine ? `${moved.join(', ')} apart from the other ${keep.length}` : `them in two halves of ${keep.length} and ${moved.length}`}`,
      );
      this.symbols = keep;
      this.mux.split(this, moved);
      return true;
    }
    if (live.length === 1 && !this.refusedAlone) {
      this.refusedAlone = true;
      ctx.log.warn(
        { exchange: ctx.name, id: ctx.ex.id, channel, symbols: live, err: err.message },
        `${who} refused ${call} for ${live[0]} alone: ${err.message}; its stream retries with backoff and polls REST meanwhile where it can (wsFallback), the other symbols are not affected`,
      );
    }
    return false;
  }

  /** Moves the mailboxes of `symbols` out of this chunk (to the chunk split off it). */
  take(symbols: readonly string[]): Map<string, Mailbox<M>> {
    const out = new Map<string, Mailbox<M>>();
    for (const s of symbols) {
      const b = this.boxes.get(s);
      if (!b) continue;
      this.boxes.delete(s);
      out.set(s, b);
    }
    return out;
  }

  /** Resolves once an attached instrument's loop waits for data. */
  private demand(): Promise<void> {
    if ([...this.boxes.values()].some((b) => b.waiting)) return Promise.resolve();
    return new Promise<void>((resolve) => (this.wake = resolve));
  }

  /** An instrument's loop waits (Mailbox.onWait). */
  wanted(): void {
    this.wake?.();
  }

  /** Adds an instrument's mailbox to this chunk. */
  add(symbol: string, box: Mailbox<M>): void {
    box.onWait = () => this.wanted();
    this.boxes.set(symbol, box);
  }

  detach(symbol: string): void {
    const b = this.boxes.get(symbol);
    if (!b) return;
    this.boxes.delete(symbol);
    b.close(new Detached(symbol));
    if (this.boxes.size === 0) this.stop(true);
  }

  stop(unwatch: boolean): void {
    if (this.done) return;
    this.done = true;
    this.abort.abort();
    this.wake?.();
    const { ctx, channel } = this.mux;
    const fn = (ctx.ex as unknown as Record<string, unknown>)[UNWATCH[channel]];
    if (unwatch && !ctx.signal.aborted && has(ctx.ex, UNWATCH[channel]) && typeof fn === 'function') {
      const args: unknown[] = channel === 'ohlcv' ? [this.symbols.map((s) => [s, this.mux.timeframe])] : [this.symbols];
      void Promise.resolve()
        .then(() => (fn as (...a: unknown[]) => Promise<unknown>).apply(ctx.ex, args))
        .catch((e: unknown) => ctx.log.debug({ channel, err: String(e) }, 'unwatch of an emptied multi-symbol subscription failed'));
    }
    this.mux.dropChunk(this);
  }
}

/** The multi-symbol subscriptions of one channel (and timeframe) of a worker. */
export class Multiplexer<M> {
  readonly ctx: WorkerContext;
  readonly channel: Channel;
  readonly kind: Kind<M>;
  readonly params: Record<string, unknown>;
  /** Symbols per subscription. */
  readonly chunkSize: number;
  readonly timeframe?: string;
  private readonly chunks = new Set<Chunk<M>>();
  private readonly chunkOf = new Map<string, Chunk<M>>();
  private pending: { symbol: string; box: Mailbox<M> }[] = [];
  private flushing = false;
  readonly call: string;

  private constructor(
    ctx: WorkerContext,
    channel: Channel,
    kind: Kind<M>,
    params: Record<string, unknown>,
    chunkSize: number,
    timeframe?: string,
  ) {
    this.ctx = ctx;
    this.channel = channel;
    this.kind = kind;
    this.params = params;
    this.chunkSize = chunkSize;
    this.timeframe = timeframe;
    this.call = MULTI_CAPABILITY[channel];
  }

  static trades(ctx: WorkerContext, chunkSize: number, params: Record<string, unknown>): Multiplexer<CcxtTrade[]> {
    const tradesLimit = Number((ctx.ex.options as { tradesLimit?: unknown }).tradesLimit ?? 1000);
    return new Multiplexer(ctx, 'trades', tradesKind(tradesLimit), params, chunkSize);
  }

  static ticker(ctx: WorkerContext, chunkSize: number, params: Record<string, unknown>): Multiplexer<CcxtTicker> {
    return new Multiplexer(ctx, 'ticker', tickerKind, params, chunkSize);
  }

  static book(ctx: WorkerContext, chunkSize: number, params: Record<string, unknown>, limit: number | undefined): Multiplexer<OrderBook> {
    return new Multiplexer(ctx, 'book', bookKind(limit), params, chunkSize);
  }

  static ohlcv(ctx: WorkerContext, chunkSize: number, params: Record<string, unknown>, timeframe: string): Multiplexer<OHLCV[]> {
    return new Multiplexer(ctx, 'ohlcv', ohlcvKind(timeframe), params, chunkSize, timeframe);
  }

  /** The instrument's call as errors and logs name it: the per-symbol watch it stands for (`watchTrades(BTC/USDT)`). */
  label(symbol: string): string {
    return `${PER_SYMBOL[this.channel]}(${symbol}${this.timeframe ? `, ${this.timeframe}` : ''})`;
  }

  /** Subscriptions (chunks) running. */
  get subscriptions(): number {
    return this.chunks.size;
  }

  /** The source of `symbol`'s watch loop; its subscription starts with the others added in the same turn. */
  attach(symbol: string): Source<M> {
    this.detach(symbol);
    const box = new Mailbox<M>(this.kind.merge, symbol);
    const chunk = this.chunkOf.get(symbol);
    if (chunk && chunk.subscribed.includes(symbol)) {
      chunk.add(symbol, box);
    } else {
      this.pending.push({ symbol, box });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    }
    return { call: this.label(symbol), next: () => box.next() };
  }

  /** `symbol` stops: its loop's pending `next()` fails with Detached. */
  detach(symbol: string): void {
    const i = this.pending.findIndex((p) => p.symbol === symbol);
    if (i >= 0) this.pending.splice(i, 1)[0]!.box.close(new Detached(symbol));
    this.chunkOf.get(symbol)?.detach(symbol);
  }

  private flush(): void {
    this.flushing = false;
    const pending = this.pending;
    this.pending = [];
    if (this.ctx.signal.aborted || pending.length === 0) return;
    const groups = new Map<string, { symbol: string; box: Mailbox<M> }[]>();
    for (const p of pending) {
      const g = groupOf(this.ctx.ex, p.symbol);
      let list = groups.get(g);
      if (!list) groups.set(g, (list = []));
      list.push(p);
    }
    for (const list of groups.values()) {
      for (let i = 0; i < list.length; i += this.chunkSize) {
        const part = list.slice(i, i + this.chunkSize);
        const chunk = new Chunk<M>(this, part.map((p) => p.symbol));
        for (const p of part) {
          chunk.add(p.symbol, p.box);
          this.chunkOf.set(p.symbol, chunk);
        }
        this.chunks.add(chunk);
      }
    }
  }

  /** `from` was refused and keeps the first half of its symbols: `symbols` go to a chunk of their own. */
  split(from: Chunk<M>, symbols: readonly string[]): void {
    const boxes = from.take(symbols);
    const chunk = new Chunk<M>(this, [...boxes.keys()]);
    for (const [s, b] of boxes) {
      chunk.add(s, b);
      this.chunkOf.set(s, chunk);
    }
    this.chunks.add(chunk);
  }

  dropChunk(chunk: Chunk<M>): void {
    this.chunks.delete(chunk);
    for (const [s, c] of this.chunkOf) if (c === chunk) this.chunkOf.delete(s);
  }

  /** Waits for the chunk loops to end (after the worker's abort and ccxt's close). */
  async close(): Promise<void> {
    const loops = [...this.chunks].map((c) => c.loop);
    for (const c of this.chunks) c.stop(false);
    for (const p of this.pending) p.box.close(new Detached(p.symbol));
    this.pending = [];
    await Promise.all(loops);
  }
}
