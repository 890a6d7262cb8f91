/**
 * Records into the outbox, shared by the watch loops, the polls and the REST recovery: trades
 * deduplicated by the instrument's ledger, tickers once per update, candles as the tracker emits
 * them; exchange times move the exchange clock forward.
 */
import type { Trade as CcxtTrade } from 'ccxt';
import type { Ticker } from '../schemas/index.ts';
import type { CandleEmission } from './candles.ts';
import { nowUs, type WorkerContext } from './context.ts';
import { normalizeCandle } from './normalize.ts';
import type { TradeLedger } from './trades.ts';

/** Produces the trades of `batch` not produced yet; returns how many. */
export function produceTrades(ctx: WorkerContext, ledger: TradeLedger, batch: readonly CcxtTrade[], receivedAtUs: number): number {
  const { records, malformed } = ledger.take(ctx.name, batch, receivedAtUs);
  for (const r of records) ctx.outbox.add('trade', r);
  const last = records[records.length - 1];
  if (last) ctx.clock.observe(last.ts / 1000, receivedAtUs / 1000);
  if (malformed > 0) ctx.log.warn({ symbol: batch[0]?.symbol, malformed }, 'trades without price or amount skipped');
  return records.length;
}

/** The last ticker produced of an instrument (`sig`: its content). */
export interface LastTicker {
  readonly ts: number;
  readonly sig: string;
}

/** Produces a ticker unless it repeats `last`; returns the new last. */
export function produceTicker(ctx: WorkerContext, rec: Ticker, last: LastTicker | undefined): LastTicker {
  const sig = `${rec.bid}|${rec.ask}|${rec.last}|${rec.base_volume_24h}`;
  if (last && last.ts === rec.ts && last.sig === sig) return last; // the same update twice
  ctx.outbox.add('ticker', rec);
  ctx.clock.observe(rec.ts / 1000, rec.received_at / 1000);
  return { ts: rec.ts, sig };
}

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
