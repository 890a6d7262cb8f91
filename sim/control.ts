/**
 * The sim's HTTP control endpoint, on its own port under `/__sim/`, so a sim in another process
 * (`tickflow sim`, `tickflow start`) can be faulted and read by tests and operators:
 *
 *   POST /__sim/faults                 body: a SimFault (or an array of them), e.g.
 *                                      {"kind":"drop"} {"kind":"pause","channel":"trades","ms":5000}
 *                                      {"kind":"refuse","target":"ws","status":403,"ms":10000,"dialect":"okx"}
 *                                      {"kind":"refuseSubscribe","symbols":["LTC/USDT"],"ms":60000}
 *                                      {"kind":"rateLimit","requestsPerSecond":2,"ms":10000}
 *                                      {"kind":"quirk","quirk":"ignoreSince","latest":10,"ms":60000}
 *                                      {"kind":"tradeRate","perSecond":50} {"kind":"clear"}
 *                                      → 200 {"ok":true,"dropped":n}; 400 {"error"} when malformed
 *   GET  /__sim/info                   url, wsUrl, symbols, dialects with their ccxt id and options
 *   GET  /__sim/stats                  sim.stats() (also the older GET /sim/stats)
 *   GET  /__sim/emitted/trades         ?symbol&fromId&since&until → SimTrade[]
 *   GET  /__sim/emitted/candles        ?symbol&timeframe&includeHistory=1 → SimCandle[]
 *   GET  /__sim/emitted/tickers        ?symbol&source=ws|rest → SimTicker[]
 *   GET  /__sim/emitted/counts         per symbol: trade ids printed, tickers taken (O(symbols))
 *   GET  /__sim/book                   ?symbol&limit → SimBook
 *   GET  /__sim/markets                the markets listed now, in rank order
 *   POST /__sim/markets                body {"add":["NEW/USDT",{"symbol","startPrice","tradesPerSecond"}],"remove":["OLD/USDT"]}
 *                                      → 200 {"added","removed","markets"}; 400 naming a bad symbol
 *
 * Faults never apply to these routes. `connectSim(url)` is the client.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TickflowError } from '../core/errors.ts';
import type { Interval } from './candles.ts';
import { DIALECT_MODULES } from './dialects/index.ts';
import type { DialectName } from './dialects/types.ts';
import { type SimFault, parseFault } from './faults.ts';
import type { Sim, SimBook, SimCandle, SimEmittedCounts, SimMarketsChange, SimStats, SimTicker, SimTrade, TradeQuery } from './types.ts';

export const CONTROL_PREFIX = '/__sim';

export interface SimInfo {
  readonly url: string;
  readonly wsUrl: string;
  readonly symbols: readonly string[];
  readonly dialects: Readonly<Record<string, { readonly ccxtId: string; readonly prefix: string; readonly ccxtOptions: Record<string, unknown> }>>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage, max = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) throw new TickflowError('CONFIG_INVALID', `sim control: body over ${max / 1024} KiB`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const optNum = (q: URLSearchParams, k: string): number | undefined => {
  const v = q.get(k);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new TickflowError('CONFIG_INVALID', `sim control: ${k} must be a number`);
  return n;
};

/** Checks a `POST /__sim/markets` body. */
export function parseMarketsChange(v: unknown): SimMarketsChange {
  const bad = (why: string) => new TickflowError('CONFIG_INVALID', `sim control: markets ${why}`);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('body must be an object {add, remove}');
  const { add, remove, ...rest } = v as Record<string, unknown>;
  if (Object.keys(rest).length > 0) throw bad(`body has unknown keys ${Object.keys(rest).join(', ')}`);
  if (add !== undefined && !Array.isArray(add)) throw bad('add must be an array');
  if (remove !== undefined && (!Array.isArray(remove) || remove.some((s) => typeof s !== 'string'))) throw bad('remove must be an array of symbols');
  const listings = ((add ?? []) as unknown[]).map((a, i) => {
    if (typeof a === 'string') return a;
    if (a === null || typeof a !== 'object' || typeof (a as { symbol?: unknown }).symbol !== 'string') throw bad(`add[${i}] must be a symbol or {symbol, startPrice?, tradesPerSecond?}`);
    const { symbol, startPrice, tradesPerSecond } = a as { symbol: string; startPrice?: unknown; tradesPerSecond?: unknown };
    if (startPrice !== undefined && typeof startPrice !== 'number') throw bad(`add[${i}].startPrice must be a number`);
    if (tradesPerSecond !== undefined && typeof tradesPerSecond !== 'number') throw bad(`add[${i}].tradesPerSecond must be a number`);
    return { symbol, startPrice, tradesPerSecond };
  });
  return { add: listings, remove: (remove ?? []) as string[] };
}

