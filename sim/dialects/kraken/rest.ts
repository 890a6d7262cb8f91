/**
 * Kraken's public REST market data (`/0/public/*`): the `{"error":[],"result":{...}}` envelope,
 * its error strings (`EQuery:Unknown asset pair`, `EGeneral:Invalid arguments`,
 * `EAPI:Rate limit exceeded` — Kraken answers errors with HTTP 200), pairs keyed by Kraken's
 * ids, the Trades `last` cursor, and a Ticker without any timestamp (as on the real exchange).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Interval, ceilOpen, nextOpen } from '../../candles.ts';
import type { SymbolEngine } from '../../engine.ts';
import type { RestRefusal } from '../../faults.ts';
import type { MarketEngine } from '../../market-engine.ts';
import { type KrakenAsset, type KrakenPair, firstAfter, price, qty, restTradeRow, tradeCursor } from './wire.ts';

export interface KrakenRestContext {
  readonly market: MarketEngine;
  readonly pairs: ReadonlyMap<SymbolEngine, KrakenPair>;
  readonly refusal: () => RestRefusal | undefined;
  readonly onError: (err: unknown, path: string) => void;
}

/** Kraken's OHLC intervals (minutes) → the sim's. */
const INTERVALS: Record<string, Interval> = { '1': '1m', '5': '5m', '15': '15m', '30': '30m', '60': '1h', '240': '4h', '1440': '1d', '10080': '1w' };
/** Kraken serves the latest 720 candles of an interval, whatever `since` asks. */
const OHLC_MAX = 720;
const TRADES_MAX = 1000;

class KrakenError extends Error {}

const FEES_TAKER = [[0, 0.4], [10000, 0.35], [50000, 0.24], [100000, 0.22], [250000, 0.2], [500000, 0.18], [1000000, 0.16], [2500000, 0.14], [5000000, 0.12], [10000000, 0.1]];
const FEES_MAKER = [[0, 0.25], [10000, 0.2], [50000, 0.14], [100000, 0.12], [250000, 0.1], [500000, 0.08], [1000000, 0.06], [2500000, 0.04], [5000000, 0.02], [10000000, 0]];

function assetInfo(a: KrakenAsset): Record<string, unknown> {
  return a.fiat
    ? { aclass: 'currency', altname: a.alt, decimals: 4, display_decimals: 2, collateral_value: 1, status: 'enabled' }
    : { aclass: 'currency', altname: a.alt, decimals: 10, display_decimals: 5, collateral_value: 1, status: 'enabled' };
}

function pairInfo(p: KrakenPair): Record<string, unknown> {
  const s = p.spec;
  return {
    altname: p.altname,
    wsname: p.wsname,
    aclass_base: 'currency',
    base: p.base.id,
    aclass_quote: 'currency',
    quote: p.quote.id,
    lot: 'unit',
    cost_decimals: Math.min(10, s.tickDecimals + s.stepDecimals),
    pair_decimals: s.tickDecimals,
    lot_decimals: s.stepDecimals,
    lot_multiplier: 1,
    leverage_buy: [],
    leverage_sell: [],
    fees: FEES_TAKER,
    fees_maker: FEES_MAKER,
    fee_volume_currency: 'ZUSD',
    margin_call: 80,
    margin_stop: 40,
    ordermin: qty(s, s.minQtySteps),
    costmin: String(s.minNotional),
    tick_size: price(s, 1),
    status: 'online',
  };
}

/** `pair=` (comma-separated ids, altnames or wsnames) → pairs; every pair when absent. */
function pairsParam(ctx: KrakenRestContext, q: URLSearchParams, required: boolean): Array<[SymbolEngine, KrakenPair]> {
  const raw = q.get('pair');
  const all = [...ctx.pairs];
  if (raw === null || raw === '') {
    if (required) throw new KrakenError('EGeneral:Invalid arguments');
    return all;
  }
  return raw.split(',').map((name) => {
    const hit = all.find(([, p]) => p.id === name || p.altname === name || p.wsname === name);
    if (!hit) throw new KrakenError('EQuery:Unknown asset pair');
    return hit;
  });
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^[0-9]{1,20}$/.test(raw)) throw new KrakenError('EGeneral:Invalid arguments');
  return Number(raw);
}

