/**
 * Coinbase Exchange wire formats, shared by REST and websocket so both print the same numbers.
 * Prices and sizes are fixed-point strings ("25820.42000000"), times ISO 8601 with microseconds
 * ("2023-09-10T13:47:41.447000Z"), trade ids JSON numbers, product ids `BTC-USD`. Coinbase's
 * `side` is the MAKER's side (a taker buy prints `"side":"sell"`); ccxt turns it back.
 */
import { type Interval, bucketOpen, nextOpen } from '../../candles.ts';
import type { Kline } from '../../candles.ts';
import type { BookSnapshot, Stats24h } from '../../engine.ts';
import { type MarketSpec, fmtUnits, unitsToNumber } from '../../market.ts';
import type { TickerText } from '../../market-engine.ts';
import type { TradeStore } from '../../trades.ts';

export const px = (spec: MarketSpec, ticks: number): string => fmtUnits(ticks, spec.tickDecimals);
export const sz = (spec: MarketSpec, steps: number): string => fmtUnits(steps, spec.stepDecimals);
/** The engine's product id in Coinbase's spelling: BTC-USDT. */
export const productId = (spec: MarketSpec): string => `${spec.base}-${spec.quote}`;

/** ms → Coinbase's ISO time with microseconds. */
export function isoTime(ms: number): string {
  const s = new Date(Math.floor(ms)).toISOString();
  return `${s.slice(0, -1)}000Z`;
}

/**
 * The `sequence` of a product's feed message for trade `id`: Coinbase numbers every message of a
 * product; the sim derives it from the trade id (grows with it, never equals it).
 */
export const matchSequence = (id: number): number => 50_000_000_000 + id;

/** `GET /products` entry, as Coinbase sends it today. */
export function product(spec: MarketSpec): Record<string, unknown> {
  return {
    id: productId(spec),
    base_currency: spec.base,
    quote_currency: spec.quote,
    quote_increment: px(spec, 1),
    base_increment: sz(spec, 1),
    display_name: `${spec.base}-${spec.quote}`,
    min_market_funds: '1',
    margin_enabled: false,
    post_only: false,
    limit_only: false,
    cancel_only: false,
    status: 'online',
    status_message: '',
    trading_disabled: false,
    fx_stablecoin: false,
    max_slippage_percentage: '0.02000000',
    auction_mode: false,
    high_bid_limit_percentage: '',
  };
}

/** `GET /currencies` entry. */
export function currency(code: string, decimals: number): Record<string, unknown> {
  const min = fmtUnits(1, decimals);
  return {
    id: code,
    name: code,
    min_size: min,
    status: 'online',
    message: '',
    max_precision: min,
    convertible_to: [],
    details: { type: 'crypto', symbol: null, network_confirmations: 6, sort_order: 0, push_payment_methods: [], group_types: [], display_name: null, processing_time_seconds: null, min_withdrawal_amount: Number(min), max_withdrawal_amount: 10000 },
    default_network: code.toLowerCase(),
    supported_networks: [],
    display_name: code,
  };
}

/** The maker's side of trade `id` (what Coinbase prints as `side`). */
export const makerSide = (t: TradeStore, id: number): 'buy' | 'sell' => (t.buyerIsMaker(id) ? 'buy' : 'sell');

/** `GET /products/{id}/trades` entry. */
export function restTrade(spec: MarketSpec, t: TradeStore, id: number): string {
  return `{"trade_id":${id},"side":"${makerSide(t, id)}","size":"${sz(spec, t.qty(id))}","price":"${px(spec, t.price(id))}","time":"${isoTime(t.time(id))}"}`;
}

/** Order ids the sim makes up for a match (uuid-shaped, a function of the trade id). */
function orderId(id: number, role: number): string {
  const h = (id * 2 + role).toString(16).padStart(12, '0').slice(-12);
  return `${role ? 'a' : 'b'}1c0ffee-0000-4000-8000-${h}`;
}

