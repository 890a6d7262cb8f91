/**
 * The one watch loop, run per (symbol, channel): it calls the channel's source continuously
 * (ccxt pro's `watch*`; ccxt does not reconnect by itself: a dropped connection is only dialled
 * again by the next call). A failed or silent stream opens a gap (a `gap` record with `to_ts`
 * null) and retries with backoff; once data flows again the channel recovers what it can over
 * REST and the gap is closed with a second record (`to_ts` set, `refilled` = records recovered).
 *
 * What differs per channel (the call, where an outage starts, what a message produces and what
 * it recovers) is a `ChannelHandler` (streams.ts); the lifecycle is here, once.
 *
 * Fallback to REST: a websocket that fails `afterFailures` times in a row without delivering,
 * for at least `afterMs` (refused upgrades, connections dropping as they open, silence) while
 * the handler has a `poll`
 * source makes the loop poll that source every `pollIntervalMs` instead; meanwhile the websocket
 * is probed (a watch call, `probeInitialMs` doubling to `probeMaxMs` between attempts) and the
 * first message it delivers switches the loop back. Each switch is one `stream.fallback` event
 * (logged once, naming the URL and HTTP status). Gaps stay what they are: the outage before the
 * first poll (closed by it with what it refilled: a trade poll reaches back to the last trade
 * produced, so it keeps every trade) and any poll or probe failure in between.
 */
import type { TickflowError } from '../core/errors.ts';
import { backoffDelay, RETRY, sleep } from '../core/retry.ts';
import { endSilentConnections, ExchangeCallError, translateError } from './ccxt.ts';
import { WS_FALLBACK_DEFAULTS } from './config.ts';
import type { WorkerContext } from './context.ts';
import { nowUs } from '../core/time.ts';
import type { StreamRef } from './events.ts';
import type { GapTracker } from './gaps.ts';
import type { Watched } from './watchdog.ts';

/**
 * Retry policy of the watch loops. A stream that delivered for `healthyAfterMs` before it failed
 * starts again from the first delay, so it is back within about a second; one that keeps failing
 * (dials refused, connections dropping right after they open) backs off to the cap. ccxt's own
 * dial backoff (`options.ws.backoff`, CCXT_DEFAULTS in ccxt.ts) uses the same notion of healthy.
 */
export const STREAM_RETRY = {
  retriable: RETRY.exchangeStream,
  /** Errors that are not retriable (a refused subscription) are retried slower. */
  rejected: RETRY.exchangeStreamRejected,
  healthyAfterMs: 3_000,
} as const;

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

/** Delay before the next watch after a failure. An HTTP 404 (the path is not served there) is retried at the slow pace. */
export function retryDelay(err: TickflowError, attempt: number): number {
  const after = (err as { retryAfterMs?: number }).retryAfterMs;
  if (after !== undefined) return after;
  const slow = !err.retriable || (err instanceof ExchangeCallError && err.status === 404);
  const p = slow ? STREAM_RETRY.rejected : STREAM_RETRY.retriable;
  return backoffDelay(attempt, p.initialDelayMs, p.maxDelayMs);
}

/**
 * `p`, or a rejection as soon as `signal` aborts (an instrument stopped while its watch waits:
 * the call itself cannot be cancelled; its settlement is handled and dropped).
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

/** When a failing websocket falls back to REST polling, and how it is probed to come back (config: `wsFallback`). */
export interface FallbackPolicy {
  /** Fall back at all (default true). */
  readonly enabled: boolean;
  /** Consecutive websocket failures without a message before polling (default 3)... */
  readonly afterFailures: number;
  /** ...spanning at least this long (default 10 s: a brief outage is left to the websocket and its refill). */
  readonly afterMs: number;
  /** Between polls while fallen back (default 5 s). */
  readonly pollIntervalMs: number;
  /** First wait before probing the websocket again, doubling up to `probeMaxMs` (defaults 5 s, 30 s). */
  readonly probeInitialMs: number;
  readonly probeMaxMs: number;
}

export const DEFAULT_FALLBACK: FallbackPolicy = WS_FALLBACK_DEFAULTS;

/** Where a message came from: the websocket or the REST poll of a fallback. */
export type Via = 'ws' | 'poll';

