/**
 * Records into the outbox, shared by the watch loops, the polls and the REST recovery: trades
 * deduplicated by the instrument's ledger, tickers once per content, candles as the tracker emits
 * them; exchange times move the exchange clock forward.
 */
import type { Trade as CcxtTrade } from 'ccxt';
import type { Ticker } from '../schemas/index.ts';
import type { CandleEmission } from './candles.ts';
import type { WorkerContext } from './context.ts';
import { nowUs } from '../core/time.ts';
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

/** A ticker's content: every value but its times. */
const tickerContent = (r: Ticker): string =>
  [r.bid, r.bid_size, r.ask, r.ask_size, r.last, r.open_24h, r.high_24h, r.low_24h, r.base_volume_24h, r.quote_volume_24h].join('|');

/**
 * Produces a ticker unless its content repeats `last`'s; returns the new last. A repeat is not a
 * new ticker, whatever its time: a poll of an exchange whose tickers carry no time (Kraken,
 * Bybit; `ts` is then the receive time) would otherwise store the same ticker on every poll,
 * stamped with the poll's time. So the ticker held carries the exchange's time (ccxt's
 * `timestamp`) where there is one, else the time its content was first received.
 */
export function produceTicker(ctx: WorkerContext, rec: Ticker, last: LastTicker | undefined): LastTicker {
  const sig = tickerContent(rec);
  if (last && last.sig === sig) return last;
  ctx.outbox.add('ticker', rec);
  // ts = received_at: no exchange time (normalizeTicker), nothing to tell about the exchange clock.
  if (rec.ts !== rec.received_at) ctx.clock.observe(rec.ts / 1000, rec.received_at / 1000);
  return { ts: rec.ts, sig };
}

/**
 * `receivedAtUs` (the records' `received_at`): the instant the tracker was given for these
 * emissions, where it throttled forming updates by it (a second clock read can come tens of ms
 * later on a loaded machine, and the updates would look closer together than the throttle allows).
 */
export function produceCandles(ctx: WorkerContext, symbol: string, timeframe: string, emissions: readonly CandleEmission[], receivedAtUs: number = nowUs()): number {
  const at = receivedAtUs;
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
