/**
 * The websocket side: one loop per (symbol, channel) calling ccxt pro's `watch*` continuously
 * (ccxt does not reconnect by itself: a dropped connection is only dialled again by the next
 * call). A failed or silent stream opens a gap (a `gap` record with `to_ts` null), reconnects
 * with backoff and, once data flows again, recovers what it can over REST (trades since the
 * last one produced; candle buckets the stream could not vouch for) before closing the gap with
 * a second record (`to_ts` set, `refilled` = records recovered).
 */
import type { Exchange, OHLCV, OrderBook, Trade as CcxtTrade } from 'ccxt';
import type { ExchangeEntry } from './config.ts';
import type { Logger } from '../core/log.ts';
import { backoffDelay, retry, sleep } from '../core/retry.ts';
import { messageOf, type TickflowError } from '../core/errors.ts';
import type { Ticker } from '../schemas/index.ts';
import { bucketEnd, type CandleEmission, type CandleTracker, type ExchangeClock, type FillRange } from './candles.ts';
import { endSilentConnections, has, releaseConsumedTrades, translateError } from './ccxt.ts';
import type { GatewayEvents, StreamRef } from './events.ts';
import type { ExchangeAdapter } from './exchanges/index.ts';
import { fetchCandlePages } from './history.ts';
import { msToMicros, normalizeBook, normalizeCandle, normalizeTicker } from './normalize.ts';
import { openRestartGap, type StreamPosition } from './positions.ts';
import type { Outbox } from './publisher.ts';
import { idJump, missingIds, type TradeLedger } from './trades.ts';

/** What a loop needs from its exchange worker. */
export interface WorkerContext {
  /** The `exchange` field of the records: the entry's name, else its ccxt id. */
  readonly name: string;
  readonly entry: ExchangeEntry;
  readonly ex: Exchange;
  readonly adapter: ExchangeAdapter;
  readonly outbox: Outbox;
  readonly events: GatewayEvents;
  readonly log: Logger;
  readonly clock: ExchangeClock;
  readonly signal: AbortSignal;
  readonly watchdog: Watchdog;
  ledger(symbol: string): TradeLedger;
  tracker(symbol: string, timeframe: string): CandleTracker;
  /** Where the previous gateway process stopped this stream (positions.ts), if it got anything into Kafka. */
  readonly stoppedAt?: (ref: StreamRef) => StreamPosition | undefined;
}

export const nowUs = (): number => Date.now() * 1000;

/** Pages a trade refill may take (a longer outage is refilled that far and the gap says so). */
const REFILL_MAX_PAGES = 1_000;

/**
 * Retry policy of the watch loops. A stream that delivered for `healthyAfterMs` before it failed
 * starts again from the first delay, so it is back within about a second; one that keeps failing
 * (dials refused, connections dropping right after they open) backs off to the cap. ccxt's own
 * dial backoff (`options.ws.backoff`, CCXT_DEFAULTS in ccxt.ts) uses the same notion of healthy.
 */
export const STREAM_RETRY = {
  initialDelayMs: 200,
  maxDelayMs: 10_000,
  /** Errors that are not retriable (a refused subscription) are retried slower. */
  rejectedInitialDelayMs: 5_000,
  rejectedMaxDelayMs: 60_000,
  healthyAfterMs: 3_000,
} as const;

/** Retry policies of trade refills (core/retry.ts options). */
export const REFILL_RETRY = {
  /**
   * After a stream outage: until REST answers or the worker closes. The stream waits for the
   * refill (Kafka keeps each instrument's trades in order), ccxt keeps caching what it receives.
   */
  stream: { attempts: Infinity, initialDelayMs: 500, maxDelayMs: 10_000 },
  /** A trade poll: a few tries; the next scheduled poll starts again from the last trade produced. */
  poll: { attempts: 6, initialDelayMs: 200, maxDelayMs: 10_000 },
} as const;
export type RefillRetry = (typeof REFILL_RETRY)[keyof typeof REFILL_RETRY];

/** Consecutive failures of one watch loop; a healthy stretch of delivery forgives them. */
export class StreamAttempts {
  private n = 0;
  private healthySince: number | undefined;

  /** Data arrived. */
  ok(now = Date.now()): void {
    this.healthySince ??= now;
  }

