/**
 * OKX v5 wire formats (spot), shared by REST and websocket so both print the same numbers.
 * Numbers are strings without trailing zeros ("60000.1", "0.00012"), times are strings of ms,
 * ids are numeric strings, as OKX sends them. Hot-path events (trades) are template strings.
 */
import { type Interval, bucketOpen, nextOpen } from '../../candles.ts';
import type { Kline } from '../../candles.ts';
import type { BookSnapshot, Stats24h, SymbolEngine } from '../../engine.ts';
import { type MarketSpec, fmtUnits } from '../../market.ts';
import type { TickerText } from '../../market-engine.ts';
import type { TradeStore } from '../../trades.ts';

/** Drops the trailing zeros (and a bare point) of a fixed-point string: "60000.10000000" → "60000.1". */
export function trim(s: string): string {
  if (!s.includes('.')) return s;
  let end = s.length;
  while (s.charCodeAt(end - 1) === 48) end--;
  if (s.charCodeAt(end - 1) === 46) end--;
  return s.slice(0, end);
}

export const px = (spec: MarketSpec, ticks: number): string => trim(fmtUnits(ticks, spec.tickDecimals));
export const sz = (spec: MarketSpec, steps: number): string => trim(fmtUnits(steps, spec.stepDecimals));
/** The engine's instrument id in OKX's spelling: BTC-USDT. */
export const instId = (spec: MarketSpec): string => `${spec.base}-${spec.quote}`;

/** `GET /api/v5/public/instruments?instType=SPOT` entry, as OKX sends it today. */
export function instrument(spec: MarketSpec): Record<string, string> {
  return {
    alias: '',
    auctionEndTime: '',
    baseCcy: spec.base,
    category: '1',
    ctMult: '',
    ctType: '',
    ctVal: '',
    ctValCcy: '',
    expTime: '',
    instFamily: '',
    instId: instId(spec),
    instType: 'SPOT',
    lever: '10',
    listTime: '1548133413000',
    lotSz: sz(spec, 1),
    maxIcebergSz: '9999999999.0000000000000000',
    maxLmtAmt: '20000000',
    maxLmtSz: '9999999999',
    maxMktAmt: '1000000',
    maxMktSz: '1000000',
    maxStopSz: '1000000',
    maxTriggerSz: '9999999999.0000000000000000',
    maxTwapSz: '9999999999.0000000000000000',
    minSz: sz(spec, spec.minQtySteps),
    optType: '',
    quoteCcy: spec.quote,
    ruleType: 'normal',
    settleCcy: '',
    state: 'live',
    stk: '',
    tickSz: px(spec, 1),
    uly: '',
  };
}

/** One trade, REST (`market/trades`, `market/history-trades`) and websocket (`trades`) alike. */
export function trade(spec: MarketSpec, t: TradeStore, id: number): string {
  const side = t.buyerIsMaker(id) ? 'sell' : 'buy'; // the taker's side
  return `{"instId":"${instId(spec)}","side":"${side}","sz":"${sz(spec, t.qty(id))}","px":"${px(spec, t.price(id))}","source":"0","tradeId":"${id}","ts":"${t.time(id)}"}`;
}

/** `market/ticker(s)` and the `tickers` channel. `ts` = the 24 h window's end (the engine's close time). */
export function ticker(spec: MarketSpec, s: Stats24h, x: TickerText): string {
  return JSON.stringify({
    instType: 'SPOT',
    instId: instId(spec),
    last: trim(x.lastPrice),
    lastSz: trim(x.lastQty),
    askPx: trim(x.askPrice),
    askSz: trim(x.askQty),
    bidPx: trim(x.bidPrice),
    bidSz: trim(x.bidQty),
    open24h: trim(x.openPrice),
    high24h: trim(x.highPrice),
    low24h: trim(x.lowPrice),
    volCcy24h: trim(x.quoteVolume),
    vol24h: trim(x.volume),
    ts: String(s.closeTime),
    sodUtc0: trim(x.openPrice),
    sodUtc8: trim(x.openPrice),
  });
}

