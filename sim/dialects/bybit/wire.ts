/**
 * Bybit v5 wire formats (spot and linear perpetual over the same engine symbol), shared by REST
 * and websocket so both print the same numbers. Shapes follow Bybit's v5 documentation and the
 * samples quoted in ccxt 4.5.84's parsers (bybit.js, pro/bybit.js).
 *
 * Numbers are strings with the market's own decimals ("60000.01", "0.00012"), as Bybit prints
 * them. Trade ids have Bybit's two styles: spot `execId`s are 19-digit numeric strings, linear
 * ones are UUIDs; both are a pure function of the engine's trade id.
 */
import { createHash } from 'node:crypto';
import type { Kline } from '../../candles.ts';
import type { Stats24h } from '../../engine.ts';
import { type MarketSpec, fmtFloat } from '../../market.ts';
import type { TickerText } from '../../market-engine.ts';
import type { TradeStore } from '../../trades.ts';

export const CATEGORIES = ['spot', 'linear'] as const;
export type Category = (typeof CATEGORIES)[number];

export const isCategory = (s: string | null): s is Category => s === 'spot' || s === 'linear';

/** `units` × 10^-decimals with exactly `decimals` decimals ("60000.01", "0.00012", "3"). */
export function dec(units: number, decimals: number): string {
  const neg = units < 0;
  let s = String(neg ? -units : units);
  if (decimals > 0) {
    if (s.length <= decimals) s = '0'.repeat(decimals - s.length + 1) + s;
    s = `${s.slice(0, s.length - decimals)}.${s.slice(s.length - decimals)}`;
  }
  return neg ? `-${s}` : s;
}

export const price = (spec: MarketSpec, ticks: number): string => dec(ticks, spec.tickDecimals);
export const qty = (spec: MarketSpec, steps: number): string => dec(steps, spec.stepDecimals);