type Handler = (ctx: KrakenRestContext, q: URLSearchParams) => unknown;

const routes: Record<string, Handler> = {
  '/0/public/Time': (ctx) => {
    const now = ctx.market.now();
    return { unixtime: Math.floor(now / 1000), rfc1123: new Date(now).toUTCString().replace('GMT', '+0000') };
  },
  '/0/public/SystemStatus': (ctx) => ({ status: 'online', timestamp: new Date(ctx.market.now()).toISOString().replace(/\.\d+Z$/, 'Z') }),

  '/0/public/Assets': (ctx) => {
    const out: Record<string, unknown> = {};
    for (const p of ctx.pairs.values()) for (const a of [p.base, p.quote]) out[a.id] = assetInfo(a);
    return out;
  },

  '/0/public/AssetPairs': (ctx, q) => Object.fromEntries(pairsParam(ctx, q, false).map(([, p]) => [p.id, pairInfo(p)])),

  '/0/public/Ticker': (ctx, q) => {
    const out: Record<string, unknown> = {};
    for (const [e, p] of pairsParam(ctx, q, false)) {
      const { stats: st } = ctx.market.takeTicker(e, 'rest');
      const s = e.spec;
      const vwap = st.volume > 0 ? (st.quoteVolume / (st.volume * s.step)).toFixed(s.tickDecimals) : price(s, st.last);
      const lot = (steps: number) => String(Math.max(1, Math.round(steps * s.step)));
      // No timestamp anywhere: Kraken's ticker has none.
      out[p.id] = {
        a: [price(s, st.ask), lot(st.askQty), qty(s, st.askQty)],
        b: [price(s, st.bid), lot(st.bidQty), qty(s, st.bidQty)],
        c: [price(s, st.last), qty(s, st.lastQty)],
        v: [qty(s, st.volume), qty(s, st.volume)],
        p: [vwap, vwap],
        t: [st.count, st.count],
        l: [price(s, st.low), price(s, st.low)],
        h: [price(s, st.high), price(s, st.high)],
        o: price(s, st.open),
      };
    }
    return out;
  },

  '/0/public/OHLC': (ctx, q) => {
    const [[e, p]] = pairsParam(ctx, q, true) as [[SymbolEngine, KrakenPair]];
    const iv = INTERVALS[q.get('interval') ?? '1'];
    if (!iv) throw new KrakenError('EGeneral:Invalid arguments');
    const since = intParam(q, 'since');
    const s = e.spec;
    const first = e.firstOpen(iv);
    const current = e.currentOpen(iv);
    const rows: string[] = [];
    // `since` is exclusive (ccxt asks since − one interval to get the candle opening at since).
    let open = since === undefined ? first : Math.max(first, ceilOpen(iv, since * 1000 + 1));
    let lastClosed = first;
    for (; open <= current; open = nextOpen(iv, open)) {
      const k = e.kline(iv, open);
      if (!k) continue;
      const vwap = k.volume > 0 ? (k.quoteVolume / (k.volume * s.step)).toFixed(s.tickDecimals) : price(s, k.close);
      rows.push(`[${open / 1000},"${price(s, k.open)}","${price(s, k.high)}","${price(s, k.low)}","${price(s, k.close)}","${vwap}","${qty(s, k.volume)}",${k.trades}]`);
      if (open < current) lastClosed = open;
    }
    if (rows.length > OHLC_MAX) rows.splice(0, rows.length - OHLC_MAX);
    // `last`: the newest committed (closed) candle's open, in seconds.
    return { raw: `{"${p.id}":[${rows.join(',')}],"last":${lastClosed / 1000}}` };
  },

  '/0/public/Trades': (ctx, q) => {
    const [[e, p]] = pairsParam(ctx, q, true) as [[SymbolEngine, KrakenPair]];
    const count = Math.min(TRADES_MAX, Math.max(1, intParam(q, 'count') ?? TRADES_MAX));
    const sinceRaw = q.get('since');
    if (sinceRaw !== null && sinceRaw !== '' && !/^[0-9]{1,20}$/.test(sinceRaw)) throw new KrakenError('EGeneral:Invalid arguments');
    const t = e.trades;
    let from: number;
    let to: number;
    if (sinceRaw === null || sinceRaw === '') {
      to = t.nextId;
      from = Math.max(t.firstId, to - count);
    } else {
      from = Math.max(t.firstId, firstAfter(t, sinceRaw));
      to = Math.min(t.nextId, from + count);
    }
    const rows: string[] = [];
    for (let id = from; id < to; id++) rows.push(restTradeRow(e.spec, t, id));
    // `last`: where the next page starts (the cursor of the last trade served, or `since` again).
    const last = to > from ? tradeCursor(t, to - 1) : (sinceRaw ?? (t.count > 0 ? tradeCursor(t, t.lastId) : '0'));
    return { raw: `{"${p.id}":[${rows.join(',')}],"last":"${last}"}` };
  },

  '/0/public/Depth': (ctx, q) => {
    const [[e, p]] = pairsParam(ctx, q, true) as [[SymbolEngine, KrakenPair]];
    const count = Math.min(500, Math.max(1, intParam(q, 'count') ?? 100));
    const s = e.spec;
    const b = e.book(count);
    const ts = Math.floor(e.generatedUntil / 1000);
    const side = (levels: ReadonlyArray<readonly [number, number]>) => levels.map(([px, qy]) => [price(s, px), qty(s, qy), ts]);
    return { [p.id]: { asks: side(b.asks), bids: side(b.bids) } };
  },
};

