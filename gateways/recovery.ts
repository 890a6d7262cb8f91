/**
 * REST recovery: what a stream could not deliver, fetched over REST and produced before the
 * stream's gap is closed. Trades are refilled from the last one produced; candle buckets the
 * stream cannot vouch for are filled; on start, candle history is backfilled from where the
 * previous process stopped (or `backfillLookbackMinutes`).
 */
import type { Trade as CcxtTrade } from 'ccxt';
import { messageOf } from '../core/errors.ts';
import { RETRY, retry } from '../core/retry.ts';
import { bucketEnd, type FillRange } from './candles.ts';
import { has, translateError } from './ccxt.ts';
import type { WorkerContext } from './context.ts';
import { msToUs, nowUs } from '../core/time.ts';
import type { StreamRef } from './events.ts';
import { GapTracker } from './gaps.ts';
import { fetchCandlePages } from './history.ts';
import { openRestartGap } from './positions.ts';
import { produceCandles, produceTrades } from './produce.ts';
import { missingIds, type TradeLedger } from './trades.ts';
import type { RefillEnd } from './exchanges/index.ts';
import { tradeId } from './normalize.ts';

/** Pages a trade refill may take (a longer outage is refilled that far and the gap says so). */
const REFILL_MAX_PAGES = 1_000;

/** Retry policies of trade refills (core/retry.ts). */
export const REFILL_RETRY = {
  /**
   * After a stream outage: until REST answers or the worker closes. The stream waits for the
   * refill (Kafka keeps each instrument's trades in order), ccxt keeps caching what it receives.
   */
  stream: RETRY.tradeRefill,
  /** A trade poll: a few tries; the next scheduled poll starts again from the last trade produced. */
  poll: RETRY.tradePoll,
} as const;
export type RefillRetry = (typeof REFILL_RETRY)[keyof typeof REFILL_RETRY];

/**
 * REST recoveries running at once per ccxt instance: trade refill attempts, and apart (so the
 * candles of hundreds of instruments starting do not hold back their trades) candle fills and
 * history backfills. A takeover or restart of hundreds of instruments queues them rather than firing
 * hundreds of requests and handling their answers in one burst (which stalls the event loop:
 * the shard group's heartbeats, the live streams); ccxt's rate limiter, where enabled, still
 * paces the requests themselves. Each instrument's live stream runs meanwhile (its
 * subscription is up; what arrives waits in ccxt's cache or its mailbox), and a takeover's gap
 * not closed within the handover allowance is stated (gaps.ts).
 */
export const REFILL_CONCURRENCY = { trades: 8, candles: 4 } as const;
type RefillPool = keyof typeof REFILL_CONCURRENCY;