/**
 * A candle bar: OKX's `bar` values. Below 6 h buckets are the same in every time zone; from 6 h
 * on the plain ones (`6H`, `1D`, `1W`, `1M`) open on Hong Kong time (UTC+8) and the `utc` ones on
 * UTC (what ccxt's fetchOHLCV asks for; its watchOHLCV subscribes the plain ones).
 */
export interface Bar {
  readonly name: string;
  readonly iv: Interval;
  /** ms added to UTC to get the time zone the buckets open in. */
  readonly shift: number;
}

const HK = 8 * 3_600_000;
const SAME: ReadonlyArray<[string, Interval]> = [
  ['1m', '1m'],
  ['3m', '3m'],
  ['5m', '5m'],
  ['15m', '15m'],
  ['30m', '30m'],
  ['1H', '1h'],
  ['2H', '2h'],
  ['4H', '4h'],
];
const ZONED: ReadonlyArray<[string, Interval]> = [
  ['6H', '6h'],
  ['12H', '12h'],
  ['1D', '1d'],
  ['3D', '3d'],
  ['1W', '1w'],
  ['1M', '1M'],
];

export const BARS: ReadonlyMap<string, Bar> = new Map<string, Bar>([
  ...SAME.map(([name, iv]): [string, Bar] => [name, { name, iv, shift: 0 }]),
  ...ZONED.map(([name, iv]): [string, Bar] => [name, { name, iv, shift: HK }]),
  ...ZONED.map(([name, iv]): [string, Bar] => [`${name}utc`, { name: `${name}utc`, iv, shift: 0 }]),
]);

export const barOpen = (b: Bar, t: number): number => bucketOpen(b.iv, t + b.shift) - b.shift;
export const barNext = (b: Bar, open: number): number => nextOpen(b.iv, open + b.shift) - b.shift;

/** The candle of bar `b` opening at `open`, from the engine's 1-minute store. */
export function barKline(e: SymbolEngine, b: Bar, open: number): Kline | undefined {
  return e.minutes.aggregate(open, barNext(b, open));
}

/** `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`: spot volumes are base, quote, quote. */
export function candleRow(spec: MarketSpec, k: Kline, confirm: boolean): string[] {
  const quote = trim(k.quoteVolume.toFixed(8));
  return [String(k.openTime), px(spec, k.open), px(spec, k.high), px(spec, k.low), px(spec, k.close), sz(spec, k.volume), quote, quote, confirm ? '1' : '0'];
}

/** A book level: [price, size, "0" (deprecated liquidated orders), orders]. */
const level = (spec: MarketSpec, p: number, q: number): string[] => [px(spec, p), sz(spec, q), '0', q > 0 ? '1' : '0'];
export const levels = (spec: MarketSpec, side: ReadonlyArray<readonly [number, number]>): string[][] => side.map(([p, q]) => level(spec, p, q));

/** `market/books` entry (and the `books5` / `bbo-tbt` data): best first. */
export function book(spec: MarketSpec, b: BookSnapshot, ts: number): Record<string, unknown> {
  return { asks: levels(spec, b.asks), bids: levels(spec, b.bids), ts: String(ts) };
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (IEEE) of an ASCII string, as a signed 32-bit integer (what OKX sends). */
export function crc32(s: string): number {
  let c = -1;
  for (let i = 0; i < s.length; i++) c = CRC_TABLE[(c ^ s.charCodeAt(i)) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) | 0;
}

/**
 * OKX's book checksum: the top 25 levels interleaved `bid:size:ask:size:...` (a side that runs
 * out is skipped), prices and sizes as sent, CRC-32 as a signed integer.
 */
export function checksum(spec: MarketSpec, b: BookSnapshot): number {
  const parts: string[] = [];
  for (let i = 0; i < 25; i++) {
    const bid = b.bids[i];
    const ask = b.asks[i];
    if (bid) parts.push(px(spec, bid[0]), sz(spec, bid[1]));
    if (ask) parts.push(px(spec, ask[0]), sz(spec, ask[1]));
  }
  return crc32(parts.join(':'));
}