  /** A watch failed: the attempt number its backoff counts from. */
  failed(now = Date.now()): number {
    if (this.healthySince !== undefined && now - this.healthySince >= STREAM_RETRY.healthyAfterMs) this.n = 0;
    this.healthySince = undefined;
    return ++this.n;
  }
}

/** Delay before the next watch after a failure. */
function retryDelay(err: TickflowError, attempt: number): number {
  const after = (err as { retryAfterMs?: number }).retryAfterMs;
  if (after !== undefined) return after;
  const p = STREAM_RETRY;
  return err.retriable ? backoffDelay(attempt, p.initialDelayMs, p.maxDelayMs) : backoffDelay(attempt, p.rejectedInitialDelayMs, p.rejectedMaxDelayMs);
}

/** Open/close gap records of one stream. */
export class GapTracker {
  private current: { fromUs: number; reason: string; openedAt: number } | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly ref: StreamRef,
  ) {}

  get isOpen(): boolean {
    return this.current !== undefined;
  }

  private label(): string {
    return this.ref.timeframe ? `${this.ref.channel} ${this.ref.timeframe}` : this.ref.channel;
  }

  open(fromUs: number, reason: string): void {
    if (this.current) return;
    const at = nowUs();
    this.current = { fromUs, reason: `${this.label()}: ${reason}`.slice(0, 500), openedAt: Date.now() };
    this.ctx.outbox.add('gap', {
      exchange: this.ctx.name,
      symbol: this.ref.symbol,
      ts: at,
      received_at: at,
      channel: this.ref.channel,
      from_ts: fromUs,
      to_ts: null,
      reason: this.current.reason,
      refilled: 0,
    });
    this.ctx.events.emit('stream.down', { ...this.ref, reason });
  }

  close(toUs: number, refilled: number, note?: string): void {
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    const at = nowUs();
    this.ctx.outbox.add('gap', {
      exchange: this.ctx.name,
      symbol: this.ref.symbol,
      ts: at,
      received_at: at,
      channel: this.ref.channel,
      from_ts: c.fromUs,
      to_ts: Math.max(toUs, c.fromUs),
      reason: (note ? `${c.reason}; ${note}` : c.reason).slice(0, 500),
      refilled,
    });
    this.ctx.events.emit('stream.resumed', { ...this.ref, downMs: Date.now() - c.openedAt, refilled, ...(note ? { note } : {}) });
  }
}

/** A stream the watchdog checks for silence. */
export interface Watched {
  readonly ref: StreamRef;
  readonly silenceMs: number;
  lastMessageAt: number;
  /** Waiting inside a watch call on a connection believed healthy. */
  active: boolean;
  checking: boolean;
  onSilence(): Promise<void>;
}

/** Notices streams that stopped talking: ccxt only notices a dead socket through its keep-alive. */
export class Watchdog {
  private readonly streams = new Set<Watched>();

  constructor(private readonly log: Logger) {}

  add(w: Watched): void {
    this.streams.add(w);
  }

  remove(w: Watched): void {
    this.streams.delete(w);
  }

  tick(now: number): void {
    for (const w of this.streams) {
      if (!w.active || w.checking || now - w.lastMessageAt < w.silenceMs) continue;
      w.checking = true;
      w.onSilence()
        .catch((e: unknown) => this.log.warn({ err: e, ...w.ref }, 'silence check failed'))
        .finally(() => {
          w.checking = false;
        });
    }
  }
}

/** Ends the connection of a silent stream so the next watch dials again (the loop opens the gap). */
function endSilent(ctx: WorkerContext, w: Watched): void {
  const reason = `no message for ${Math.round(w.silenceMs / 1000)}s`;
  const n = endSilentConnections(ctx.ex, w.ref.symbol, w.ref.channel, reason);
  if (n === 0) ctx.log.warn({ ...w.ref }, `${reason}, but no websocket connection of this stream was found to end`);
  w.lastMessageAt = Date.now();
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, signal).catch(() => undefined);
}

/** A watch failed: report the retry, then wait its backoff (or until the worker stops). */
async function retryAfter(ctx: WorkerContext, ref: StreamRef, err: TickflowError, attempts: StreamAttempts): Promise<void> {
  const attempt = attempts.failed();
  const delayMs = retryDelay(err, attempt);
  ctx.events.emit('stream.retry', { ...ref, attempt, delayMs, reason: err.message });
  await pause(delayMs, ctx.signal);
}

