/**
 * The websocket channels: one handler per channel, run by the watch loop (watch.ts) per symbol
 * (and timeframe); `multi` is the instrument's share of a multi-symbol subscription
 * (multiplex.ts), else the handler calls ccxt's per-symbol `watch*`. Each says which `watch*` it calls, where its outage starts, and what a
 * message produces and recovers over REST (recovery.ts) before the gap closes.
 */
import type { OHLCV, OrderBook, Ticker as CcxtTicker, Trade as CcxtTrade } from 'ccxt';
import type { Channel } from './config.ts';
import { has, releaseConsumedTrades } from './ccxt.ts';
import type { WorkerContext } from './context.ts';
import { msToUs, nowUs } from '../core/time.ts';
import type { StreamRef } from './events.ts';
import { GapTracker } from './gaps.ts';
import { normalizeBook, normalizeTicker } from './normalize.ts';
import { openRestartGap } from './positions.ts';
import { produceCandles, produceTicker, produceTrades, type LastTicker } from './produce.ts';
import { fillCandles, REFILL_RETRY, refillTrades, unrefilledNote, type Recovered } from './recovery.ts';
import { idJump } from './trades.ts';
import { timeframeMs } from './candles.ts';
import { isOverflowed } from './multiplex.ts';
import type { ChannelHandler, Source, Via } from './watch.ts';


function streamRef(ctx: WorkerContext, channel: Channel, symbol: string, timeframe?: string): StreamRef {
  return { exchange: ctx.name, channel, symbol, ...(timeframe ? { timeframe } : {}) };
}

/**
 * Trades: deduplicated by the ledger. After an outage, a ccxt cache overflow (`tradesLimit`
 * trades between two calls) or an id jump, trades are refilled from the last one produced before
 * the resumed batch is produced, so Kafka keeps each instrument's trades in order.
 */
