/**
 * Coinbase Exchange public REST over the engine: `/products`, `/currencies`, `/time`,
 * `/products/{id}/trades` (newest first, `limit` ≤ 1000, `after`/`before` trade-id cursors and the
 * `cb-after`/`cb-before` headers; no `since`), `/products/{id}/ticker`, `/products/{id}/candles`
 * (`granularity`, `start`/`end`, ≤ 300 buckets, newest first) and `/products/{id}/book`. Errors are
 * `{"message": "..."}` with the HTTP status: 404 `NotFound` for an unknown product, 400 for a bad
 * parameter, 429 `Public rate limit exceeded`. Every answer reflects the last timer tick.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SymbolEngine } from '../../engine.ts';
import type { RestRefusal } from '../../faults.ts';
import type { MarketEngine } from '../../market-engine.ts';
import * as wire from './wire.ts';

export interface RestContext {
  readonly market: MarketEngine;
  /** Engines by product id (BTC-USDT). */
  readonly engines: ReadonlyMap<string, SymbolEngine>;
  readonly refusal: () => RestRefusal | undefined;
  readonly onError: (err: unknown, path: string) => void;
}

class CoinbaseApiError extends Error {
  readonly status: number;

  constructor(status: number, msg: string) {
    super(msg);
    this.status = status;
  }
}

const bad = (msg: string) => new CoinbaseApiError(400, msg);

interface Answer {
  readonly body: string;
  readonly headers?: Record<string, string>;
}

const json = (v: unknown): Answer => ({ body: JSON.stringify(v) });

function cursor(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^[0-9]{1,20}$/.test(raw)) throw bad(`Invalid ${name}`);
  return Number(raw);
}

/** ISO 8601 or unix seconds, as Coinbase takes `start`/`end`. */
function timeParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  const ms = /^[0-9]+(\.[0-9]+)?$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw);
  if (!Number.isFinite(ms)) throw bad(`Invalid ${name}`);
  return ms;
}

/**
 * `after` = trades older than that id, `before` = trades newer than it (the ones right after
 * it); newest first; `cb-before` = the newest id of the page, `cb-after` = its oldest.
 */
function trades(e: SymbolEngine, q: URLSearchParams): Answer {
  const rawLimit = q.get('limit');
  let limit = 100;
  if (rawLimit !== null && rawLimit !== '') {
    if (!/^[0-9]{1,9}$/.test(rawLimit) || Number(rawLimit) < 1) throw bad('Invalid limit');
    limit = Math.min(Number(rawLimit), 1000);
  }
  const after = cursor(q, 'after');
  const before = cursor(q, 'before');
  const t = e.trades;
  let from: number;
  let to: number;
  if (after !== undefined) {
    to = Math.min(t.nextId, after);
    from = Math.max(t.firstId, to - limit);
  } else if (before !== undefined) {
    from = Math.max(t.firstId, before + 1);
    to = Math.min(t.nextId, from + limit);
  } else {
    to = t.nextId;
    from = Math.max(t.firstId, to - limit);
  }
  const rows: string[] = [];
  for (let id = to - 1; id >= from; id--) rows.push(wire.restTrade(e.spec, t, id));
  const headers: Record<string, string> = rows.length > 0 ? { 'cb-before': String(to - 1), 'cb-after': String(from) } : {};
  return { body: `[${rows.join(',')}]`, headers };
}

function candles(e: SymbolEngine, q: URLSearchParams): Answer {
  const g = Number(q.get('granularity') ?? '');
  const iv = wire.GRANULARITIES.get(g);
  if (!iv) throw bad('Unsupported granularity');
  const gms = g * 1000;
  const current = wire.candleOpen(iv, e.generatedUntil);
  let start = timeParam(q, 'start');
  let end = timeParam(q, 'end');
  if (start === undefined && end === undefined) {
    end = current;
    start = current - 299 * gms;
  } else if (start === undefined) {
    start = end! - 299 * gms;
  } else if (end === undefined) {
    end = start + 299 * gms;
  }
  if (end! < start) throw bad('start must be before end');
  const first = wire.candleOpen(iv, start);
  const last = Math.min(current, wire.candleOpen(iv, end!));
  if ((last - first) / gms + 1 > 300) throw bad('granularity too small for the requested time range. Count of aggregations requested exceeds 300');
  const oldest = e.firstOpen(iv);
  const rows: number[][] = [];
  for (let open = last; open >= first && open >= oldest; open -= gms) {
    const k = e.kline(iv, open);
    if (k && k.trades > 0) rows.push(wire.candleRow(e.spec, k));
  }
  return json(rows);
}