function watched(ctx: WorkerContext, ref: StreamRef, silenceMs: number, onSilence?: (w: Watched) => Promise<void>): Watched {
  const w: Watched = {
    ref,
    silenceMs,
    lastMessageAt: Date.now(),
    active: false,
    checking: false,
    onSilence: async () => (onSilence ? onSilence(w) : endSilent(ctx, w)),
  };
  return w;
}

// ---- trades ----

/** Produces the trades of `batch` not produced yet; returns how many. */
export function produceTrades(ctx: WorkerContext, ledger: TradeLedger, batch: readonly CcxtTrade[], receivedAtUs: number): number {
  const { records, malformed } = ledger.take(ctx.name, batch, receivedAtUs);
  for (const r of records) ctx.outbox.add('trade', r);
  const last = records[records.length - 1];
  if (last) ctx.clock.observe(last.ts / 1000, receivedAtUs / 1000);
  if (malformed > 0) ctx.log.warn({ symbol: batch[0]?.symbol, malformed }, 'trades without price or amount skipped');
  return records.length;
}

/**
 * REST refill from the newest trade produced up to the present, retried by `policy` (each retry
 * resumes where the last one stopped; every failure is a `refill.retry` event, logged at warn).
 */
export async function refillTrades(ctx: WorkerContext, symbol: string, fallbackTsMs: number, policy: RefillRetry = REFILL_RETRY.poll): Promise<{ count: number; error?: string }> {
  if (!has(ctx.ex, 'fetchTrades')) return { count: 0, error: 'no REST refill (the exchange has no fetchTrades)' };
  const ledger = ctx.ledger(symbol);
  const ref: StreamRef = { exchange: ctx.name, channel: 'trades', symbol };
  let count = 0;
  try {
    const pages = await retry(
      async () => {
        let n = 0;
        try {
          for await (const page of ctx.adapter.refillTrades(ctx.ex, symbol, ledger.cursor(fallbackTsMs), { maxPages: REFILL_MAX_PAGES, signal: ctx.signal })) {
            count += produceTrades(ctx, ledger, page, nowUs());
            n++;
          }
        } catch (e) {
          throw translateError(e, `refill fetchTrades(${symbol})`, ctx.ex);
        }
        return n;
      },
      { ...policy, signal: ctx.signal, onRetry: (err, attempt, delayMs) => ctx.events.emit('refill.retry', { ...ref, attempt, delayMs, refilled: count, reason: messageOf(err) }) },
    );
    if (ctx.signal.aborted) return { count, error: 'refill interrupted: the gateway is closing' };
    return pages >= REFILL_MAX_PAGES ? { count, error: `refill stopped after ${REFILL_MAX_PAGES} pages` } : { count };
  } catch (e) {
    return { count, error: ctx.signal.aborted ? 'refill interrupted: the gateway is closing' : `refill incomplete: ${messageOf(e)}` };
  } finally {
    if (count > 0) ctx.events.emit('refill', { ...ref, count });
  }
}

/** The closing note of a trade gap: what the refill could not bring back, counted where ids are consecutive. */
function unrefilledNote(contiguous: boolean, ledger: TradeLedger, resumed: readonly CcxtTrade[], error: string | undefined): string | undefined {
  const missing = contiguous ? missingIds(ledger.lastTradeId, resumed) : undefined;
  if (missing !== undefined) return missing > 0 ? `${missing} trades not refilled${error ? ` (${error})` : ''}` : undefined;
  return error ? `${error}; trades in this range may be missing (count unknown)` : undefined;
}