/** Where a channel's messages come from: each `next()` is one call (ccxt pro's `watch*`). */
export interface Source<M> {
  /** The call as errors and logs name it: `watchTrades(BTC/USDT)`. */
  readonly call: string;
  next(): Promise<M>;
}

/** What a message proves once the stream is back: an open gap closes at `toUs`. */
export interface Resumption {
  /** µs: where data resumed (an exchange time where there is one). */
  readonly toUs: number;
  /** Records recovered over REST for the outage. */
  readonly refilled: number;
  /** What could not be recovered (appended to the gap's reason). */
  readonly note?: string | undefined;
  /** After the gap is closed: what must come after it (the message's own records). */
  readonly after?: () => void;
}

/**
 * One channel of one instrument (streams.ts builds one per channel). The loop owns the lifecycle;
 * the handler says what its messages mean. A source is a field, not the loop's business, so a
 * channel could be given a REST source beside its websocket one.
 */
export interface ChannelHandler<M> {
  readonly ref: StreamRef;
  /** No message for this long on a healthy connection: the stream is checked (`isQuiet`), then ended. */
  readonly silenceMs: number;
  /** The websocket source. */
  readonly ws: Source<M>;
  /** The REST source the loop polls while the websocket keeps failing (none: no fallback). */
  readonly poll?: Source<M>;
  /** The stream's gap tracker (it may be open from the start: the downtime of a restart, positions.ts). */
  readonly gap: GapTracker;
  /** Records in a message (the `stream.messages` count). */
  count(m: M): number;
  /** The stream failed with no gap open: where the outage starts (µs); forget what it cannot vouch for. */
  down(): number;
  /**
   * A message (received at `receivedAtUs`): produce it (in `after` where its records must follow
   * the gap's closing record), recovering what the outage lost first. The handler may itself open
   * the gap (a loss detected in the data). 'closing': the worker closed mid-way, stop here.
   */
  receive(m: M, receivedAtUs: number, via: Via): Resumption | 'closing' | Promise<Resumption | 'closing'>;
  /** The stream looks silent: true when it is merely quiet (the default: it is dead). */
  isQuiet?(): Promise<boolean>;
  /** The loop ended. */
  close?(): void;
}

/** Runs a channel until the worker closes. */
export async function runWatch<M>(ctx: WorkerContext, h: ChannelHandler<M>): Promise<void> {
  const { ref, gap } = h;
  const w = watched(ctx, h);
  ctx.watchdog.add(w);
  const attempts = new StreamAttempts();
  const policy = ctx.fallback ?? DEFAULT_FALLBACK;
  /** Websocket failures since its last message, and when the first of them was. */
  let failing = 0;
  let failingSince = 0;
  const deliver = async (m: M, via: Via): Promise<boolean> => {
    const receivedAtUs = nowUs();
    w.lastMessageAt = Date.now();
    attempts.ok();
    ctx.events.emit('stream.messages', { ...ref, count: h.count(m) });
    const r = await h.receive(m, receivedAtUs, via);
    // Closing mid-recovery: the gap stays open; the next start recovers from what Kafka holds.
    if (r === 'closing') return false;
    gap.close(r.toUs, r.refilled, r.note);
    r.after?.();
    return true;
  };
  try {
    while (!ctx.signal.aborted) {
      let m: M;
      w.active = !gap.isOpen;
      try {
        m = await abortable(h.ws.next(), ctx.signal);
      } catch (e) {
        w.active = false;
        if (ctx.signal.aborted) break;
        const err = translateError(e, h.ws.call, ctx.ex);
        if (!gap.isOpen) gap.open(h.down(), err.message);
        if (failing++ === 0) failingSince = Date.now();
        if (h.poll && policy.enabled && failing >= policy.afterFailures && Date.now() - failingSince >= policy.afterMs) {
          const back = await pollUntilWsRecovers(ctx, h, h.poll, policy, err, deliver);
          failing = 0;
          if (back === undefined || !(await deliver(back, 'ws'))) break;
          continue;
        }
        await retryAfter(ctx, ref, err, attempts);
        continue;
      }
      failing = 0;
      if (!(await deliver(m, 'ws'))) break;
    }
  } finally {
    ctx.watchdog.remove(w);
    // Ending with a takeover's quiet gap still open (closing, moved away): what it did not recover is stated.
    gap.stateQuiet();
    h.close?.();
  }
}