type Handler = (ctx: RestContext, e: SymbolEngine, q: URLSearchParams) => Answer;

const productRoutes: Record<string, Handler> = {
  trades: (_ctx, e, q) => trades(e, q),
  ticker: (ctx, e) => {
    // Every REST ticker is recorded, so `emitted.tickers` covers polled tickers too.
    const v = ctx.market.takeTicker(e, 'rest');
    return json(wire.restTicker(v.stats, v.text));
  },
  candles: (_ctx, e, q) => candles(e, q),
  book: (_ctx, e, q) => {
    const level = q.get('level') ?? '1';
    if (!['1', '2', '3'].includes(level)) throw bad('Invalid level');
    return json(wire.restBook(e.spec, e.book(level === '1' ? 1 : Infinity), e.generatedUntil));
  },
  stats: (ctx, e) => {
    const x = ctx.market.takeTicker(e, 'rest').text;
    return json({ open: x.openPrice, high: x.highPrice, low: x.lowPrice, last: x.lastPrice, volume: x.volume, volume_30day: x.volume });
  },
};

function route(ctx: RestContext, path: string, q: URLSearchParams): Answer | undefined {
  if (path === '/products') return json([...ctx.engines.values()].map((e) => wire.product(e.spec)));
  if (path === '/currencies') {
    const seen = new Map<string, number>();
    for (const e of ctx.engines.values()) {
      seen.set(e.spec.base, Math.max(seen.get(e.spec.base) ?? 0, e.spec.stepDecimals));
      seen.set(e.spec.quote, Math.max(seen.get(e.spec.quote) ?? 0, e.spec.tickDecimals));
    }
    return json([...seen].map(([code, d]) => wire.currency(code, d)));
  }
  if (path === '/time') {
    const now = ctx.market.now();
    return json({ iso: new Date(now).toISOString(), epoch: now / 1000 });
  }
  const m = /^\/products\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
  if (!m) return undefined;
  const handler = m[2] === undefined ? undefined : productRoutes[m[2]];
  if (m[2] !== undefined && !handler) return undefined;
  const e = ctx.engines.get(decodeURIComponent(m[1]!));
  if (!e) throw new CoinbaseApiError(404, 'NotFound');
  if (!handler) return json(wire.product(e.spec));
  return handler(ctx, e, q);
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** A refusal in Coinbase's form: 429 `{"message":"Public rate limit exceeded"}`; other statuses a bare page. */
export function refuse(res: ServerResponse, r: RestRefusal): void {
  const headers = { 'retry-after': String(r.retryAfterS) };
  if (r.rateLimited) {
    res.writeHead(429, { ...headers, 'content-type': JSON_TYPE }).end(JSON.stringify({ message: 'Public rate limit exceeded' }));
  } else {
    res.writeHead(r.status, { ...headers, 'content-type': 'text/html' }).end(`<html><body><h1>${r.status}</h1></body></html>`);
  }
}

/** Answers and returns true, or returns false when the path is not one of its routes. */
export function createRestHandler(ctx: RestContext): (req: IncomingMessage, res: ServerResponse, path: string, url: URL) => boolean {
  return (req, res, path, url) => {
    if (!/^\/(products|currencies|time)(\/|$)/.test(path)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': JSON_TYPE, allow: 'GET' }).end(JSON.stringify({ message: 'Method Not Allowed' }));
      return true;
    }
    const refusal = ctx.refusal();
    if (refusal) {
      refuse(res, refusal);
      return true;
    }
    try {
      const answer = route(ctx, path, url.searchParams);
      if (!answer) {
        res.writeHead(404, { 'content-type': JSON_TYPE }).end(JSON.stringify({ message: 'NotFound' }));
        return true;
      }
      res.writeHead(200, { 'content-type': JSON_TYPE, ...answer.headers }).end(req.method === 'HEAD' ? undefined : answer.body);
    } catch (err) {
      if (err instanceof CoinbaseApiError) {
        res.writeHead(err.status, { 'content-type': JSON_TYPE }).end(JSON.stringify({ message: err.message }));
        return true;
      }
      res.writeHead(500, { 'content-type': JSON_TYPE }).end(JSON.stringify({ message: 'Internal server error' }));
      ctx.onError(err, path);
    }
    return true;
  };
}