export async function runTradeStream(ctx: WorkerContext, symbol: string, silenceMs: number): Promise<void> {
  const ref: StreamRef = { exchange: ctx.name, channel: 'trades', symbol };
  const ledger = ctx.ledger(symbol);
  const gap = new GapTracker(ctx, ref);
  // Closed by the first batch, after the refill from the stored trade (or from the gateway's
  // start, when Kafka had nothing of this stream and the streams waited for it).
  const stopped = openRestartGap(ctx.stoppedAt, ref, gap);
  const tradesLimit = Number((ctx.ex.options as { tradesLimit?: unknown }).tradesLimit ?? 1000);
  const contiguous = ctx.adapter.contiguousTradeIds(ctx.ex, symbol);
  const startedAt = ctx.clock.now(Date.now());
  const w = watched(ctx, ref, silenceMs, async (self) => {
    // A quiet market is not a dead stream: only trades REST knows and the stream did not
    // deliver (older than a moment, so not merely in flight) prove it dead.
    if (has(ctx.ex, 'fetchTrades')) {
      const known = ledger.lastTradeTsMs ?? startedAt;
      const cutoff = ctx.clock.now(Date.now()) - 2_000;
      const latest = await ctx.ex.fetchTrades(symbol, undefined, 10);
      if (!latest.some((t) => (t.timestamp ?? 0) > known && (t.timestamp ?? 0) < cutoff)) {
        self.lastMessageAt = Date.now();
        return;
      }
    }
    endSilent(ctx, self);
  });
  ctx.watchdog.add(w);
  const attempts = new StreamAttempts();
  try {
    while (!ctx.signal.aborted) {
      let batch: CcxtTrade[];
      w.active = !gap.isOpen;
      try {
        batch = await ctx.ex.watchTrades(symbol);
      } catch (e) {
        w.active = false;
        if (ctx.signal.aborted) break;
        const err = translateError(e, `watchTrades(${symbol})`, ctx.ex);
        gap.open(ledger.lastTradeTsMs !== undefined ? msToMicros(ledger.lastTradeTsMs) : nowUs(), err.message);
        await retryAfter(ctx, ref, err, attempts);
        continue;
      }
      releaseConsumedTrades(ctx.ex, symbol, batch);
      const receivedAtUs = nowUs();
      w.lastMessageAt = Date.now();
      attempts.ok();
      ctx.events.emit('stream.messages', { ...ref, count: batch.length });
      const overflow = batch.length >= tradesLimit && ledger.lastTradeId !== undefined;
      const jump = contiguous && idJump(ledger.lastTradeId, batch);
      if (gap.isOpen || overflow || jump) {
        if (!gap.isOpen) {
          const why = overflow
            ? `ccxt trade cache full: ${batch.length} trades arrived between two calls (options.tradesLimit ${tradesLimit}); some may be lost`
            : `trade ids jumped after ${ledger.lastTradeId}: trades missed on the stream`;
          gap.open(msToMicros(ledger.lastTradeTsMs ?? Date.now()), why);
        }
        const firstTs = batch[0]?.timestamp;
        const r = await refillTrades(ctx, symbol, stopped ? stopped.tsUs / 1000 : ctx.clock.now(Date.now()), REFILL_RETRY.stream);
        // Closing mid-refill: the gap stays open and the batch unproduced; the next start refills
        // from the last trade in Kafka.
        if (r.error && ctx.signal.aborted) break;
        gap.close(firstTs !== undefined ? msToMicros(firstTs) : nowUs(), r.count, unrefilledNote(contiguous, ledger, batch, r.error));
      }
      produceTrades(ctx, ledger, batch, receivedAtUs);
    }
  } finally {
    ctx.watchdog.remove(w);
  }
}

// ---- tickers ----

export function produceTicker(ctx: WorkerContext, rec: Ticker, last: { ts: number; sig: string } | undefined): { ts: number; sig: string } {
  const sig = `${rec.bid}|${rec.ask}|${rec.last}|${rec.base_volume_24h}`;
  if (last && last.ts === rec.ts && last.sig === sig) return last; // the same update twice
  ctx.outbox.add('ticker', rec);
  ctx.clock.observe(rec.ts / 1000, rec.received_at / 1000);
  return { ts: rec.ts, sig };
}

export async function runTickerStream(ctx: WorkerContext, symbol: string, silenceMs: number): Promise<void> {
  const ref: StreamRef = { exchange: ctx.name, channel: 'ticker', symbol };
  const gap = new GapTracker(ctx, ref);
  openRestartGap(ctx.stoppedAt, ref, gap);
  const params = ctx.adapter.watchTickerParams(ctx.ex, symbol);
  const w = watched(ctx, ref, silenceMs);
  ctx.watchdog.add(w);
  let last: { ts: number; sig: string } | undefined;
  const attempts = new StreamAttempts();
  try {
    while (!ctx.signal.aborted) {
      w.active = !gap.isOpen;
      let t;
      try {
        t = await ctx.ex.watchTicker(symbol, params);
      } catch (e) {
        w.active = false;
        if (ctx.signal.aborted) break;
        const err = translateError(e, `watchTicker(${symbol})`, ctx.ex);
        gap.open(last?.ts ?? nowUs(), err.message);
        await retryAfter(ctx, ref, err, attempts);
        continue;
      }
      w.lastMessageAt = Date.now();
      attempts.ok();
      const rec = normalizeTicker(ctx.name, t, nowUs(), symbol);
      gap.close(rec.ts, 0);
      ctx.events.emit('stream.messages', { ...ref, count: 1 });
      last = produceTicker(ctx, rec, last);
    }
  } finally {
    ctx.watchdog.remove(w);
  }
}

