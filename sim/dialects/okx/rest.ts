/**
 * OKX v5 public REST (`/api/v5/...`) over the engine: instruments, tickers, trades (recent and
 * history, paged by tradeId or time with OKX's `after`/`before`), candles (recent and history,
 * newest first, `confirm` flag), books; OKX's `{code, msg, data}` envelope and error codes,
 * HTTP 429 with code 50011 for the rate limit. Every answer reflects the last timer tick.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SymbolEngine } from '../../engine.ts';
import type { RestRefusal } from '../../faults.ts';
import type { MarketEngine } from '../../market-engine.ts';
import * as wire from './wire.ts';

export interface RestContext {
  readonly market: MarketEngine;
  /** Engines by OKX instId (BTC-USDT). */
  readonly engines: ReadonlyMap<string, SymbolEngine>;
  readonly refusal: () => RestRefusal | undefined;
  readonly onError: (err: unknown, path: string) => void;
}

/** An OKX error answer: `{"code":"51001","msg":"...","data":[]}`. */
class OkxApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, msg: string) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

const empty = (name: string) => new OkxApiError(400, '50014', `Parameter ${name} can not be empty`);
const paramError = (name: string) => new OkxApiError(400, '51000', `Parameter ${name} error`);
const noInstrument = () => new OkxApiError(400, '51001', "Instrument ID, Instrument ID code, or Spread ID doesn't exist.");

function intParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^[0-9]{1,20}$/.test(raw)) throw paramError(name);
  return Number(raw);
}

function limitParam(q: URLSearchParams, name: string, dflt: number, max: number): number {
  const v = intParam(q, name) ?? dflt;
  if (v < 1) throw paramError(name);
  return Math.min(v, max);
}

function engineOf(ctx: RestContext, q: URLSearchParams): SymbolEngine {
  const id = q.get('instId');
  if (id === null || id === '') throw empty('instId');
  const e = ctx.engines.get(id);
  if (!e) throw noInstrument();
  return e;
}

/** Rows already JSON text, or values to stringify. */
type Rows = ReadonlyArray<string | unknown>;
type Handler = (ctx: RestContext, q: URLSearchParams) => Rows;

const rowText = (r: unknown): string => (typeof r === 'string' ? r : JSON.stringify(r));

/**
 * OKX's cursor paging over ascending keys [lo, hi): `after` = only keys below it, `before` = only
 * keys above it; the newest `limit` of what remains, newest first (so `before` alone gives the
 * latest data, as OKX documents).
 */
function page(lo: number, hi: number, after: number | undefined, before: number | undefined, limit: number): [number, number] {
  const top = after === undefined ? hi : Math.min(hi, after);
  const bottom = before === undefined ? lo : Math.max(lo, before + 1);
  return [Math.max(bottom, top - limit), top];
}

function trades(e: SymbolEngine, from: number, to: number): string[] {
  const out: string[] = [];
  for (let id = to - 1; id >= from; id--) out.push(wire.trade(e.spec, e.trades, id));
  return out;
}

/** Candles of `bar` opening in (before, after), newest `limit`, newest first; `recent` = the last 1440 only. */
function candles(e: SymbolEngine, q: URLSearchParams, recent: boolean): Rows {
  const barName = q.get('bar') ?? '1m';
  const bar = wire.BARS.get(barName);
  if (!bar) throw paramError('bar');
  const limit = limitParam(q, 'limit', 100, 300);
  const after = intParam(q, 'after');
  const before = intParam(q, 'before');
  const current = wire.barOpen(bar, e.generatedUntil);
  let oldest = wire.barOpen(bar, e.minutes.baseOpen);
  if (recent) {
    let o = current;
    for (let i = 1; i < 1440 && o > oldest; i++) o = wire.barOpen(bar, o - 1);
    oldest = o;
  }
  const out: string[][] = [];
  let open = after === undefined ? current : wire.barOpen(bar, Math.min(current, after - 1));
  if (after !== undefined && open >= after) open = wire.barOpen(bar, open - 1);
  for (; open >= oldest && out.length < limit; open = wire.barOpen(bar, open - 1)) {
    if (before !== undefined && open <= before) break;
    const k = wire.barKline(e, bar, open);
    if (k) out.push(wire.candleRow(e.spec, k, wire.barNext(bar, open) <= e.generatedUntil));
  }
  return out;
}