export function simInfo(sim: Sim): SimInfo {
  return {
    url: sim.url,
    wsUrl: sim.wsUrl,
    symbols: sim.symbols,
    dialects: Object.fromEntries(
      sim.dialects.map((d) => [d, { ccxtId: DIALECT_MODULES[d].ccxtId, prefix: DIALECT_MODULES[d].prefix, ccxtOptions: sim.ccxtOptions(d) }]),
    ),
  };
}

/** Answers a control request and returns true, or returns false when `path` is not a control route. */
export function handleControl(sim: Sim, req: IncomingMessage, res: ServerResponse, path: string, url: URL): boolean {
  if (path === '/sim/stats') path = `${CONTROL_PREFIX}/stats`;
  if (path !== CONTROL_PREFIX && !path.startsWith(`${CONTROL_PREFIX}/`)) return false;
  const route = path.slice(CONTROL_PREFIX.length);
  const q = url.searchParams;
  const answer = async (): Promise<void> => {
    if (route === '/faults' && req.method === 'POST') {
      const text = await readBody(req);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new TickflowError('CONFIG_INVALID', 'sim control: the body is not JSON');
      }
      const faults = (Array.isArray(parsed) ? parsed : [parsed]).map(parseFault);
      let dropped = 0;
      for (const f of faults) dropped += sim.applyFault(f);
      json(res, 200, { ok: true, dropped });
      return;
    }
    if (route === '/markets' && req.method === 'POST') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readBody(req, 4 * 1024 * 1024));
      } catch (err) {
        throw err instanceof TickflowError ? err : new TickflowError('CONFIG_INVALID', 'sim control: the body is not JSON');
      }
      return json(res, 200, sim.markets(parseMarketsChange(parsed)));
    }
    if (req.method !== 'GET') {
      json(res, 405, { error: `${req.method} ${path} is not a control route` });
      return;
    }
    const symbol = q.get('symbol') ?? undefined;
    switch (route) {
      case '/info':
        return json(res, 200, simInfo(sim));
      case '/stats':
        return json(res, 200, sim.stats());
      case '/markets':
        return json(res, 200, sim.symbols);
      case '/emitted/counts':
        return json(res, 200, sim.emitted.counts());
      case '/emitted/trades': {
        const query: TradeQuery = { fromId: optNum(q, 'fromId'), since: optNum(q, 'since'), until: optNum(q, 'until') };
        return json(res, 200, sim.emitted.trades(symbol, query));
      }
      case '/emitted/candles':
        if (!symbol) throw new TickflowError('CONFIG_INVALID', 'sim control: symbol is required');
        return json(res, 200, sim.emitted.candles(symbol, (q.get('timeframe') ?? '1m') as Interval, { includeHistory: q.get('includeHistory') === '1' || q.get('includeHistory') === 'true' }));
      case '/emitted/tickers': {
        const source = q.get('source');
        return json(res, 200, sim.emitted.tickers(symbol, source === 'ws' || source === 'rest' ? source : undefined));
      }
      case '/book':
        if (!symbol) throw new TickflowError('CONFIG_INVALID', 'sim control: symbol is required');
        return json(res, 200, sim.orderBook(symbol, optNum(q, 'limit')));
      default:
        json(res, 404, { error: `no control route ${path}` });
    }
  };
  answer().catch((err: unknown) => {
    const known = err instanceof TickflowError;
    if (!res.headersSent) json(res, known ? 400 : 500, { error: err instanceof Error ? err.message : String(err) });
  });
  return true;
}

