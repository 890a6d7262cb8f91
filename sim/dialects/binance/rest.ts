/**
 * Binance spot's public REST market-data endpoints (`/api/v3/...`), answering with Binance's
 * formats, limits and error codes, so ccxt's parsers and error mapping run exactly as in
 * production. Every answer reflects the state as of the last timer tick.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Interval, ceilOpen, bucketOpen, isInterval, nextOpen, prevOpen } from '../../candles.ts';
import type { SymbolEngine } from '../../engine.ts';
import type { RestRefusal } from '../../faults.ts';
import { exchangeInfoSymbol } from '../../market.ts';
import { type MarketEngine, tickerText } from '../../market-engine.ts';
import * as wire from './wire.ts';

export interface RestContext {
  readonly market: MarketEngine;
  /** Engines by Binance id (BTCUSDT). */
  readonly engines: ReadonlyMap<string, SymbolEngine>;
  /** What to answer instead of serving (faults), counted per request. */
  readonly refusal: () => RestRefusal | undefined;
  readonly onError: (err: unknown, path: string) => void;
  /** Fault `quirk: ignoreSince`: the trades endpoints answer only this many latest trades, whatever is asked. */
  readonly ignoresSince?: () => number | undefined;
  /** Fault `quirk: tickerWithoutTime`: REST tickers carry no closeTime (ccxt's ticker timestamp). */
  readonly tickerWithoutTime?: () => boolean;
}

/** A Binance API error answer (`{code, msg}` with a negative code). */
class BinanceApiError extends Error {
  readonly status: number;
  readonly code: number;

  constructor(status: number, code: number, msg: string) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

const mandatory = (name: string): BinanceApiError =>
  new BinanceApiError(400, -1102, `Mandatory parameter '${name}' was not sent, was empty/null, or malformed.`);
const invalidSymbol = (): BinanceApiError => new BinanceApiError(400, -1121, 'Invalid symbol.');

function intParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^-?[0-9]{1,20}$/.test(raw)) {
    throw new BinanceApiError(400, -1100, `Illegal characters found in parameter '${name}'; legal range is '^[0-9]{1,20}$'.`);
  }
  return Number(raw);
}

function limitParam(q: URLSearchParams, dflt: number, max: number): number {
  const limit = intParam(q, 'limit') ?? dflt;
  if (limit < 1 || limit > max) throw new BinanceApiError(400, -1130, "Data sent for parameter 'limit' is not valid.");
  return limit;
}

function symbolsParam(ctx: RestContext, q: URLSearchParams): SymbolEngine[] {
  const one = q.get('symbol');
  const many = q.get('symbols');
  if (one !== null && many !== null) throw new BinanceApiError(400, -1128, 'Combination of optional parameters invalid.');
  if (one !== null) return [engineOf(ctx, one)];
  if (many !== null) {
    let ids: unknown;
    try {
      ids = JSON.parse(many);
    } catch {
      throw new BinanceApiError(400, -1100, "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.");
    }
    if (!Array.isArray(ids)) throw mandatory('symbols');
    return ids.map((id) => engineOf(ctx, String(id)));
  }
  return [...ctx.engines.values()];
}

function engineOf(ctx: RestContext, id: string | null): SymbolEngine {
  if (id === null || id === '') throw mandatory('symbol');
  const e = ctx.engines.get(id);
  if (!e) throw invalidSymbol();
  return e;
}

type Handler = (ctx: RestContext, q: URLSearchParams) => unknown;