export function tradesChannel(ctx: WorkerContext, symbol: string, silenceMs: number, multi?: Source<CcxtTrade[]>): ChannelHandler<CcxtTrade[]> {
  const ref = streamRef(ctx, 'trades', symbol);
  const ledger = ctx.ledger(symbol);
  const gap = new GapTracker(ctx, ref);
  // Closed by the first batch, after the refill from the stored trade (or from the gateway's
  // start, when Kafka had nothing of this stream and the streams waited for it).
  const stopped = openRestartGap(ctx.stoppedAt, ref, gap);
  const tradesLimit = Number((ctx.ex.options as { tradesLimit?: unknown }).tradesLimit ?? 1000);
  const contiguous = ctx.adapter.contiguousTradeIds(ctx.ex, symbol);
  const startedAt = ctx.clock.now(Date.now());
  let lastVia: Via = 'ws';
  return {
    ref,
    silenceMs,
    gap,
    ws: multi ?? {
      call: `watchTrades(${symbol})`,
      next: async () => {
        const batch = await ctx.ex.watchTrades(symbol);
        releaseConsumedTrades(ctx.ex, symbol, batch);
        return batch;
      },
    },
    // The latest page; `receive` refills from the last trade produced before producing it, so
    // polling keeps every trade the exchange's REST history still holds (and says what it cannot).
    ...(has(ctx.ex, 'fetchTrades') ? { poll: { call: `fetchTrades(${symbol})`, next: () => ctx.ex.fetchTrades(symbol) } } : {}),
    count: (batch) => batch.length,
    down: () => (ledger.lastTradeTsMs !== undefined ? msToUs(ledger.lastTradeTsMs) : nowUs()),
    receive: async (batch, receivedAtUs, via) => {
      const produce = () => void produceTrades(ctx, ledger, batch, receivedAtUs);
      const resync = via === 'ws' && lastVia === 'poll';
      lastVia = via;
      if (via === 'poll') {
        // Everything since the last trade produced (the gateway's restart position while its
        // gap is open; nothing before the first poll), then the page; what the refill could not
        // reach is a gap, opened here when none is.
        const wasOpen = gap.isOpen;
        const fromMs = ledger.lastTradeTsMs;
        const r = await refillTrades(ctx, symbol, stopped && wasOpen ? stopped.tsUs / 1000 : ctx.clock.now(Date.now()), REFILL_RETRY.poll);
        if (r.error && ctx.signal.aborted) return 'closing';
        if (r.error && !wasOpen) gap.open(msToUs(fromMs ?? Date.now()), `polling fetchTrades(${symbol}) while the websocket fails`);
        const lastTs = batch[batch.length - 1]?.timestamp ?? ledger.lastTradeTsMs;
        return { toUs: lastTs !== undefined ? msToUs(lastTs) : nowUs(), refilled: r.count, note: unrefilledNote(contiguous, ledger, batch, r.error), after: produce };
      }
      if (resync && !gap.isOpen) {
        // Back on the websocket: what arrived between the last poll and this batch, over REST,
        // first; a gap only if that fails.
        const r = await refillTrades(ctx, symbol, ctx.clock.now(Date.now()), REFILL_RETRY.poll);
        if (!r.error) return { toUs: receivedAtUs, refilled: 0, after: produce };
        if (ctx.signal.aborted) return 'closing';
        gap.open(msToUs(ledger.lastTradeTsMs ?? Date.now()), `back on the websocket after polling, the trades in between could not be fetched: ${r.error}`);
      }
      const overflow = (multi ? isOverflowed(batch) : batch.length >= tradesLimit) && ledger.lastTradeId !== undefined;
      const jump = contiguous && idJump(ledger.lastTradeId, batch);
      if (!gap.isOpen && !overflow && !jump) return { toUs: receivedAtUs, refilled: 0, after: produce };
      if (!gap.isOpen) {
        const why = overflow
          ? `ccxt trade cache full: ${batch.length} trades arrived between two calls (options.tradesLimit ${tradesLimit}); some may be lost`
          : `trade ids jumped after ${ledger.lastTradeId}: trades missed on the stream`;
        gap.open(msToUs(ledger.lastTradeTsMs ?? Date.now()), why);
      }
      const firstTs = batch[0]?.timestamp;
      const r = await refillTrades(ctx, symbol, stopped ? stopped.tsUs / 1000 : ctx.clock.now(Date.now()), REFILL_RETRY.stream);
      // Closing mid-refill: the batch stays unproduced; the next start refills from the last trade in Kafka.
      if (r.error && ctx.signal.aborted) return 'closing';
      return { toUs: firstTs !== undefined ? msToUs(firstTs) : nowUs(), refilled: r.count, note: unrefilledNote(contiguous, ledger, batch, r.error), after: produce };
    },
    // A quiet market is not a dead stream: only trades REST knows and the stream did not deliver
    // (older than a moment, so not merely in flight) prove it dead.
    isQuiet: async () => {
      if (!has(ctx.ex, 'fetchTrades')) return false;
      const known = ledger.lastTradeTsMs ?? startedAt;
      const cutoff = ctx.clock.now(Date.now()) - 2_000;
      const latest = await ctx.ex.fetchTrades(symbol, undefined, 10);
      return !latest.some((t) => (t.timestamp ?? 0) > known && (t.timestamp ?? 0) < cutoff);
    },
  };
}

/** Tickers: each update once; the outage cannot be refilled. */
export function tickerChannel(ctx: WorkerContext, symbol: string, silenceMs: number, multi?: Source<CcxtTicker>): ChannelHandler<CcxtTicker> {
  const ref = streamRef(ctx, 'ticker', symbol);
  const gap = new GapTracker(ctx, ref);
  openRestartGap(ctx.stoppedAt, ref, gap);
  const params = ctx.adapter.watchTickerParams(ctx.ex, symbol);
  let last: LastTicker | undefined;
  return {
    ref,
    silenceMs,
    gap,
    ws: multi ?? { call: `watchTicker(${symbol})`, next: () => ctx.ex.watchTicker(symbol, params) },
    ...(has(ctx.ex, 'fetchTicker') ? { poll: { call: `fetchTicker(${symbol})`, next: () => ctx.ex.fetchTicker(symbol) } } : {}),
    count: () => 1,
    down: () => last?.ts ?? nowUs(),
    receive: (t, receivedAtUs) => {
      const rec = normalizeTicker(ctx.name, t, receivedAtUs, symbol);
      return { toUs: rec.ts, refilled: 0, after: () => (last = produceTicker(ctx, rec, last)) };
    },
  };
}

/**
 * Candles of one timeframe: the tracker derives `closed`; after an outage the buckets the stream
 * cannot vouch for are filled over REST.
 */