// ---- candles ----

export function produceCandles(ctx: WorkerContext, symbol: string, timeframe: string, emissions: readonly CandleEmission[]): number {
  const at = nowUs();
  let n = 0;
  for (const e of emissions) {
    const c = normalizeCandle(ctx.name, symbol, timeframe, e.row, e.closed, at);
    if (c) {
      ctx.outbox.add('candle', c);
      n++;
    }
  }
  return n;
}

/** Closed candles for bucket opens [range.from, range.to) from REST; returns how many were produced. */
export async function fillCandles(ctx: WorkerContext, symbol: string, timeframe: string, range: FillRange): Promise<{ count: number; error?: string }> {
  if (!has(ctx.ex, 'fetchOHLCV')) return { count: 0, error: 'no REST fill (the exchange has no fetchOHLCV)' };
  const tracker = ctx.tracker(symbol, timeframe);
  let count = 0;
  try {
    await fetchCandlePages({
      ex: ctx.ex,
      adapter: ctx.adapter,
      symbol,
      timeframe,
      from: range.from,
      to: range.to,
      signal: ctx.signal,
      onPage: (rows) => {
        count += produceCandles(ctx, symbol, timeframe, tracker.onRest(rows, ctx.clock.now(Date.now()), { before: range.to }));
      },
    });
  } catch (e) {
    return { count, error: `fill incomplete: ${translateError(e, `fetchOHLCV(${symbol}, ${timeframe})`, ctx.ex).message}` };
  }
  if (count > 0) ctx.events.emit('refill', { exchange: ctx.name, channel: 'ohlcv', symbol, timeframe, count });
  return { count };
}

/**
 * History on start: closed candles from where the previous process stopped (its last bucket in
 * Kafka: a restart gap covers the downtime, closed with the candles fetched), else from
 * `lookbackMinutes` ago; paginated, waiting for room in the outbox. The tracker then expects the
 * stream (or the poll) to continue from where it ended.
 */
export async function backfillHistory(ctx: WorkerContext, symbol: string, timeframe: string, lookbackMinutes: number): Promise<void> {
  const ref: StreamRef = { exchange: ctx.name, channel: 'ohlcv', symbol, timeframe };
  const gap = new GapTracker(ctx, ref);
  const stopped = has(ctx.ex, 'fetchOHLCV') ? openRestartGap(ctx.stoppedAt, ref, gap) : undefined;
  if ((lookbackMinutes <= 0 && !stopped) || !has(ctx.ex, 'fetchOHLCV')) return;
  const tracker = ctx.tracker(symbol, timeframe);
  const now = ctx.clock.now(Date.now());
  const from = stopped ? stopped.tsUs / 1000 : now - lookbackMinutes * 60_000;
  let error: string | undefined;
  let candles = 0;
  let lastClosed: number | undefined;
  try {
    await fetchCandlePages({
      ex: ctx.ex,
      adapter: ctx.adapter,
      symbol,
      timeframe,
      from,
      to: Infinity,
      signal: ctx.signal,
      onPage: async (rows) => {
        await ctx.outbox.waitForRoom();
        const em = tracker.onRest(rows, ctx.clock.now(Date.now()));
        candles += produceCandles(ctx, symbol, timeframe, em);
        for (const e of em) if (lastClosed === undefined || e.row[0]! > lastClosed) lastClosed = e.row[0]!;
        const lastTs = rows[rows.length - 1]![0]!;
        ctx.events.emit('backfill.progress', { exchange: ctx.name, symbol, timeframe, candles, fraction: Math.min(1, (lastTs - from) / Math.max(1, now - from)) });
      },
    });
  } catch (e) {
    error = translateError(e, 'history backfill', ctx.ex).message;
    ctx.log.warn({ symbol, timeframe, err: error }, 'candle history backfill stopped early');
  }
  if (lastClosed !== undefined) tracker.expectFrom(bucketEnd(timeframe, lastClosed));
  else if (stopped) tracker.expectFrom(stopped.tsUs / 1000);
  gap.close(msToMicros(ctx.clock.now(Date.now())), candles, error ? `backfill incomplete: ${error}` : undefined);
}