const routes: Record<string, Handler> = {
  '/api/v3/ping': () => ({}),
  '/api/v3/time': (ctx) => ({ serverTime: Math.floor(ctx.market.now()) }),

  '/api/v3/exchangeInfo': (ctx, q) => {
    const engines = symbolsParam(ctx, q);
    return {
      timezone: 'UTC',
      serverTime: Math.floor(ctx.market.now()),
      rateLimits: [
        { rateLimitType: 'REQUEST_WEIGHT', interval: 'MINUTE', intervalNum: 1, limit: 6000 },
        { rateLimitType: 'ORDERS', interval: 'SECOND', intervalNum: 10, limit: 100 },
        { rateLimitType: 'ORDERS', interval: 'DAY', intervalNum: 1, limit: 200000 },
        { rateLimitType: 'RAW_REQUESTS', interval: 'MINUTE', intervalNum: 5, limit: 61000 },
      ],
      exchangeFilters: [],
      symbols: engines.map((e) => exchangeInfoSymbol(e.spec)),
    };
  },

  '/api/v3/klines': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const iv = q.get('interval');
    if (iv === null || iv === '') throw mandatory('interval');
    if (!isInterval(iv)) throw new BinanceApiError(400, -1120, 'Invalid interval.');
    const limit = limitParam(q, 500, 1000);
    const startTime = intParam(q, 'startTime');
    const endTime = intParam(q, 'endTime');
    return klines(e, iv, startTime, endTime, limit).map((k) => wire.klineRow(e.spec, k));
  },

  '/api/v3/aggTrades': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const limit = limitParam(q, 500, 1000);
    const fromId = intParam(q, 'fromId');
    const startTime = intParam(q, 'startTime');
    const endTime = intParam(q, 'endTime');
    if (fromId !== undefined && (startTime !== undefined || endTime !== undefined)) {
      throw new BinanceApiError(400, -1128, 'Combination of optional parameters invalid.');
    }
    if (startTime !== undefined && endTime !== undefined && endTime - startTime > 3_600_000) {
      throw new BinanceApiError(400, -1127, 'More than 1 hours between startTime and endTime.');
    }
    const t = e.trades;
    let from: number;
    let to: number; // exclusive
    const latest = ctx.ignoresSince?.();
    if (latest !== undefined) {
      to = t.nextId;
      from = Math.max(t.firstId, to - Math.min(limit, latest));
    } else if (fromId !== undefined) {
      from = Math.max(fromId, t.firstId);
      to = Math.min(t.nextId, from + limit);
    } else if (startTime !== undefined) {
      from = t.lowerBoundTime(startTime);
      to = Math.min(endTime === undefined ? t.nextId : t.upperBoundTime(endTime), from + limit);
    } else {
      to = endTime === undefined ? t.nextId : t.upperBoundTime(endTime);
      from = Math.max(t.firstId, to - limit);
    }
    const out: unknown[] = [];
    for (let id = from; id < to; id++) out.push(wire.aggTradeRest(e.spec, t, id));
    return out;
  },

  '/api/v3/trades': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const limit = limitParam(q, 500, 1000);
    const t = e.trades;
    const out: unknown[] = [];
    for (let id = Math.max(t.firstId, t.nextId - limit); id < t.nextId; id++) out.push(wire.tradeRest(e.spec, t, id));
    return out;
  },

  '/api/v3/historicalTrades': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const limit = limitParam(q, 500, 1000);
    const fromId = intParam(q, 'fromId');
    const t = e.trades;
    const latest = ctx.ignoresSince?.();
    const from =
      latest !== undefined ? Math.max(t.firstId, t.nextId - Math.min(limit, latest)) : fromId === undefined ? Math.max(t.firstId, t.nextId - limit) : Math.max(t.firstId, fromId);
    const to = Math.min(t.nextId, from + limit);
    const out: unknown[] = [];
    for (let id = from; id < to; id++) out.push(wire.tradeRest(e.spec, t, id));
    return out;
  },

  '/api/v3/ticker/24hr': (ctx, q) => {
    const type = q.get('type') ?? 'FULL';
    if (type !== 'FULL' && type !== 'MINI') throw new BinanceApiError(400, -1100, "Illegal characters found in parameter 'type'.");
    const one = q.get('symbol') !== null;
    const rows = symbolsParam(ctx, q).map((e) => {
      if (type === 'MINI') {
        const s = e.stats24h();
        return wire.tickerMiniRest(e.spec, s, tickerText(e.spec, s));
      }
      // Every full ticker served is recorded, so `emitted.tickers` covers REST-polled tickers too.
      const v = ctx.market.takeTicker(e, 'rest');
      const row = wire.ticker24hRest(e.spec, v.stats, v.text);
      if (ctx.tickerWithoutTime?.()) delete row.closeTime;
      return row;
    });
    return one ? rows[0] : rows;
  },

  '/api/v3/ticker/price': (ctx, q) => {
    const one = q.get('symbol') !== null;
    const rows = symbolsParam(ctx, q).map((e) => ({ symbol: e.spec.id, price: wire.price(e.spec, e.stats24h().last) }));
    return one ? rows[0] : rows;
  },

  '/api/v3/ticker/bookTicker': (ctx, q) => {
    const one = q.get('symbol') !== null;
    const rows = symbolsParam(ctx, q).map((e) => {
      const [b, bq] = e.bestBid();
      const [a, aq] = e.bestAsk();
      return {
        symbol: e.spec.id,
        bidPrice: wire.price(e.spec, b),
        bidQty: wire.qty(e.spec, bq),
        askPrice: wire.price(e.spec, a),
        askQty: wire.qty(e.spec, aq),
      };
    });
    return one ? rows[0] : rows;
  },

  '/api/v3/avgPrice': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const now = e.generatedUntil;
    const k = e.minutes.aggregate(bucketOpen('1m', now) - 4 * 60_000, bucketOpen('1m', now) + 60_000);
    const avg = k && k.volume > 0 ? k.quoteVolume / (k.volume * e.spec.step) : e.stats24h().last * e.spec.tick;
    return { mins: 5, price: avg.toFixed(8), closeTime: Math.floor(now) };
  },

  '/api/v3/depth': (ctx, q) => {
    const e = engineOf(ctx, q.get('symbol'));
    const limit = limitParam(q, 100, 5000);
    return wire.depthSnapshot(e.spec, e.book(limit));
  },
};