export function ohlcvChannel(ctx: WorkerContext, symbol: string, timeframe: string, silenceMs: number, multi?: Source<OHLCV[]>): ChannelHandler<OHLCV[]> {
  const ref = streamRef(ctx, 'ohlcv', symbol, timeframe);
  const tracker = ctx.tracker(symbol, timeframe);
  const tfMs = timeframeMs(timeframe);
  /** Where polling starts (ms): the bucket the outage began in, then the last few buckets. */
  let pollFrom: number | undefined;
  return {
    ref,
    silenceMs,
    gap: new GapTracker(ctx, ref),
    ws: multi ?? { call: `watchOHLCV(${symbol}, ${timeframe})`, next: () => ctx.ex.watchOHLCV(symbol, timeframe) },
    ...(has(ctx.ex, 'fetchOHLCV')
      ? {
          poll: {
            call: `fetchOHLCV(${symbol}, ${timeframe})`,
            next: () => {
              const recent = ctx.clock.now(Date.now()) - 3 * tfMs;
              return ctx.ex.fetchOHLCV(symbol, timeframe, Math.min(pollFrom ?? recent, recent), ctx.adapter.ohlcvPageLimit(ctx.ex));
            },
          },
        }
      : {}),
    count: (rows) => rows.length,
    down: () => {
      const from = tracker.formingOpen;
      tracker.markStale();
      pollFrom ??= from;
      return from !== undefined ? msToUs(from) : nowUs();
    },
    receive: async (rows, receivedAtUs, via) => {
      if (via === 'poll') {
        const now = ctx.clock.now(Date.now());
        const em = tracker.onRest(rows, now, { forming: true });
        produceCandles(ctx, symbol, timeframe, em);
        pollFrom = undefined;
        return { toUs: msToUs(now), refilled: em.filter((e) => e.closed).length };
      }
      // One instant for the forming throttle and the records' received_at.
      const res = tracker.onStream(rows, receivedAtUs / 1000);
      produceCandles(ctx, symbol, timeframe, res.emit, receivedAtUs);
      const filled: Recovered = res.fill ? await fillCandles(ctx, symbol, timeframe, res.fill) : { count: 0 };
      const warn = () => ctx.log.warn({ ...ref, err: filled.error }, 'candle fill incomplete');
      return { toUs: msToUs(ctx.clock.now(Date.now())), refilled: filled.count, note: filled.error, ...(filled.error ? { after: warn } : {}) };
    },
  };
}

/** Closes forming candles whose end passed (quiet markets, exchanges without a final update). */
export function tickCandles(ctx: WorkerContext, symbol: string, timeframe: string): void {
  const now = Date.now(); // one instant for the forming throttle and the records' received_at
  const em = ctx.tracker(symbol, timeframe).tick(ctx.clock.now(now), now);
  if (em.length > 0) produceCandles(ctx, symbol, timeframe, em, msToUs(now));
}

/** Book tops: top-N snapshots on a fixed cadence (`intervalMs`), only when the book changed. */
export function bookChannel(ctx: WorkerContext, symbol: string, book: { depth: number; intervalMs: number; silenceTimeoutMs: number }, multi?: Source<OrderBook>): ChannelHandler<OrderBook> {
  const ref = streamRef(ctx, 'book', symbol);
  const gap = new GapTracker(ctx, ref);
  openRestartGap(ctx.stoppedAt, ref, gap);
  const limit = ctx.adapter.orderBookLimit(ctx.ex, book.depth);
  let latest: OrderBook | undefined;
  let lastSig = '';
  const timer = setInterval(() => {
    if (!latest || gap.isOpen) return;
    const sig = `${latest.nonce}|${latest.timestamp}|${latest.bids[0]?.[0]}|${latest.asks[0]?.[0]}`;
    if (sig === lastSig) return;
    lastSig = sig;
    const rec = normalizeBook(ctx.name, symbol, latest, book.depth, nowUs());
    ctx.outbox.add('book', rec);
    ctx.clock.observe(rec.ts / 1000, Date.now());
  }, book.intervalMs);
  return {
    ref,
    silenceMs: book.silenceTimeoutMs,
    gap,
    ws: multi ?? { call: `watchOrderBook(${symbol})`, next: () => ctx.ex.watchOrderBook(symbol, limit) },
    ...(has(ctx.ex, 'fetchOrderBook') ? { poll: { call: `fetchOrderBook(${symbol})`, next: () => ctx.ex.fetchOrderBook(symbol, limit) } } : {}),
    count: () => 1,
    down: () => {
      latest = undefined;
      return nowUs();
    },
    receive: (ob) => {
      latest = ob;
      return { toUs: ob.timestamp !== undefined ? msToUs(ob.timestamp) : nowUs(), refilled: 0 };
    },
    close: () => clearInterval(timer),
  };
}
