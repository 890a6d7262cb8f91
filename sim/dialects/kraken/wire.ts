/**
 * Kraken's names and JSON formats, shared by REST and websocket so both print the same numbers.
 *
 * Names: an engine symbol `BTC/USDT` is Kraken's pair `XBTUSDT` (altname `XBTUSDT`, wsname
 * `XBT/USDT`, base asset `XXBT`, quote `USDT`); `BTC/USD` is `XXBTZUSD` (altname `XBTUSD`): a
 * pair of two legacy X/Z-prefixed assets is named by their ids, any other by the altnames, as
 * Kraken does. ccxt maps the assets back (`XXBT` → BTC via the Assets answer), so the unified
 * symbol is the engine's. The websocket (v2) speaks unified-style symbols (`BTC/USDT`).
 */
import type { MarketSpec } from '../../market.ts';
import { fmtUnits } from '../../market.ts';
import type { TradeStore } from '../../trades.ts';

/** Kraken's legacy asset ids (X crypto, Z fiat) and altnames for unified codes. */
const LEGACY: Record<string, { id: string; alt: string }> = {
  BTC: { id: 'XXBT', alt: 'XBT' },
  ETH: { id: 'XETH', alt: 'ETH' },
  LTC: { id: 'XLTC', alt: 'LTC' },
  XRP: { id: 'XXRP', alt: 'XRP' },
  DOGE: { id: 'XXDG', alt: 'XDG' },
  XLM: { id: 'XXLM', alt: 'XLM' },
  ETC: { id: 'XETC', alt: 'ETC' },
  USD: { id: 'ZUSD', alt: 'USD' },
  EUR: { id: 'ZEUR', alt: 'EUR' },
  GBP: { id: 'ZGBP', alt: 'GBP' },
  CAD: { id: 'ZCAD', alt: 'CAD' },
  JPY: { id: 'ZJPY', alt: 'JPY' },
};
const FIAT = new Set(['USD', 'EUR', 'GBP', 'CAD', 'JPY']);

export interface KrakenAsset {
  /** Unified code (BTC). */
  readonly code: string;
  /** Kraken's asset id (XXBT, USDT). */
  readonly id: string;
  /** Kraken's altname (XBT, USDT). */
  readonly alt: string;
  readonly legacy: boolean;
  readonly fiat: boolean;
}

export function krakenAsset(code: string): KrakenAsset {
  const l = LEGACY[code];
  return l ? { code, id: l.id, alt: l.alt, legacy: true, fiat: FIAT.has(code) } : { code, id: code, alt: code, legacy: false, fiat: false };
}

export interface KrakenPair {
  readonly spec: MarketSpec;
  /** The pair's id, the key of REST answers (XXBTZUSD, XBTUSDT). */
  readonly id: string;
  /** XBTUSD */
  readonly altname: string;
  /** XBT/USD (REST AssetPairs `wsname`) */
  readonly wsname: string;
  /** The websocket v2 symbol: BTC/USD. */
  readonly wsSymbol: string;
  readonly base: KrakenAsset;
  readonly quote: KrakenAsset;
}

export function krakenPair(spec: MarketSpec): KrakenPair {
  const base = krakenAsset(spec.base);
  const quote = krakenAsset(spec.quote);
  const altname = base.alt + quote.alt;
  return {
    spec,
    id: base.legacy && quote.legacy ? base.id + quote.id : altname,
    altname,
    wsname: `${base.alt}/${quote.alt}`,
    wsSymbol: spec.symbol,
    base,
    quote,
  };
}

/** Price/quantity text at the pair's own decimals ("60000.01", "0.00012"), as Kraken's REST prints them. */
export const price = (spec: MarketSpec, ticks: number): string => trimTo(fmtUnits(ticks, spec.tickDecimals), spec.tickDecimals);
export const qty = (spec: MarketSpec, steps: number): string => trimTo(fmtUnits(steps, spec.stepDecimals), spec.stepDecimals);