export async function runOhlcvStream(ctx: WorkerContext, symbol: string, timeframe: string, silenceMs: number): Promise<void> {
  const ref: StreamRef = { exchange: ctx.name, channel: 'ohlcv', symbol, timeframe };
  const gap = new GapTracker(ctx, ref);
  const tracker = ctx.tracker(symbol, timeframe);
  const w = watched(ctx, ref, silenceMs);
  ctx.watchdog.add(w);
  const attempts = new StreamAttempts();
  try {
    while (!ctx.signal.aborted) {
      w.active = !gap.isOpen;
      let rows: OHLCV[];
      try {
        rows = await ctx.ex.watchOHLCV(symbol, timeframe);
      } catch (e) {
        w.active = false;
        if (ctx.signal.aborted) break;
        const err = translateError(e, `watchOHLCV(${symbol}, ${timeframe})`, ctx.ex);
        if (!gap.isOpen) {
          const from = tracker.formingOpen;
          tracker.markStale();
          gap.open(from !== undefined ? msToMicros(from) : nowUs(), err.message);
        }
        await retryAfter(ctx, ref, err, attempts);
        continue;
      }
      w.lastMessageAt = Date.now();
      attempts.ok();
      ctx.events.emit('stream.messages', { ...ref, count: rows.length });
      const res = tracker.onStream(rows, Date.now());
      produceCandles(ctx, symbol, timeframe, res.emit);
      let filled: { count: number; error?: string } = { count: 0 };
      if (res.fill) filled = await fillCandles(ctx, symbol, timeframe, res.fill);
      gap.close(msToMicros(ctx.clock.now(Date.now())), filled.count, filled.error);
      if (!gap.isOpen && filled.error) ctx.log.warn({ ...ref, err: filled.error }, 'candle fill incomplete');
    }
  } finally {
    ctx.watchdog.remove(w);
  }
}

/** Closes forming candles whose end passed (quiet markets, exchanges without a final update). */
export function tickCandles(ctx: WorkerContext, symbol: string, timeframe: string): void {
  const em = ctx.tracker(symbol, timeframe).tick(ctx.clock.now(Date.now()), Date.now());
  if (em.length > 0) produceCandles(ctx, symbol, timeframe, em);
}

// ---- books ----

export async function runBookStream(ctx: WorkerContext, symbol: string, depth: number, intervalMs: number, silenceMs: number): Promise<void> {
  const ref: StreamRef = { exchange: ctx.name, channel: 'book', symbol };
  const gap = new GapTracker(ctx, ref);
  openRestartGap(ctx.stoppedAt, ref, gap);
  const limit = ctx.adapter.orderBookLimit(ctx.ex, depth);
  const w = watched(ctx, ref, silenceMs);
  ctx.watchdog.add(w);
  let latest: OrderBook | undefined;
  let lastSig = '';
  // Top-N snapshots on a fixed cadence, only when the book changed since the last one.
  const timer = setInterval(() => {
    if (!latest || gap.isOpen) return;
    const sig = `${latest.nonce}|${latest.timestamp}|${latest.bids[0]?.[0]}|${latest.asks[0]?.[0]}`;
    if (sig === lastSig) return;
    lastSig = sig;
    const rec = normalizeBook(ctx.name, symbol, latest, depth, nowUs());
    ctx.outbox.add('book', rec);
    ctx.clock.observe(rec.ts / 1000, Date.now());
  }, intervalMs);
  const attempts = new StreamAttempts();
  try {
    while (!ctx.signal.aborted) {
      w.active = !gap.isOpen;
      try {
        latest = await ctx.ex.watchOrderBook(symbol, limit);
      } catch (e) {
        w.active = false;
        latest = undefined;
        if (ctx.signal.aborted) break;
        const err = translateError(e, `watchOrderBook(${symbol})`, ctx.ex);
        gap.open(nowUs(), err.message);
        await retryAfter(ctx, ref, err, attempts);
        continue;
      }
      w.lastMessageAt = Date.now();
      attempts.ok();
      ctx.events.emit('stream.messages', { ...ref, count: 1 });
      const ts = latest.timestamp;
      gap.close(ts !== undefined ? msToMicros(ts) : nowUs(), 0);
    }
  } finally {
    clearInterval(timer);
    ctx.watchdog.remove(w);
  }
}
