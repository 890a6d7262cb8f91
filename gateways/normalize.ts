/**
 * ccxt's unified structures → tickflow records. Pure functions: no clock (times are passed in),
 * no I/O, no ccxt classes in the output. Timestamps become microseconds since the epoch; a
 * number the exchange does not give is null, never 0 or NaN.
 */
import { createHash } from 'node:crypto';
import type { Market, OHLCV, OrderBook, Ticker as CcxtTicker, Trade as CcxtTrade } from 'ccxt';
import { msToUs } from '../core/time.ts';
import type { Book, Candle, Instrument, Level, Side, Ticker, Trade } from '../schemas/index.ts';

/** ccxt's precision modes (ccxt/js/src/base/functions/number.js). */
export const DECIMAL_PLACES = 2;
export const SIGNIFICANT_DIGITS = 3;
export const TICK_SIZE = 4;

/** A finite number, else null. */
export function num(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const SIDES: ReadonlySet<string> = new Set<Side>(['buy', 'sell']);

/**
 * The id of a trade: the exchange's, else a deterministic hash of what identifies it. Two
 * trades that agree on time, price, amount and side would share a hash; no exchange seen
 * without ids prints such twins in the same millisecond, and the alternative (an ordinal
 * within a batch) would differ between the websocket and a REST refill of the same trade.
 */
export function tradeId(t: Pick<CcxtTrade, 'id' | 'timestamp' | 'price' | 'amount' | 'side'>): string {
  if (t.id !== undefined && t.id !== null && String(t.id) !== '') return String(t.id);
  const h = createHash('sha1').update(`${t.timestamp}|${t.price}|${t.amount}|${t.side ?? ''}`).digest('hex');
  return `h${h.slice(0, 20)}`;
}

/** undefined when the trade lacks a price or an amount (counted as malformed by the caller). */
export function normalizeTrade(exchange: string, t: CcxtTrade, receivedAtUs: number): Trade | undefined {
  const price = num(t.price);
  const amount = num(t.amount);
  if (price === null || amount === null) return undefined;
  const ts = num(t.timestamp);
  return {
    exchange,
    symbol: t.symbol!,
    ts: ts === null ? receivedAtUs : msToUs(ts),
    received_at: receivedAtUs,
    id: tradeId(t),
    side: t.side && SIDES.has(t.side) ? (t.side as Side) : 'unknown',
    price,
    amount,
  };
}

export function normalizeTicker(exchange: string, t: CcxtTicker, receivedAtUs: number, symbol?: string): Ticker {
  const ts = num(t.timestamp);
  return {
    exchange,
    symbol: t.symbol ?? symbol ?? '',
    ts: ts === null ? receivedAtUs : msToUs(ts),
    received_at: receivedAtUs,
    bid: num(t.bid),
    bid_size: num(t.bidVolume),
    ask: num(t.ask),
    ask_size: num(t.askVolume),
    last: num(t.last ?? t.close),
    open_24h: num(t.open),
    high_24h: num(t.high),
    low_24h: num(t.low),
    base_volume_24h: num(t.baseVolume),
    quote_volume_24h: num(t.quoteVolume),
  };
}

/** One ccxt OHLCV row; undefined when a price or the volume is missing. */
export function normalizeCandle(exchange: string, symbol: string, timeframe: string, row: OHLCV, closed: boolean, receivedAtUs: number): Candle | undefined {
  const [ts, o, h, l, c, v] = row.map(num);
  if (ts == null || o == null || h == null || l == null || c == null || v == null) return undefined;
  return { exchange, symbol, ts: msToUs(ts), received_at: receivedAtUs, timeframe, open: o, high: h, low: l, close: c, volume: v, closed };
}

function levels(side: OrderBook['bids'], depth: number): Level[] {
  const out: Level[] = [];
  for (const lvl of side) {
    if (out.length >= depth) break;
    const price = num(lvl[0]);
    const amount = num(lvl[1]);
    if (price !== null && amount !== null) out.push({ price, amount });
  }
  return out;
}

export function normalizeBook(exchange: string, symbol: string, ob: Pick<OrderBook, 'bids' | 'asks' | 'timestamp' | 'nonce'>, depth: number, receivedAtUs: number): Book {
  const ts = num(ob.timestamp);
  const seq = num(ob.nonce);
  return {
    exchange,
    symbol,
    ts: ts === null ? receivedAtUs : msToUs(ts),
    received_at: receivedAtUs,
    depth,
    bids: levels(ob.bids, depth),
    asks: levels(ob.asks, depth),
    sequence: seq !== null && Number.isSafeInteger(seq) ? seq : null,
  };
}

/** A precision in the exchange's precision mode → a step (tick size); null when it cannot be one. */
export function increment(precision: unknown, precisionMode: number): number | null {
  const p = num(precision);
  if (p === null) return null;
  if (precisionMode === TICK_SIZE) return p > 0 ? p : null;
  if (precisionMode === DECIMAL_PLACES) return Number((10 ** -p).toPrecision(12));
  return null; // SIGNIFICANT_DIGITS: the step depends on the price
}

export function normalizeInstrument(exchange: string, m: NonNullable<Market>, precisionMode: number, loadedAtUs: number): Instrument {
  return {
    exchange,
    symbol: m.symbol,
    ts: loadedAtUs,
    received_at: loadedAtUs,
    base: m.base,
    quote: m.quote,
    type: m.type ?? 'spot',
    // ccxt leaves `active` undefined where the exchange does not say; it is listed, so trading.
    active: m.active !== false,
    price_increment: increment(m.precision?.price, precisionMode),
    amount_increment: increment(m.precision?.amount, precisionMode),
    min_amount: num(m.limits?.amount?.min),
    exchange_symbol: String(m.id),
  };
}