/** A sim in another process, driven through its control endpoint. */
export interface SimControl {
  info(): Promise<SimInfo>;
  stats(): Promise<SimStats>;
  /** Returns the sockets dropped. */
  applyFault(fault: SimFault | readonly SimFault[]): Promise<number>;
  dropConnections(how?: 'abrupt' | 'clean', dialect?: DialectName): Promise<number>;
  pauseStream(channel: Extract<SimFault, { kind: 'pause' }>['channel'], ms: number, dialect?: DialectName): Promise<void>;
  refuseService(ms: number, status?: number, dialect?: DialectName): Promise<void>;
  refuseWebsocket(ms: number, status?: number, dialect?: DialectName): Promise<void>;
  rateLimit(requestsPerSecond: number, ms: number, dialect?: DialectName): Promise<void>;
  setTradeRate(perSecond: number): Promise<void>;
  clearFaults(): Promise<void>;
  orderBook(symbol: string, limit?: number): Promise<SimBook>;
  /** The markets listed now. */
  symbols(): Promise<string[]>;
  markets(change: SimMarketsChange): Promise<{ added: string[]; removed: string[]; markets: number }>;
  readonly emitted: {
    counts(): Promise<Record<string, SimEmittedCounts>>;
    trades(symbol?: string, query?: TradeQuery): Promise<SimTrade[]>;
    candles(symbol: string, timeframe: Interval, opts?: { includeHistory?: boolean }): Promise<SimCandle[]>;
    tickers(symbol?: string, source?: SimTicker['source']): Promise<SimTicker[]>;
  };
}

/** The client of `handleControl`: `url` is the sim's base URL (http://host:port). */
export function connectSim(url: string): SimControl {
  const base = url.replace(/\/+$/, '') + CONTROL_PREFIX;
  const get = async <T>(route: string, params: Record<string, string | number | boolean | undefined> = {}): Promise<T> => {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) qs.set(k, String(v));
    const res = await fetch(`${base}${route}${qs.size > 0 ? `?${qs}` : ''}`);
    const body = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new TickflowError('EXCHANGE_NETWORK', `sim control: GET ${route} answered ${res.status}: ${body.error ?? ''}`);
    return body;
  };
  const applyFault = async (fault: SimFault | readonly SimFault[]): Promise<number> => {
    const res = await fetch(`${base}/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(fault) });
    const body = (await res.json()) as { dropped?: number; error?: string };
    if (!res.ok) throw new TickflowError('CONFIG_INVALID', `sim control: POST /faults answered ${res.status}: ${body.error ?? ''}`);
    return body.dropped ?? 0;
  };
  const d = (dialect: DialectName | undefined) => (dialect ? { dialect } : {});
  return {
    info: () => get('/info'),
    stats: () => get('/stats'),
    applyFault,
    dropConnections: (how = 'abrupt', dialect) => applyFault({ kind: 'drop', how, ...d(dialect) }),
    pauseStream: async (channel, ms, dialect) => void (await applyFault({ kind: 'pause', channel, ms, ...d(dialect) })),
    refuseService: async (ms, status, dialect) => void (await applyFault({ kind: 'refuse', target: 'rest', ms, ...(status ? { status } : {}), ...d(dialect) })),
    refuseWebsocket: async (ms, status, dialect) => void (await applyFault({ kind: 'refuse', target: 'ws', ms, ...(status ? { status } : {}), ...d(dialect) })),
    rateLimit: async (requestsPerSecond, ms, dialect) => void (await applyFault({ kind: 'rateLimit', requestsPerSecond, ms, ...d(dialect) })),
    setTradeRate: async (perSecond) => void (await applyFault({ kind: 'tradeRate', perSecond })),
    clearFaults: async () => void (await applyFault({ kind: 'clear' })),
    orderBook: (symbol, limit) => get('/book', { symbol, limit }),
    symbols: () => get('/markets'),
    async markets(change) {
      const res = await fetch(`${base}/markets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(change) });
      const body = (await res.json()) as { added: string[]; removed: string[]; markets: number; error?: string };
      if (!res.ok) throw new TickflowError('CONFIG_INVALID', `sim control: POST /markets answered ${res.status}: ${body.error ?? ''}`);
      return body;
    },
    emitted: {
      counts: () => get('/emitted/counts'),
      trades: (symbol, query = {}) => get('/emitted/trades', { symbol, ...query }),
      candles: (symbol, timeframe, opts = {}) => get('/emitted/candles', { symbol, timeframe, includeHistory: opts.includeHistory ? 1 : undefined }),
      tickers: (symbol, source) => get('/emitted/tickers', { symbol, source }),
    },
  };
}
