/**
 * Binance spot wire formats, shared by REST and websocket so both print the same numbers.
 * Hot-path events (trades) are built with template strings: at 50k trades/s JSON.stringify of an
 * object per trade costs more than everything else the sim does.
 */
import type { Kline } from '../../candles.ts';
import type { BookDiff, BookSnapshot, Stats24h } from '../../engine.ts';
import { type MarketSpec, fmtFloat, fmtUnits } from '../../market.ts';
import type { TickerText } from '../../market-engine.ts';
import type { TradeStore } from '../../trades.ts';

export const price = (spec: MarketSpec, ticks: number): string => fmtUnits(ticks, spec.tickDecimals);
export const qty = (spec: MarketSpec, steps: number): string => fmtUnits(steps, spec.stepDecimals);

export function tradeEvent(spec: MarketSpec, t: TradeStore, id: number, eventTime: number): string {
  return `{"e":"trade","E":${eventTime},"s":"${spec.id}","t":${id},"p":"${price(spec, t.price(id))}","q":"${qty(spec, t.qty(id))}","T":${t.time(id)},"m":${t.buyerIsMaker(id)},"M":true}`;
}

/** The sim fills every taker order at one price, so each aggregate trade is one trade (a = f = l = t). */
export function aggTradeEvent(spec: MarketSpec, t: TradeStore, id: number, eventTime: number): string {
  return `{"e":"aggTrade","E":${eventTime},"s":"${spec.id}","a":${id},"p":"${price(spec, t.price(id))}","q":"${qty(spec, t.qty(id))}","f":${id},"l":${id},"T":${t.time(id)},"m":${t.buyerIsMaker(id)},"M":true}`;
}

export function aggTradeRest(spec: MarketSpec, t: TradeStore, id: number): Record<string, unknown> {
  return { a: id, p: price(spec, t.price(id)), q: qty(spec, t.qty(id)), f: id, l: id, T: t.time(id), m: t.buyerIsMaker(id), M: true };
}

export function tradeRest(spec: MarketSpec, t: TradeStore, id: number): Record<string, unknown> {
  const p = t.price(id) * spec.tick;
  const q = t.qty(id) * spec.step;
  return {
    id,
    price: price(spec, t.price(id)),
    qty: qty(spec, t.qty(id)),
    quoteQty: fmtFloat(p * q),
    time: t.time(id),
    isBuyerMaker: t.buyerIsMaker(id),
    isBestMatch: true,
  };
}

interface KlineText {
  o: string;
  h: string;
  l: string;
  c: string;
  v: string;
  q: string;
  V: string;
  Q: string;
}

export function klineText(spec: MarketSpec, k: Kline): KlineText {
  return {
    o: price(spec, k.open),
    h: price(spec, k.high),
    l: price(spec, k.low),
    c: price(spec, k.close),
    v: qty(spec, k.volume),
    q: fmtFloat(k.quoteVolume),
    V: qty(spec, k.takerBuyVolume),
    Q: fmtFloat(k.takerBuyQuoteVolume),
  };
}

/** One row of `GET /api/v3/klines`. */
export function klineRow(spec: MarketSpec, k: Kline): unknown[] {
  const x = klineText(spec, k);
  return [k.openTime, x.o, x.h, x.l, x.c, x.v, k.closeTime, x.q, k.trades, x.V, x.Q, '0'];
}

export function klineEvent(spec: MarketSpec, interval: string, k: Kline, closed: boolean, eventTime: number): string {
  const x = klineText(spec, k);
  return JSON.stringify({
    e: 'kline',
    E: eventTime,
    s: spec.id,
    k: {
      t: k.openTime,
      T: k.closeTime,
      s: spec.id,
      i: interval,
      f: k.firstId,
      L: k.lastId,
      o: x.o,
      c: x.c,
      h: x.h,
      l: x.l,
      v: x.v,
      n: k.trades,
      x: closed,
      q: x.q,
      V: x.V,
      Q: x.Q,
      B: '0',
    },
  });
}

/** `GET /api/v3/ticker/24hr` entry. No `time` key: ccxt would take it for a futures ticker. */
export function ticker24hRest(spec: MarketSpec, s: Stats24h, x: TickerText): Record<string, unknown> {
  return {
    symbol: spec.id,
    ...x,
    openTime: s.openTime,
    closeTime: s.closeTime,
    firstId: s.firstId,
    lastId: s.lastId,
    count: s.count,
  };
}

export function tickerMiniRest(spec: MarketSpec, s: Stats24h, x: TickerText): Record<string, unknown> {
  return {
    symbol: spec.id,
    openPrice: x.openPrice,
    highPrice: x.highPrice,
    lowPrice: x.lowPrice,
    lastPrice: x.lastPrice,
    volume: x.volume,
    quoteVolume: x.quoteVolume,
    openTime: s.openTime,
    closeTime: s.closeTime,
    firstId: s.firstId,
    lastId: s.lastId,
    count: s.count,
  };
}

export function ticker24hEvent(spec: MarketSpec, s: Stats24h, x: TickerText, eventTime: number): string {
  return JSON.stringify({
    e: '24hrTicker',
    E: eventTime,
    s: spec.id,
    p: x.priceChange,
    P: x.priceChangePercent,
    w: x.weightedAvgPrice,
    x: x.prevClosePrice,
    c: x.lastPrice,
    Q: x.lastQty,
    b: x.bidPrice,
    B: x.bidQty,
    a: x.askPrice,
    A: x.askQty,
    o: x.openPrice,
    h: x.highPrice,
    l: x.lowPrice,
    v: x.volume,
    q: x.quoteVolume,
    O: s.openTime,
    C: s.closeTime,
    F: s.firstId,
    L: s.lastId,
    n: s.count,
  });
}

export function miniTickerEvent(spec: MarketSpec, x: TickerText, eventTime: number): string {
  return JSON.stringify({
    e: '24hrMiniTicker',
    E: eventTime,
    s: spec.id,
    c: x.lastPrice,
    o: x.openPrice,
    h: x.highPrice,
    l: x.lowPrice,
    v: x.volume,
    q: x.quoteVolume,
  });
}

/** `<symbol>@bookTicker`: Binance sends it without an event type. Levels are [ticks, steps]. */
export function bookTickerEvent(spec: MarketSpec, updateId: number, bid: readonly [number, number], ask: readonly [number, number]): string {
  return `{"u":${updateId},"s":"${spec.id}","b":"${price(spec, bid[0])}","B":"${qty(spec, bid[1])}","a":"${price(spec, ask[0])}","A":"${qty(spec, ask[1])}"}`;
}

const levels = (spec: MarketSpec, side: ReadonlyArray<readonly [number, number]>): string[][] =>
  side.map(([p, q]) => [price(spec, p), qty(spec, q)]);

export function depthDiffEvent(spec: MarketSpec, d: BookDiff, eventTime: number): string {
  return JSON.stringify({ e: 'depthUpdate', E: eventTime, s: spec.id, U: d.U, u: d.u, b: levels(spec, d.bids), a: levels(spec, d.asks) });
}

/** `GET /api/v3/depth` and the partial-book streams `<symbol>@depth<N>`. */
export function depthSnapshot(spec: MarketSpec, b: BookSnapshot): Record<string, unknown> {
  return { lastUpdateId: b.lastUpdateId, bids: levels(spec, b.bids), asks: levels(spec, b.asks) };
}