/**
 * Klines the way Binance selects them: with startTime, the first `limit` buckets opening at or
 * after it (up to endTime); otherwise the last `limit` buckets opening at or before endTime (or
 * now). The bucket still forming is included with its current values.
 */
export function klines(e: SymbolEngine, iv: Interval, startTime: number | undefined, endTime: number | undefined, limit: number) {
  const first = e.firstOpen(iv);
  const last = e.currentOpen(iv);
  const out = [];
  if (startTime !== undefined) {
    const stop = endTime === undefined ? last : Math.min(last, endTime);
    for (let o = Math.max(first, ceilOpen(iv, startTime)); o <= stop && out.length < limit; o = nextOpen(iv, o)) {
      const k = e.kline(iv, o);
      if (k) out.push(k);
    }
    return out;
  }
  const top = endTime === undefined ? last : Math.min(last, bucketOpen(iv, endTime));
  for (let o = top; o >= first && out.length < limit; o = prevOpen(iv, o)) {
    const k = e.kline(iv, o);
    if (k) out.push(k);
  }
  return out.reverse();
}

const JSON_TYPE = 'application/json;charset=UTF-8';

export function refuse(res: ServerResponse, r: RestRefusal): void {
  const headers = { 'retry-after': String(r.retryAfterS) };
  if (r.rateLimited) {
    res.writeHead(r.status, { ...headers, 'content-type': JSON_TYPE }).end(
      JSON.stringify({
        code: -1003,
        msg: 'Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. Please use WebSocket Streams for live updates to avoid polling the API.',
      }),
    );
  } else {
    // Binance's gateway answers 503 with a plain-text body: ccxt maps the status (ExchangeNotAvailable).
    res.writeHead(r.status, { ...headers, 'content-type': 'text/plain' }).end('Service Unavailable.');
  }
}

/** `/api/v3/*`: answers and returns true, or returns false when the path is not one of its routes. */
export function createRestHandler(ctx: RestContext): (req: IncomingMessage, res: ServerResponse, path: string, url: URL) => boolean {
  let weightMinute = 0;
  let weight = 0;
  return (req, res, path, url) => {
    const handler = routes[path];
    if (!handler) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET' }).end('Method Not Allowed');
      return true;
    }
    const refusal = ctx.refusal();
    if (refusal) {
      refuse(res, refusal);
      return true;
    }
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== weightMinute) {
      weightMinute = minute;
      weight = 0;
    }
    weight += 1;
    const baseHeaders = { 'content-type': JSON_TYPE, 'x-mbx-used-weight': String(weight), 'x-mbx-used-weight-1m': String(weight) };
    try {
      const body = JSON.stringify(handler(ctx, url.searchParams));
      res.writeHead(200, baseHeaders).end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      if (err instanceof BinanceApiError) {
        res.writeHead(err.status, baseHeaders).end(JSON.stringify({ code: err.code, msg: err.message }));
        return true;
      }
      res.writeHead(500, baseHeaders).end(JSON.stringify({ code: -1000, msg: 'An unknown error occurred while processing the request.' }));
      ctx.onError(err, path);
    }
    return true;
  };
}