/** fmtUnits prints 8 decimals; Kraken prints the pair's decimals. */
function trimTo(eight: string, decimals: number): string {
  const cut = eight.length - (8 - decimals);
  return decimals === 0 ? eight.slice(0, eight.indexOf('.')) : eight.slice(0, cut);
}

/** A JSON number literal for websocket v2 (numbers, not strings): "60000.01" → 60000.01. */
export const num = (text: string): string => String(Number(text));

/**
 * Trade time in seconds as Kraken's REST prints it (sub-ms digits: 1541390792.7634): the 0.4 ms
 * keep `Math.trunc(seconds * 1000)` (ccxt's safeTimestamp) on the very millisecond.
 */
export function restSeconds(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${s}.${String(ms - s * 1000).padStart(3, '0')}4`;
}

/** RFC 3339 with microseconds (websocket v2): "2023-09-25T07:49:37.708400Z". */
export function isoMicros(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, -1)}400Z`;
}

/** RFC 3339 with nanoseconds (`interval_begin` of ohlc): "2023-10-04T16:25:00.000000000Z". */
export function isoNanos(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, -1)}000000Z`;
}

/**
 * The REST `last` cursor of /0/public/Trades: nanoseconds-ish, `<ms><6 digits of the id>`, so a
 * page cut between two trades of one millisecond resumes exactly after the last one served.
 */
export function tradeCursor(t: TradeStore, id: number): string {
  return `${t.time(id)}${String(id % 1_000_000).padStart(6, '0')}`;
}

/** The first trade after a `since`: seconds (what ccxt sends, inclusive) or a `last` cursor (exclusive). */
export function firstAfter(t: TradeStore, since: string): number {
  if (since.length <= 12) return t.lowerBoundTime(Number(since) * 1000);
  const ms = Number(since.slice(0, -6));
  const sub = Number(since.slice(-6));
  let id = t.lowerBoundTime(ms);
  while (id < t.nextId && t.time(id) === ms && id % 1_000_000 <= sub) id++;
  return id;
}

/** One row of /0/public/Trades, the newer style with `trade_id`: [price, volume, time, side, ordertype, misc, trade_id]. */
export function restTradeRow(spec: MarketSpec, t: TradeStore, id: number): string {
  return `["${price(spec, t.price(id))}","${qty(spec, t.qty(id))}",${restSeconds(t.time(id))},"${t.buyerIsMaker(id) ? 's' : 'b'}","${id % 7 === 0 ? 'l' : 'm'}","",${id}]`;
}

/** One trade of the websocket v2 `trade` channel. */
export function wsTrade(p: KrakenPair, t: TradeStore, id: number): string {
  const s = p.spec;
  return `{"symbol":"${p.wsSymbol}","side":"${t.buyerIsMaker(id) ? 'sell' : 'buy'}","price":${num(price(s, t.price(id)))},"qty":${num(qty(s, t.qty(id)))},"ord_type":"${id % 7 === 0 ? 'limit' : 'market'}","trade_id":${id},"timestamp":"${isoMicros(t.time(id))}"}`;
}

/**
 * Kraken's book checksum (websocket v2): CRC32 of the top 10 asks (lowest first) then the top 10
 * bids (highest first), each level's price and quantity at the pair's decimals with the '.'
 * removed and leading zeros stripped, concatenated.
 */
export function bookChecksum(spec: MarketSpec, bids: ReadonlyArray<readonly [number, number]>, asks: ReadonlyArray<readonly [number, number]>): number {
  const part = (text: string) => text.replace('.', '').replace(/^0+/, '');
  let s = '';
  for (const [p, q] of asks.slice(0, 10)) s += part(price(spec, p)) + part(qty(spec, q));
  for (const [p, q] of bids.slice(0, 10)) s += part(price(spec, p)) + part(qty(spec, q));
  return crc32(s);
}

let CRC_TABLE: Uint32Array | undefined;
export function crc32(s: string): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < s.length; i++) crc = CRC_TABLE[(crc ^ s.charCodeAt(i)) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
