/**
 * Bybit v5 public REST market data (`/v5/market/*`), spot and linear over the same engine symbols,
 * with Bybit's envelope `{retCode, retMsg, result, retExtInfo, time}` and error codes, so ccxt's
 * parsers and error mapping run as in production.
 *
 * Faithful where it matters to a gateway: `recent-trade` takes no time or id parameter — it
 * returns the latest `limit` trades whatever `since` a client had in mind (spot at most 60,
 * linear at most 1000), so a refill cannot reach further back than that.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Interval, bucketOpen, nextOpen, prevOpen } from '../../candles.ts';
import type { SymbolEngine } from '../../engine.ts';
import type { RestRefusal } from '../../faults.ts';
import type { MarketEngine } from '../../market-engine.ts';
import * as wire from './wire.ts';
import type { Category } from './wire.ts';

export interface RestContext {
  readonly market: MarketEngine;
  /** Engines by Bybit id (BTCUSDT): the same in spot and linear. */
  readonly engines: ReadonlyMap<string, SymbolEngine>;
  readonly refusal: () => RestRefusal | undefined;
  readonly onError: (err: unknown, path: string) => void;
}

/** A Bybit API error: answered with HTTP 200 and `retCode` ≠ 0, as Bybit does. */
class BybitApiError extends Error {
  readonly retCode: number;

  constructor(retCode: number, msg: string) {
    super(msg);
    this.retCode = retCode;
  }
}

const paramsError = (msg: string) => new BybitApiError(10001, msg);

function categoryParam(q: URLSearchParams, allowed: readonly string[] = ['spot', 'linear', 'inverse', 'option']): string {
  const c = q.get('category');
  if (c === null || c === '') throw paramsError('params error: category is required');
  if (!allowed.includes(c)) throw paramsError(`params error: category ${c} is invalid`);
  return c;
}

function engineOf(ctx: RestContext, q: URLSearchParams): SymbolEngine {
  const id = q.get('symbol');
  if (id === null || id === '') throw paramsError('params error: symbol is required');
  const e = ctx.engines.get(id.toUpperCase());
  if (!e) throw paramsError('params error: Symbol Invalid');
  return e;
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^-?[0-9]{1,20}$/.test(raw)) throw paramsError(`params error: ${name} invalid`);
  return Number(raw);
}

/** Bybit clamps `limit` into its range. */
function limitParam(q: URLSearchParams, dflt: number, max: number): number {
  const l = intParam(q, 'limit') ?? dflt;
  return Math.min(max, Math.max(1, l));
}

/** Only spot and linear are served; other categories list nothing. */
const served = (c: string): c is Category => wire.isCategory(c);

type Handler = (ctx: RestContext, q: URLSearchParams) => unknown;

const routes: Record<string, Handler> = {
  '/v5/market/time': (ctx) => {
    const now = Math.floor(ctx.market.now());
    return { timeSecond: String(Math.floor(now / 1000)), timeNano: `${now}000000` };
  },

  '/v5/market/instruments-info': (ctx, q) => {
    const c = categoryParam(q);
    const one = q.get('symbol');
    // Pre-launch markets: none. Options: none (ccxt asks per base coin).
    const list =
      !served(c) || (q.get('status') ?? 'Trading') !== 'Trading'
        ? []
        : [...ctx.engines.values()]
            .filter((e) => one === null || one === '' || e.spec.id === one.toUpperCase())
            .map((e) => (c === 'spot' ? wire.spotInstrument(e.spec) : wire.linearInstrument(e.spec, e.minutes.baseOpen)));
    return c === 'spot' ? { category: c, list } : { category: c, list, nextPageCursor: '' };
  },

  '/v5/market/recent-trade': (ctx, q) => {
    const c = categoryParam(q);
    if (!served(c)) throw paramsError('params error: Symbol Invalid');
    const e = engineOf(ctx, q);
    const limit = c === 'spot' ? limitParam(q, 60, 60) : limitParam(q, 500, 1000);
    // No since, no cursor: the latest `limit` trades, newest first.
    const t = e.trades;
    const list: unknown[] = [];
    for (let id = t.nextId - 1; id >= Math.max(t.firstId, t.nextId - limit); id--) list.push(wire.tradeRest(c, e.spec, t, id));
    return { category: c, list };
  },

  '/v5/market/tickers': (ctx, q) => {
    const c = categoryParam(q);
    if (!served(c)) return { category: c, list: [] };
    const one = q.get('symbol');
    const engines = one === null || one === '' ? [...ctx.engines.values()] : [engineOf(ctx, q)];
    const list = engines.map((e) => {
      const v = ctx.market.takeTicker(e, 'rest');
      return c === 'spot' ? wire.spotTickerRest(e.spec, v.text) : wire.linearTicker(e.spec, v.stats, v.text);
    });
    return { category: c, list };
  },

  '/v5/market/kline': (ctx, q) => {
    const c = categoryParam(q, ['spot', 'linear', 'inverse']);
    if (!served(c)) throw paramsError('params error: Symbol Invalid');
    const e = engineOf(ctx, q);
    const ivId = q.get('interval');
    const iv = ivId === null ? undefined : wire.BYBIT_INTERVALS[ivId];
    if (iv === undefined) throw paramsError('Invalid period!');
    const limit = limitParam(q, 200, 1000);
    const rows = klines(e, iv as Interval, intParam(q, 'start'), intParam(q, 'end'), limit);
    return { category: c, symbol: e.spec.id, list: rows.map((k) => wire.klineRow(e.spec, k)) };
  },

  '/v5/market/orderbook': (ctx, q) => {
    const c = categoryParam(q);
    if (!served(c)) throw paramsError('params error: Symbol Invalid');
    const e = engineOf(ctx, q);
    const limit = c === 'spot' ? limitParam(q, 1, 200) : limitParam(q, 25, 500);
    const b = e.book(limit);
    const now = Math.floor(e.generatedUntil);
    return { s: e.spec.id, b: wire.levels(e.spec, b.bids), a: wire.levels(e.spec, b.asks), ts: now, u: b.lastUpdateId, seq: b.lastUpdateId, cts: now };
  },

  // Key-only endpoints ccxt may touch: answered as Bybit answers a request without an API key.
  '/v5/asset/coin/query-info': () => {
    throw new BybitApiError(10003, 'API key is invalid.');
  },
};