const routes: Record<string, Handler> = {
  '/api/v5/public/time': (ctx) => [{ ts: String(Math.floor(ctx.market.now())) }],
  '/api/v5/system/status': () => [],

  '/api/v5/public/instruments': (ctx, q) => {
    const type = q.get('instType');
    if (type === null || type === '') throw empty('instType');
    if (!['SPOT', 'MARGIN', 'SWAP', 'FUTURES', 'OPTION'].includes(type)) throw paramError('instType');
    // The sim lists spot markets only; the other types exist, with nothing in them.
    if (type !== 'SPOT') return [];
    const id = q.get('instId');
    const engines = id ? [ctx.engines.get(id)].filter((e): e is SymbolEngine => e !== undefined) : [...ctx.engines.values()];
    return engines.map((e) => wire.instrument(e.spec));
  },

  '/api/v5/market/ticker': (ctx, q) => {
    const e = engineOf(ctx, q);
    // Every REST ticker is recorded, so `emitted.tickers` covers polled tickers too.
    const v = ctx.market.takeTicker(e, 'rest');
    return [wire.ticker(e.spec, v.stats, v.text)];
  },

  '/api/v5/market/tickers': (ctx, q) => {
    const type = q.get('instType');
    if (type === null || type === '') throw empty('instType');
    if (type !== 'SPOT') return [];
    return [...ctx.engines.values()].map((e) => {
      const v = ctx.market.takeTicker(e, 'rest');
      return wire.ticker(e.spec, v.stats, v.text);
    });
  },

  '/api/v5/market/trades': (ctx, q) => {
    const e = engineOf(ctx, q);
    const limit = limitParam(q, 'limit', 100, 500);
    const t = e.trades;
    return trades(e, Math.max(t.firstId, t.nextId - limit), t.nextId);
  },

  '/api/v5/market/history-trades': (ctx, q) => {
    const e = engineOf(ctx, q);
    const limit = limitParam(q, 'limit', 100, 100);
    const type = q.get('type') ?? '1';
    if (type !== '1' && type !== '2') throw paramError('type');
    const t = e.trades;
    let after = intParam(q, 'after');
    let before = intParam(q, 'before');
    if (type === '2') {
      // By time: after = trades before that ms, before = trades after it; as ids.
      if (after !== undefined) after = t.lowerBoundTime(after);
      if (before !== undefined) before = t.upperBoundTime(before) - 1;
    }
    const [from, to] = page(t.firstId, t.nextId, after, before, limit);
    return trades(e, from, to);
  },

  '/api/v5/market/candles': (ctx, q) => candles(engineOf(ctx, q), q, true),
  '/api/v5/market/history-candles': (ctx, q) => candles(engineOf(ctx, q), q, false),

  '/api/v5/market/books': (ctx, q) => {
    const e = engineOf(ctx, q);
    const n = limitParam(q, 'sz', 1, 400);
    return [wire.book(e.spec, e.book(n), Math.floor(e.generatedUntil))];
  },
  '/api/v5/market/books-full': (ctx, q) => {
    const e = engineOf(ctx, q);
    const n = limitParam(q, 'sz', 1, 5000);
    return [wire.book(e.spec, e.book(n), Math.floor(e.generatedUntil))];
  },
};

const JSON_TYPE = 'application/json; charset=utf-8';

/** A refusal in OKX's form: 429 + code 50011; 503 + code 50001 (maintenance); any other status a bare page. */
export function refuse(res: ServerResponse, r: RestRefusal): void {
  const headers = { 'retry-after': String(r.retryAfterS) };
  if (r.rateLimited) {
    res.writeHead(r.status, { ...headers, 'content-type': JSON_TYPE }).end(JSON.stringify({ msg: 'Too Many Requests', code: '50011' }));
  } else if (r.status === 503) {
    res.writeHead(503, { ...headers, 'content-type': JSON_TYPE }).end(JSON.stringify({ code: '50001', data: [], msg: 'Service temporarily unavailable. Please try again later.' }));
  } else {
    res.writeHead(r.status, { ...headers, 'content-type': 'text/html' }).end(`<html><body><h1>${r.status}</h1></body></html>`);
  }
}

/** `/api/v5/*`: answers and returns true, or returns false when the path is not one of its routes. */
export function createRestHandler(ctx: RestContext): (req: IncomingMessage, res: ServerResponse, path: string, url: URL) => boolean {
  return (req, res, path, url) => {
    const handler = routes[path];
    if (!handler) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': JSON_TYPE, allow: 'GET' }).end(JSON.stringify({ code: '50000', data: [], msg: 'Method Not Allowed' }));
      return true;
    }
    const refusal = ctx.refusal();
    if (refusal) {
      refuse(res, refusal);
      return true;
    }
    try {
      const rows = handler(ctx, url.searchParams);
      const body = `{"code":"0","data":[${rows.map(rowText).join(',')}],"msg":""}`;
      res.writeHead(200, { 'content-type': JSON_TYPE }).end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      if (err instanceof OkxApiError) {
        res.writeHead(err.status, { 'content-type': JSON_TYPE }).end(JSON.stringify({ code: err.code, data: [], msg: err.message }));
        return true;
      }
      res.writeHead(500, { 'content-type': JSON_TYPE }).end(JSON.stringify({ code: '50026', data: [], msg: 'System error. Try again later' }));
      ctx.onError(err, path);
    }
    return true;
  };
}