/**
 * The fallback: polls `poll` every `pollIntervalMs` while probing the websocket with backoff;
 * returns the probe's first message (the websocket is back), or undefined when the worker closes.
 */
async function pollUntilWsRecovers<M>(
  ctx: WorkerContext,
  h: ChannelHandler<M>,
  poll: Source<M>,
  policy: FallbackPolicy,
  wsErr: TickflowError,
  deliver: (m: M, via: Via) => Promise<boolean>,
): Promise<M | undefined> {
  const { ref, gap } = h;
  const site = wsErr instanceof ExchangeCallError ? wsErr : undefined;
  const since = Date.now();
  ctx.events.emit('stream.fallback', { ...ref, to: 'poll', call: poll.call, pollIntervalMs: policy.pollIntervalMs, url: site?.url, status: site?.status, reason: wsErr.message });
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let probed: { m: M } | undefined;
  let lastProbeErr = wsErr;
  const probe = (async () => {
    for (let attempt = 1; !stop.signal.aborted; attempt++) {
      await sleep(backoffDelay(attempt, policy.probeInitialMs, policy.probeMaxMs), stop.signal).catch(() => undefined);
      if (stop.signal.aborted) return;
      try {
        probed = { m: await h.ws.next() };
        return;
      } catch (e) {
        if (stop.signal.aborted) return;
        lastProbeErr = translateError(e, h.ws.call, ctx.ex);
        ctx.log.debug({ ...ref, attempt, err: lastProbeErr.message }, 'websocket probe failed; still polling');
      }
    }
  })();
  const attempts = new StreamAttempts();
  try {
    while (!ctx.signal.aborted && !probed) {
      let delayMs = policy.pollIntervalMs;
      try {
        const m = await poll.next();
        if (!(await deliver(m, 'poll'))) return undefined;
      } catch (e) {
        if (ctx.signal.aborted) break;
        const err = translateError(e, poll.call, ctx.ex);
        if (!gap.isOpen) gap.open(h.down(), `${err.message} (polling: the websocket is failing: ${wsErr.message})`);
        const attempt = attempts.failed();
        delayMs = Math.max(delayMs, retryDelay(err, attempt));
        ctx.events.emit('stream.retry', { ...ref, attempt, delayMs, reason: err.message });
      }
      if (probed) break;
      await Promise.race([sleep(delayMs, stop.signal).catch(() => undefined), probe]);
    }
  } finally {
    stop.abort();
    ctx.signal.removeEventListener('abort', onAbort);
  }
  await probe;
  if (!probed || ctx.signal.aborted) return undefined;
  const url = lastProbeErr instanceof ExchangeCallError ? lastProbeErr.url : site?.url;
  ctx.events.emit('stream.fallback', { ...ref, to: 'ws', call: h.ws.call, pollIntervalMs: policy.pollIntervalMs, url, status: undefined, reason: `websocket back after ${((Date.now() - since) / 1000).toFixed(1)}s of polling` });
  return probed.m;
}

/** A watch failed: report the retry, then wait its backoff (or until the worker stops). */
async function retryAfter(ctx: WorkerContext, ref: StreamRef, err: TickflowError, attempts: StreamAttempts): Promise<void> {
  const attempt = attempts.failed();
  const delayMs = retryDelay(err, attempt);
  ctx.events.emit('stream.retry', { ...ref, attempt, delayMs, reason: err.message });
  await sleep(delayMs, ctx.signal).catch(() => undefined);
}

function watched<M>(ctx: WorkerContext, h: ChannelHandler<M>): Watched {
  const w: Watched = {
    ref: h.ref,
    silenceMs: h.silenceMs,
    lastMessageAt: Date.now(),
    active: false,
    checking: false,
    onSilence: async () => {
      if (h.isQuiet && (await h.isQuiet())) w.lastMessageAt = Date.now();
      else endSilent(ctx, w);
    },
  };
  return w;
}

/** Ends the connection of a silent stream so the next watch dials again (the loop opens the gap). */
function endSilent(ctx: WorkerContext, w: Watched): void {
  const reason = `no message for ${Math.round(w.silenceMs / 1000)}s`;
  const n = endSilentConnections(ctx.ex, w.ref.symbol, w.ref.channel, reason);
  if (n === 0) ctx.log.warn({ ...w.ref }, `${reason}, but no websocket connection of this stream was found to end`);
  w.lastMessageAt = Date.now();
}