/**
 * Klines the way Bybit selects them: with `start`, the buckets from the one containing it
 * forward (up to `end`), at most `limit`; otherwise the last `limit` up to `end` (or now). The
 * list is newest first; the bucket still forming is included.
 */
export function klines(e: SymbolEngine, iv: Interval, start: number | undefined, end: number | undefined, limit: number) {
  const first = e.firstOpen(iv);
  const last = e.currentOpen(iv);
  const top = end === undefined ? last : Math.min(last, bucketOpen(iv, end));
  const out = [];
  if (start !== undefined) {
    for (let o = Math.max(first, bucketOpen(iv, start)); o <= top && out.length < limit; o = nextOpen(iv, o)) {
      const k = e.kline(iv, o);
      if (k) out.push(k);
    }
    return out.reverse();
  }
  for (let o = top; o >= first && out.length < limit; o = prevOpen(iv, o)) {
    const k = e.kline(iv, o);
    if (k) out.push(k);
  }
  return out;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * A refusal the way Bybit's edge answers: its IP rate limit is HTTP 403 (ccxt: RateLimitExceeded),
 * the per-endpoint limit HTTP 200 with retCode 10006 "Too many visits!" (also RateLimitExceeded);
 * an outage is the status with a plain-text body (503: ExchangeNotAvailable).
 */
export function refuse(res: ServerResponse, r: RestRefusal, now: number): void {
  const headers = { 'retry-after': String(r.retryAfterS) };
  if (r.rateLimited) {
    res
      .writeHead(200, {
        ...headers,
        'content-type': JSON_TYPE,
        'x-bapi-limit': '600',
        'x-bapi-limit-status': '0',
        'x-bapi-limit-reset-timestamp': String(Math.floor(now) + r.retryAfterS * 1000),
      })
      .end(JSON.stringify(wire.envelope({}, now, 10006, 'Too many visits!')));
  } else if (r.status === 403) {
    res.writeHead(403, { ...headers, 'content-type': 'text/html' }).end('<html><body><h1>403 Forbidden</h1>access too frequent</body></html>');
  } else {
    res.writeHead(r.status, { ...headers, 'content-type': 'text/plain' }).end(r.status === 503 ? 'Service Unavailable' : 'Refused');
  }
}

/** `/v5/...`: answers and returns true, or returns false when the path is not one of its routes. */
export function createRestHandler(ctx: RestContext): (req: IncomingMessage, res: ServerResponse, path: string, url: URL) => boolean {
  return (req, res, path, url) => {
    const handler = routes[path];
    if (!handler) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET' }).end('Method Not Allowed');
      return true;
    }
    const now = ctx.market.now();
    const refusal = ctx.refusal();
    if (refusal) {
      refuse(res, refusal, now);
      return true;
    }
    let body: unknown;
    try {
      body = wire.envelope(handler(ctx, url.searchParams), now);
    } catch (err) {
      if (!(err instanceof BybitApiError)) {
        ctx.onError(err, path);
        body = wire.envelope({}, now, 10016, 'Server error.');
      } else body = wire.envelope({}, now, err.retCode, err.message);
    }
    res.writeHead(200, { 'content-type': JSON_TYPE }).end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
    return true;
  };
}