/** Websocket `match` message (the `matches` channel). */
export function match(spec: MarketSpec, t: TradeStore, id: number, type: 'match' | 'last_match' = 'match'): string {
  return (
    `{"type":"${type}","trade_id":${id},"maker_order_id":"${orderId(id, 0)}","taker_order_id":"${orderId(id, 1)}",` +
    `"side":"${makerSide(t, id)}","size":"${sz(spec, t.qty(id))}","price":"${px(spec, t.price(id))}","product_id":"${productId(spec)}",` +
    `"sequence":${matchSequence(id)},"time":"${isoTime(t.time(id))}"}`
  );
}

/** `GET /products/{id}/ticker`: best bid/ask, last trade, 24 h volume; `time` = the 24 h window's end. */
export function restTicker(s: Stats24h, x: TickerText): Record<string, unknown> {
  return {
    ask: x.askPrice,
    bid: x.bidPrice,
    volume: x.volume,
    trade_id: s.lastId,
    price: x.lastPrice,
    size: x.lastQty,
    time: isoTime(s.closeTime),
    rfq_volume: '0',
  };
}

/** Websocket `ticker` message. */
export function wsTicker(spec: MarketSpec, s: Stats24h, x: TickerText, t: TradeStore): string {
  const last = s.lastId;
  return JSON.stringify({
    type: 'ticker',
    sequence: matchSequence(last),
    product_id: productId(spec),
    price: x.lastPrice,
    open_24h: x.openPrice,
    volume_24h: x.volume,
    low_24h: x.lowPrice,
    high_24h: x.highPrice,
    volume_30d: x.volume,
    best_bid: x.bidPrice,
    best_bid_size: x.bidQty,
    best_ask: x.askPrice,
    best_ask_size: x.askQty,
    side: t.count > 0 && last >= t.firstId ? (t.buyerIsMaker(last) ? 'sell' : 'buy') : 'buy',
    time: isoTime(s.closeTime),
    trade_id: last,
    last_size: x.lastQty,
  });
}

/** Candle granularities (seconds) Coinbase accepts, as the sim's intervals. */
export const GRANULARITIES: ReadonlyMap<number, Interval> = new Map<number, Interval>([
  [60, '1m'],
  [300, '5m'],
  [900, '15m'],
  [3600, '1h'],
  [21600, '6h'],
  [86400, '1d'],
]);

/** `[time (s), low, high, open, close, volume]` as numbers. */
export function candleRow(spec: MarketSpec, k: Kline): number[] {
  const p = (v: number) => unitsToNumber(v, spec.tickDecimals);
  return [k.openTime / 1000, p(k.low), p(k.high), p(k.open), p(k.close), unitsToNumber(k.volume, spec.stepDecimals)];
}

export const candleOpen = bucketOpen;
export const candleNext = nextOpen;

/** A book level, REST level 2: [price, size, num_orders]. */
export const restLevels = (spec: MarketSpec, side: ReadonlyArray<readonly [number, number]>): Array<[string, string, number]> =>
  side.map(([p, q]) => [px(spec, p), sz(spec, q), 1]);

/** `GET /products/{id}/book?level=1|2`. */
export function restBook(spec: MarketSpec, b: BookSnapshot, time: number): Record<string, unknown> {
  return { bids: restLevels(spec, b.bids), asks: restLevels(spec, b.asks), sequence: b.lastUpdateId, auction_mode: false, auction: null, time: isoTime(time) };
}

/** Websocket `snapshot` (level2, level2_batch): [price, size]. */
export function snapshot(spec: MarketSpec, b: BookSnapshot, time: number): string {
  const side = (s: ReadonlyArray<readonly [number, number]>) => s.map(([p, q]) => [px(spec, p), sz(spec, q)]);
  return JSON.stringify({ type: 'snapshot', product_id: productId(spec), bids: side(b.bids), asks: side(b.asks), time: isoTime(time) });
}

/** Websocket `l2update`: changes [side, price, size], size "0" = level gone. */
export function l2update(spec: MarketSpec, bids: ReadonlyArray<readonly [number, number]>, asks: ReadonlyArray<readonly [number, number]>, time: number): string {
  const changes = [...bids.map(([p, q]) => ['buy', px(spec, p), sz(spec, q)]), ...asks.map(([p, q]) => ['sell', px(spec, p), sz(spec, q)])];
  return JSON.stringify({ type: 'l2update', product_id: productId(spec), changes, time: isoTime(time) });
}