function send(req: IncomingMessage, res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(req.method === 'HEAD' ? undefined : body);
}

const errorBody = (msg: string) => JSON.stringify({ error: [msg], result: {} });

/**
 * A refusal in Kraken's words: its rate limit is HTTP 200 with `EAPI:Rate limit exceeded`
 * (ccxt: DDoSProtection); an outage (5xx) is `EService:Unavailable` (ExchangeNotAvailable);
 * any other status comes from the edge as plain text (ccxt maps the status).
 */
export function refuse(req: IncomingMessage, res: ServerResponse, r: RestRefusal): void {
  if (r.rateLimited) send(req, res, 200, errorBody('EAPI:Rate limit exceeded'));
  else if (r.status >= 500) send(req, res, r.status, errorBody('EService:Unavailable'));
  else res.writeHead(r.status, { 'content-type': 'text/plain', 'retry-after': String(r.retryAfterS) }).end(req.method === 'HEAD' ? undefined : `${r.status} refused`);
}

/** `/0/public/*`: answers and returns true, or returns false when the path is not one of its routes. */
export function createKrakenRest(ctx: KrakenRestContext): (req: IncomingMessage, res: ServerResponse, path: string, url: URL) => boolean {
  return (req, res, path, url) => {
    const handler = routes[path];
    if (!handler) {
      if (!path.startsWith('/0/')) return false;
      send(req, res, 200, errorBody('EGeneral:Unknown method'));
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, POST' }).end('Method Not Allowed');
      return true;
    }
    const refusal = ctx.refusal();
    if (refusal) {
      refuse(req, res, refusal);
      return true;
    }
    try {
      const result = handler(ctx, url.searchParams);
      const inner = result !== null && typeof result === 'object' && 'raw' in result ? (result as { raw: string }).raw : JSON.stringify(result);
      send(req, res, 200, `{"error":[],"result":${inner}}`);
    } catch (err) {
      if (err instanceof KrakenError) {
        send(req, res, 200, errorBody(err.message));
        return true;
      }
      send(req, res, 500, errorBody('EGeneral:Internal error'));
      ctx.onError(err, path);
    }
    return true;
  };
}