/** A float without Binance's fixed 8 decimals and without trailing zeros ("12345.6789"). */
export function float(x: number): string {
  const s = fmtFloat(x);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** Bybit's spot execIds are 19-digit numeric strings ("2100000000007764263"). */
const SPOT_ID_PREFIX = '21000000';

/** A UUID (version-5 layout) from a name: deterministic, like Bybit's linear execIds. */
function uuidOf(name: string): string {
  const h = createHash('sha1').update(name).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The id Bybit prints for the engine's trade `id` in `category`. */
export function tradeIdOf(category: Category, spec: MarketSpec, id: number): string {
  return category === 'spot' ? SPOT_ID_PREFIX + String(id).padStart(11, '0') : uuidOf(`linear:${spec.id}:${id}`);
}

/** The engine's trade id behind a spot execId (linear UUIDs cannot be reversed). */
export function engineIdOfSpot(execId: string): number | undefined {
  return execId.startsWith(SPOT_ID_PREFIX) && execId.length === 19 ? Number(execId.slice(SPOT_ID_PREFIX.length)) : undefined;
}

const side = (t: TradeStore, id: number): 'Buy' | 'Sell' => (t.buyerIsMaker(id) ? 'Sell' : 'Buy'); // the taker's side

/** One row of `GET /v5/market/recent-trade`. */
export function tradeRest(category: Category, spec: MarketSpec, t: TradeStore, id: number): Record<string, unknown> {
  return {
    execId: tradeIdOf(category, spec, id),
    symbol: spec.id,
    price: price(spec, t.price(id)),
    size: qty(spec, t.qty(id)),
    side: side(t, id),
    time: String(t.time(id)),
    isBlockTrade: false,
    isRPITrade: false,
    seq: String(id),
  };
}

/** Tick direction of trade `id` against the one before it. */
function tickDirection(t: TradeStore, id: number): string {
  if (!t.has(id - 1)) return 'ZeroPlusTick';
  const p = t.price(id);
  const q = t.price(id - 1);
  if (p > q) return 'PlusTick';
  if (p < q) return 'MinusTick';
  let k = id - 1;
  while (t.has(k - 1) && t.price(k - 1) === p && id - k < 50) k--;
  return t.has(k - 1) && t.price(k - 1) > p ? 'ZeroMinusTick' : 'ZeroPlusTick';
}

/** One element of a `publicTrade.<symbol>` message's `data`. */
export function tradeWs(category: Category, spec: MarketSpec, t: TradeStore, id: number): string {
  return `{"T":${t.time(id)},"s":"${spec.id}","S":"${side(t, id)}","v":"${qty(spec, t.qty(id))}","p":"${price(spec, t.price(id))}","L":"${tickDirection(t, id)}","i":"${tradeIdOf(category, spec, id)}","BT":false,"RPI":false,"seq":${id}}`;
}

export function publicTradeMessage(topic: string, ts: number, rows: readonly string[]): string {
  return `{"topic":"${topic}","type":"snapshot","ts":${ts},"data":[${rows.join(',')}]}`;
}

/** `price24hPcnt`: a fraction ("0.0068"), ccxt multiplies it by 100. */
const pcnt = (x: TickerText): string => float(Number(x.priceChangePercent) / 100);

/** Funding times every 8 h (00:00, 08:00, 16:00 UTC). */
const nextFunding = (now: number): string => String(Math.floor(now / 28_800_000 + 1) * 28_800_000);

/** The spot ticker (REST `/v5/market/tickers` row; the websocket `tickers` data lacks the book). */
export function spotTickerRest(spec: MarketSpec, x: TickerText): Record<string, string> {
  return {
    symbol: spec.id,
    bid1Price: trim(x.bidPrice),
    bid1Size: trim(x.bidQty),
    ask1Price: trim(x.askPrice),
    ask1Size: trim(x.askQty),
    lastPrice: trim(x.lastPrice),
    prevPrice24h: trim(x.openPrice),
    price24hPcnt: pcnt(x),
    highPrice24h: trim(x.highPrice),
    lowPrice24h: trim(x.lowPrice),
    turnover24h: float(Number(x.quoteVolume)),
    volume24h: trim(x.volume),
    usdIndexPrice: trim(x.lastPrice),
  };
}

export function spotTickerWs(spec: MarketSpec, x: TickerText): Record<string, string> {
  return {
    symbol: spec.id,
    lastPrice: trim(x.lastPrice),
    highPrice24h: trim(x.highPrice),
    lowPrice24h: trim(x.lowPrice),
    prevPrice24h: trim(x.openPrice),
    volume24h: trim(x.volume),
    turnover24h: float(Number(x.quoteVolume)),
    price24hPcnt: pcnt(x),
    usdIndexPrice: trim(x.lastPrice),
  };
}

/** The linear perpetual's ticker (REST row and the websocket snapshot's data). */
export function linearTicker(spec: MarketSpec, s: Stats24h, x: TickerText): Record<string, string> {
  const last = Number(x.lastPrice);
  const oi = 10_000; // a steady open interest, in base units
  return {
    symbol: spec.id,
    tickDirection: 'ZeroPlusTick',
    price24hPcnt: pcnt(x),
    lastPrice: trim(x.lastPrice),
    prevPrice24h: trim(x.openPrice),
    highPrice24h: trim(x.highPrice),
    lowPrice24h: trim(x.lowPrice),
    prevPrice1h: trim(x.openPrice),
    markPrice: trim(x.lastPrice),
    indexPrice: trim(x.lastPrice),
    openInterest: String(oi),
    openInterestValue: float(oi * last),
    turnover24h: float(Number(x.quoteVolume)),
    volume24h: trim(x.volume),
    nextFundingTime: nextFunding(s.closeTime),
    fundingRate: '0.0001',
    bid1Price: trim(x.bidPrice),
    bid1Size: trim(x.bidQty),
    ask1Price: trim(x.askPrice),
    ask1Size: trim(x.askQty),
    predictedDeliveryPrice: '',
    basisRate: '',
    deliveryFeeRate: '',
    deliveryTime: '0',
    preOpenPrice: '',
    preQty: '',
    curPreListingPhase: '',
  };
}

/** Binance-style fixed-8-decimal text ("60000.01000000") → Bybit's ("60000.01"). */
function trim(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** Bybit's kline interval ids → the sim's intervals. */
export const BYBIT_INTERVALS: Readonly<Record<string, string>> = {
  '1': '1m',
  '3': '3m',
  '5': '5m',
  '15': '15m',
  '30': '30m',
  '60': '1h',
  '120': '2h',
  '240': '4h',
  '360': '6h',
  '720': '12h',
  D: '1d',
  W: '1w',
  M: '1M',
};

/** One row of `GET /v5/market/kline`: [start, open, high, low, close, volume, turnover], all strings. */
export function klineRow(spec: MarketSpec, k: Kline): string[] {
  return [String(k.openTime), price(spec, k.open), price(spec, k.high), price(spec, k.low), price(spec, k.close), qty(spec, k.volume), float(k.quoteVolume)];
}

export function klineWs(spec: MarketSpec, interval: string, k: Kline, confirm: boolean, ts: number): string {
  return JSON.stringify({
    start: k.openTime,
    end: k.closeTime,
    interval,
    open: price(spec, k.open),
    close: price(spec, k.close),
    high: price(spec, k.high),
    low: price(spec, k.low),
    volume: qty(spec, k.volume),
    turnover: float(k.quoteVolume),
    confirm,
    timestamp: ts,
  });
}

export const levels = (spec: MarketSpec, side: ReadonlyArray<readonly [number, number]>): string[][] => side.map(([p, q]) => [price(spec, p), qty(spec, q)]);

/** Instruments-info row of the spot market. */
export function spotInstrument(spec: MarketSpec): Record<string, unknown> {
  return {
    symbol: spec.id,
    baseCoin: spec.base,
    quoteCoin: spec.quote,
    innovation: '0',
    status: 'Trading',
    marginTrading: 'utaOnly',
    stTag: '0',
    lotSizeFilter: {
      basePrecision: qty(spec, 1),
      quotePrecision: '0.00000001',
      minOrderQty: qty(spec, spec.minQtySteps),
      maxOrderQty: qty(spec, 9_000_000 * 10 ** spec.stepDecimals),
      minOrderAmt: String(spec.minNotional),
      maxOrderAmt: '2000000',
    },
    priceFilter: { tickSize: price(spec, 1) },
    riskParameters: { priceLimitRatioX: '0.05', priceLimitRatioY: '0.1' },
  };
}

/** Instruments-info row of the linear perpetual (`<BASE>/<QUOTE>:<QUOTE>` in ccxt). */
export function linearInstrument(spec: MarketSpec, launchTime: number): Record<string, unknown> {
  return {
    symbol: spec.id,
    contractType: 'LinearPerpetual',
    status: 'Trading',
    baseCoin: spec.base,
    quoteCoin: spec.quote,
    launchTime: String(launchTime),
    deliveryTime: '0',
    deliveryFeeRate: '',
    priceScale: String(spec.tickDecimals),
    leverageFilter: { minLeverage: '1', maxLeverage: '100.00', leverageStep: '0.01' },
    priceFilter: { minPrice: price(spec, 1), maxPrice: price(spec, 1_000_000 * 10 ** spec.tickDecimals), tickSize: price(spec, 1) },
    lotSizeFilter: {
      maxOrderQty: qty(spec, 1_000 * 10 ** spec.stepDecimals),
      minOrderQty: qty(spec, spec.minQtySteps),
      qtyStep: qty(spec, 1),
      postOnlyMaxOrderQty: qty(spec, 1_000 * 10 ** spec.stepDecimals),
      maxMktOrderQty: qty(spec, 100 * 10 ** spec.stepDecimals),
      minNotionalValue: String(spec.minNotional),
    },
    unifiedMarginTrade: true,
    fundingInterval: 480,
    settleCoin: spec.quote,
    copyTrading: 'both',
    upperFundingRate: '0.005',
    lowerFundingRate: '-0.005',
    isPreListing: false,
    preListingInfo: null,
  };
}

/** Bybit's REST envelope. */
export function envelope(result: unknown, now: number, retCode = 0, retMsg = 'OK'): Record<string, unknown> {
  return { retCode, retMsg, result, retExtInfo: {}, time: Math.floor(now) };
}
