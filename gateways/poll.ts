/**
 * REST polling on a cron schedule (node-cron, with seconds), for channels configured `mode: poll`
 * or falling back to it where the exchange cannot stream. One task per channel walks the
 * entry's symbols in turn (ccxt's rate limiter paces the calls); a run still going when the next
 * is due is skipped, not stacked. A failing poll opens a gap for that symbol and channel, the
 * next good one closes it (trades are fetched from the last one produced, so nothing is lost
 * while the exchange answers again within its history).
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Channel } from './config.ts';
import { assertNever } from '../schemas/catalog.ts';
import { translateError } from './ccxt.ts';
import type { StreamRef } from './events.ts';
import { normalizeBook, normalizeTicker } from './normalize.ts';
import { openRestartGap } from './positions.ts';
import type { WorkerContext } from './context.ts';
import { msToUs, nowUs } from '../core/time.ts';
import { GapTracker } from './gaps.ts';
import { produceCandles, produceTicker, produceTrades, type LastTicker } from './produce.ts';
import { refillTrades } from './recovery.ts';
import { timeframeMs } from './candles.ts';

export interface PollPlan {
  readonly channel: Channel;
  readonly schedule: string;
  readonly symbols: readonly string[];
  readonly timeframes?: readonly string[];
  readonly depth?: number;
}

export function startPoll(ctx: WorkerContext, plan: PollPlan): ScheduledTask {
  const gaps = new Map<string, GapTracker>();
  const lastTicker = new Map<string, LastTicker>();
  const gapOf = (symbol: string, timeframe?: string) => {
    const k = `${symbol}\u0000${timeframe ?? ''}`;
    let g = gaps.get(k);
    if (!g) {
      const ref: StreamRef = { exchange: ctx.name, channel: plan.channel, symbol, ...(timeframe ? { timeframe } : {}) };
      gaps.set(k, (g = new GapTracker(ctx, ref)));
      // After a restart the first successful poll closes the downtime's gap (candles: backfillHistory's).
      if (plan.channel !== 'ohlcv') openRestartGap(ctx.stoppedAt, ref, g);
    }
    return g;
  };

  async function pollOne(symbol: string, timeframe?: string): Promise<void> {
    const gap = gapOf(symbol, timeframe);
    const ref = { exchange: ctx.name, channel: plan.channel, symbol, ...(timeframe ? { timeframe } : {}) };
    try {
      switch (plan.channel) {
        case 'trades': {
          const ledger = ctx.ledger(symbol);
          let count: number;
          const since = ctx.stoppedAt?.(ref); // the gateway's start, when it had to wait for Kafka
          if (ledger.lastTradeId === undefined && ledger.lastTradeTsMs === undefined && !since) {
            // First poll: the latest page is where this instrument's history starts for us.
            count = produceTrades(ctx, ledger, await ctx.ex.fetchTrades(symbol), nowUs());
          } else {
            const r = await refillTrades(ctx, symbol, since ? since.tsUs / 1000 : ctx.clock.now(Date.now()));
            if (r.error) throw new Error(r.error);
            count = r.count;
          }
          ctx.events.emit('stream.messages', { ...ref, count });
          gap.close(msToUs(ledger.lastTradeTsMs ?? Date.now()), gap.isOpen ? count : 0);
          break;
        }
        case 'ticker': {
          const rec = normalizeTicker(ctx.name, await ctx.ex.fetchTicker(symbol), nowUs(), symbol);
          ctx.events.emit('stream.messages', { ...ref, count: 1 });
          gap.close(rec.ts, 0);
          lastTicker.set(symbol, produceTicker(ctx, rec, lastTicker.get(symbol)));
          break;
        }
        case 'ohlcv': {
          const tf = timeframe!;
          const tracker = ctx.tracker(symbol, tf);
          const now = ctx.clock.now(Date.now());
          const rows = await ctx.ex.fetchOHLCV(symbol, tf, now - 3 * timeframeMs(tf), ctx.adapter.ohlcvPageLimit(ctx.ex));
          ctx.events.emit('stream.messages', { ...ref, count: rows.length });
          produceCandles(ctx, symbol, tf, tracker.onRest(rows, now, { forming: true }));
          gap.close(msToUs(now), 0);
          break;
        }
        case 'book': {
          const depth = plan.depth ?? 10;
          const ob = await ctx.ex.fetchOrderBook(symbol, ctx.adapter.orderBookLimit(ctx.ex, depth));
          ctx.events.emit('stream.messages', { ...ref, count: 1 });
          const rec = normalizeBook(ctx.name, symbol, ob, depth, nowUs());
          gap.close(rec.ts, 0);
          ctx.outbox.add('book', rec);
          break;
        }
        default:
          assertNever(plan.channel);
      }
    } catch (e) {
      if (ctx.signal.aborted) return;
      const err = translateError(e, `poll ${plan.channel} ${symbol}${timeframe ? ` ${timeframe}` : ''}`, ctx.ex);
      const last = plan.channel === 'trades' ? ctx.ledger(symbol).lastTradeTsMs : undefined;
      gap.open(last !== undefined ? msToUs(last) : nowUs(), err.message);
      ctx.events.emit('stream.retry', { ...ref, attempt: 1, delayMs: 0, reason: err.message });
    }
  }

  const task = cron.schedule(
    plan.schedule,
    async () => {
      for (const symbol of plan.symbols) {
        if (ctx.signal.aborted) return;
        if (plan.channel === 'ohlcv') for (const tf of plan.timeframes ?? ['1m']) await pollOne(symbol, tf);
        else await pollOne(symbol);
      }
    },
    { name: `${ctx.name}:${plan.channel}`, noOverlap: true },
  );
  return task;
}