class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(n: number) {
    this.free = n;
  }

  /** Resolves with the release once a slot is free; rejects when `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<() => void> {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(grant);
    });
  }
}

const slotsOf = new WeakMap<object, Map<RefillPool, Slots>>();

/** Runs `fn` in one of the exchange instance's recovery slots of `pool` (REFILL_CONCURRENCY). */
export async function inRefillSlot<T>(ctx: Pick<WorkerContext, 'ex' | 'signal'>, pool: RefillPool, fn: () => Promise<T>): Promise<T> {
  let pools = slotsOf.get(ctx.ex);
  if (!pools) slotsOf.set(ctx.ex, (pools = new Map()));
  let slots = pools.get(pool);
  if (!slots) pools.set(pool, (slots = new Slots(REFILL_CONCURRENCY[pool])));
  const release = await slots.acquire(ctx.signal);
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Records recovered, and what stopped the recovery short (the gap's closing note says it). */
export interface Recovered {
  readonly count: number;
  readonly error?: string;
  /**
   * Set when the refill could not reach back to the last trade produced (RefillEnd): how many
   * trades may be missing between it and the first trade refilled, null when the ids cannot count
   * them (not consecutive).
   */
  readonly missing?: number | null;
}

/** The hole a refill left before its first trade, kept for the gap's closing note (unrefilledNote). */
interface Hole {
  /** Trades skipped, or null when not countable. */
  readonly missing: number | null;
  readonly why: string;
}
const holes = new WeakMap<TradeLedger, Hole>();

const INT = /^\d{1,30}$/;

/**
 * What one refill attempt left between its cursor and the first trade it brought: judged by the
 * ids where they are consecutive (they count it), else by the adapter's word (RefillEnd).
 */
function holeOf(contiguous: boolean, cursorId: string | undefined, oldestNew: bigint | undefined, end: RefillEnd | undefined): Hole | undefined {
  if (contiguous && cursorId !== undefined && INT.test(cursorId) && oldestNew !== undefined) {
    const skipped = Number(oldestNew - BigInt(cursorId) - 1n);
    return skipped > 0 ? { missing: skipped, why: end?.why ?? `the first trade refilled is id ${oldestNew}, not the one after ${cursorId}` } : undefined;
  }
  if (end && !end.reachedCursor) return { missing: null, why: end.why ?? 'the pages did not reach back to it' };
  return undefined;
}

function addHoles(a: Hole | undefined, b: Hole): Hole {
  if (!a) return b;
  return { missing: a.missing === null || b.missing === null ? null : a.missing + b.missing, why: a.why };
}

const holeText = (h: Hole): string =>
  `refill could not reach back to the last trade produced (${h.why}): ${h.missing === null ? 'an unknown number of trades may be missing' : `${h.missing} trades may be missing`}`;

/**
 * REST refill from the newest trade produced up to the present, retried by `policy` (each retry
 * resumes where the last one stopped; every failure is a `refill.retry` event, logged at warn).
 * A refill whose pages do not reach back to that trade (an exchange whose `fetchTrades` ignores
 * `since` and answers only its latest trades; history shorter than the outage) says so: `error`
 * and `missing`, logged at warn, and in the gap's closing note.
 */
export async function refillTrades(ctx: WorkerContext, symbol: string, fallbackTsMs: number, policy: RefillRetry = REFILL_RETRY.poll): Promise<Recovered> {
  if (!has(ctx.ex, 'fetchTrades')) return { count: 0, error: 'no REST refill (the exchange has no fetchTrades)' };
  const ledger = ctx.ledger(symbol);
  const ref: StreamRef = { exchange: ctx.name, channel: 'trades', symbol };
  const contiguous = ctx.adapter.contiguousTradeIds(ctx.ex, symbol);
  let count = 0;
  let hole: Hole | undefined;
  holes.delete(ledger);
  const result = (r: { error?: string }): Recovered => {
    if (!hole) return { count, ...r };
    const text = holeText(hole);
    ctx.log.warn({ ...ref, missing: hole.missing, refilled: count }, text);
    holes.set(ledger, hole);
    return { count, missing: hole.missing, error: r.error ? `${text}; ${r.error}` : text };
  };
  try {
    const pages = await retry(
      () => inRefillSlot(ctx, 'trades', async () => {
        let n = 0;
        const cursor = ledger.cursor(fallbackTsMs);
        let oldestNew: bigint | undefined;
        let end: RefillEnd | undefined;
        try {
          const gen = ctx.adapter.refillTrades(ctx.ex, symbol, cursor, { maxPages: REFILL_MAX_PAGES, signal: ctx.signal });
          for (;;) {
            const step = await gen.next();
            if (step.done) {
              end = step.value ?? undefined;
              break;
            }
            if (contiguous && cursor.id !== undefined && INT.test(cursor.id)) {
              const after = BigInt(cursor.id);
              for (const t of step.value) {
                const id = tradeId(t);
                if (!INT.test(id)) continue;
                const b = BigInt(id);
                if (b > after && (oldestNew === undefined || b < oldestNew)) oldestNew = b;
              }
            }
            count += produceTrades(ctx, ledger, step.value, nowUs());
            n++;
          }
        } catch (e) {
          throw translateError(e, `refill fetchTrades(${symbol})`, ctx.ex);
        } finally {
          // What this attempt brought is judged even when it failed part-way (the retry resumes after it).
          const h = n > 0 || end ? holeOf(contiguous, cursor.id, oldestNew, end) : undefined;
          if (h) hole = addHoles(hole, h);
        }
        return n;
      }),
      { ...policy, signal: ctx.signal, onRetry: (err, attempt, delayMs) => ctx.events.emit('refill.retry', { ...ref, attempt, delayMs, refilled: count, reason: messageOf(err) }) },
    );
    if (ctx.signal.aborted) return { count, error: 'refill interrupted: the gateway is closing' };
    return result(pages >= REFILL_MAX_PAGES ? { error: `refill stopped after ${REFILL_MAX_PAGES} pages` } : {});
  } catch (e) {
    return ctx.signal.aborted ? { count, error: 'refill interrupted: the gateway is closing' } : result({ error: `refill incomplete: ${messageOf(e)}` });
  } finally {
    if (count > 0) ctx.events.emit('refill', { ...ref, count });
  }
}

/**
 * The closing note of a trade gap: what the refill could not bring back. Where ids are
 * consecutive it is counted: the hole the refill left before its first trade plus the trades
 * between its last one and the resumed batch.
 */
export function unrefilledNote(contiguous: boolean, ledger: TradeLedger, resumed: readonly CcxtTrade[], error: string | undefined): string | undefined {
  const hole = holes.get(ledger);
  holes.delete(ledger);
  const after = contiguous ? missingIds(ledger.lastTradeId, resumed) : undefined;
  if (hole) {
    if (hole.missing === null || after === undefined || after === 0) return error ?? holeText(hole);
    return `${hole.missing + after} trades not refilled (${error ?? holeText(hole)})`;
  }
  if (after !== undefined) return after > 0 ? `${after} trades not refilled${error ? ` (${error})` : ''}` : undefined;
  return error ? `${error}; trades in this range may be missing (count unknown)` : undefined;
}

/** Closed candles for bucket opens [range.from, range.to) from REST; returns how many were produced. */
export async function fillCandles(ctx: WorkerContext, symbol: string, timeframe: string, range: FillRange): Promise<Recovered> {
  if (!has(ctx.ex, 'fetchOHLCV')) return { count: 0, error: 'no REST fill (the exchange has no fetchOHLCV)' };
  const tracker = ctx.tracker(symbol, timeframe);
  let count = 0;
  try {
    await inRefillSlot(ctx, 'candles', () =>
      fetchCandlePages({
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
      }),
    );
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
    await inRefillSlot(ctx, 'candles', () => fetchCandlePages({
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
    }));
  } catch (e) {
    error = translateError(e, 'history backfill', ctx.ex).message;
    ctx.log.warn({ symbol, timeframe, err: error }, 'candle history backfill stopped early');
  }
  if (lastClosed !== undefined) tracker.expectFrom(bucketEnd(timeframe, lastClosed));
  else if (stopped) tracker.expectFrom(stopped.tsUs / 1000);
  gap.close(msToUs(ctx.clock.now(Date.now())), candles, error ? `backfill incomplete: ${error}` : undefined);
}
