/**
 * The gateway's edge with ccxt: building an exchange instance from a config entry, translating
 * ccxt's error classes into TickflowError (nothing of ccxt crosses into Kafka), and the few
 * places where the gateway reaches into ccxt pro's websocket clients.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Exchange, errors as CcxtErrorClasses } from 'ccxt';
import type { Channel, ExchangeEntry } from './config.ts';
import { TickflowError, messageOf, type ErrorCode } from '../core/errors.ts';

export type { Exchange };

/**
 * ccxt is loaded one exchange at a time. `import ccxt from 'ccxt'` evaluates every exchange class
 * (REST, pro and prediction: 323 files, 21.6 MB of source) whatever the config names; V8 keeps
 * each module's source, and under tsx its loader thread keeps a copy too. A gateway process paid
 * ~170 MB of RSS for that at start (~80 MB without tsx); binance alone is 32 files, 2 MB
 * (gateways/README.md, Memory). The exchange modules are loaded by file from the package's own
 * registry (js/ccxt.js, read as text, never evaluated): the same files `import 'ccxt'` loads, so
 * classes and errors are the very ones a test or a library importing 'ccxt' sees.
 */
const CCXT_ROOT = path.resolve(path.dirname(createRequire(import.meta.url).resolve('ccxt')), '..');
const ccxtFile = (rel: string) => pathToFileURL(path.join(CCXT_ROOT, 'js', rel)).href;

/** ccxt id → module path under js/, for REST classes and pro (websocket) classes, from js/ccxt.js. */
function readRegistry(): { rest: ReadonlyMap<string, string>; pro: ReadonlyMap<string, string> } {
  const text = readFileSync(path.join(CCXT_ROOT, 'js', 'ccxt.js'), 'utf8');
  const files = new Map<string, string>();
  for (const m of text.matchAll(/^import\s+(\w+)\s+from\s+'\.\/(src\/[\w/]+\.js)';/gm)) files.set(m[1]!, m[2]!);
  const block = (name: string): Map<string, string> => {
    const body = new RegExp(`^const ${name} = \\{([^}]*)\\};`, 'm').exec(text)?.[1] ?? '';
    const out = new Map<string, string>();
    for (const m of body.matchAll(/'(\w+)':\s*(\w+)/g)) {
      const file = files.get(m[2]!);
      if (file) out.set(m[1]!, file);
    }
    return out;
  };
  const rest = block('exchanges');
  if (rest.size === 0) throw new TickflowError('INTERNAL', `cannot read ccxt's exchange registry from ${path.join(CCXT_ROOT, 'js', 'ccxt.js')} (a ccxt upgrade changed its layout?)`);
  return { rest, pro: block('pro') };
}
const REGISTRY = readRegistry();

/** Every exchange id ccxt knows (ccxt.exchanges), without loading any. */
export const CCXT_IDS: readonly string[] = [...REGISTRY.rest.keys()];

/** ccxt's error classes (js/src/base/errors.js: small, and the same module 'ccxt' re-exports). */
const ccxtErrors = (await import(ccxtFile('src/base/errors.js'))) as typeof CcxtErrorClasses;

/**
 * What the gateway puts under every entry's own `options` (the entry wins, deep-merged).
 * - tradesLimit: ccxt's trade cache per symbol. The trade loop removes what it consumed after
 *   every call (releaseConsumedTrades), so the cache only ever holds trades not yet taken and
 *   this is the backlog a stall may build before trades are lost (the loop detects that and
 *   refills over REST). Without the release, a full cache costs O(tradesLimit) per trade
 *   (ArrayCache.append shifts the array) and per call (watchTrades copies it): sim/README.
 * - OHLCVLimit: buckets kept per symbol and timeframe; the candle loop only needs the newest few.
 * - ws.backoff: ccxt delays a dial of a URL by base × 2^n, n counting dials less than
 *   `stableAfter` apart (its default 1 s doubling to 60 s, 30 s: a stream dropped every 5-30 s
 *   was soon down 33 s of 40). Here a connection that lived 3 s redials at once and repeated
 *   failures wait 0.5 s doubling to 5 s; the watch loops add their own backoff (STREAM_RETRY in
 *   watch.ts), which takes over up to 10 s for a stream that keeps failing.
 */
export const CCXT_DEFAULTS = {
  enableRateLimit: true,
  options: { tradesLimit: 20_000, OHLCVLimit: 1_000, ws: { backoff: { base: 500, max: 5_000, stableAfter: 3_000 } } },
} as const;

/**
 * Removes from ccxt's trade cache of `symbol` everything up to the last trade of `batch` (what
 * `watchTrades` just returned), keeping trades that arrived after it. ccxt's watchTrades
 * returns the newest N entries of that cache, so those are the same objects, at its end.
 */
export function releaseConsumedTrades(ex: Exchange, symbol: string, batch: readonly unknown[]): void {
  const cache = (ex.trades as Record<string, unknown[] | undefined> | undefined)?.[symbol];
  const last = batch[batch.length - 1];
  if (!Array.isArray(cache) || last === undefined) return;
  let idx = -1;
  for (let i = cache.length - 1; i >= 0; i--) {
    if (cache[i] === last) {
      idx = i;
      break;
    }
  }
  if (idx < 0) return;
  const keep = cache.length - idx - 1;
  for (let j = 0; j < keep; j++) cache[j] = cache[idx + 1 + j];
  cache.length = keep;
}

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/** Deep merge into fresh objects (the config is frozen; ccxt writes into its options). */
export function deepMerge(base: Plain, over: Plain): Plain {
  const out: Plain = {};
  for (const [k, v] of Object.entries(base)) out[k] = isPlain(v) ? deepMerge(v, {}) : Array.isArray(v) ? [...(v as unknown[])] : v;
  for (const [k, v] of Object.entries(over)) {
    const cur = out[k];
    out[k] = isPlain(v) ? deepMerge(isPlain(cur) ? cur : {}, v) : Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  return out;
}

function hasPlainUrl(v: unknown): boolean {
  if (typeof v === 'string') return /^(ws|http):\/\//i.test(v);
  if (v && typeof v === 'object') return Object.values(v).some(hasPlainUrl);
  return false;
}

/** An entry that sends ccxt's REST calls through a proxy (httpsProxy, socksProxy, proxyUrl...): ccxt needs the undici package for that. */
const usesProxy = (o: Plain) => Object.keys(o).some((k) => /proxy/i.test(k));

/** The constructor options of an entry: gateway defaults, the exchange file's, then the entry's own. */
export function exchangeOptions(entry: Pick<ExchangeEntry, 'options'>, exchangeDefaults: Plain = {}): Plain {
  const merged = deepMerge(deepMerge(CCXT_DEFAULTS as unknown as Plain, exchangeDefaults), entry.options as Plain);
  // ccxt's REST calls go through Node's own fetch (the path ccxt takes where the undici package
  // cannot be loaded: no redirects followed, the same errors) unless the entry routes them through
  // a proxy: ccxt's default, the undici package, is a second copy of Node's HTTP client and costs
  // a gateway ~10 MB of RSS (gateways/README.md, Memory).
  if (!usesProxy(merged)) Object.assign(merged, { fetchImplementation: globalThis.fetch, fetchIsNative: true });
  // ccxt refuses ws:// URLs without an agent (NotSupported); plain URLs mean a local server,
  // a testnet proxy or the sim.
  if (merged.httpAgent === undefined && hasPlainUrl(merged.urls)) merged.httpAgent = new http.Agent({ keepAlive: true });
  return merged;
}

type ExchangeClass = new (config?: Plain) => Exchange;

type LoadedClass = { cls: ExchangeClass; pro: boolean };
const loaded = new Map<string, Promise<LoadedClass>>();
const ready = new Map<string, LoadedClass>();

/** Whether ccxt knows the id (nothing loaded). */
export function knowsExchange(id: string): boolean {
  return REGISTRY.rest.has(id);
}

/**
 * Loads the class of one ccxt id, its websocket (pro) class where ccxt has one, else its REST
 * class; undefined for an id ccxt does not know. `createExchange` needs it loaded first.
 */
export function loadExchangeClass(id: string): Promise<LoadedClass | undefined> {
  const file = REGISTRY.pro.get(id) ?? REGISTRY.rest.get(id);
  if (file === undefined) return Promise.resolve(undefined);
  let p = loaded.get(id);
  if (!p) {
    p = (import(ccxtFile(file)) as Promise<{ default: ExchangeClass }>).then((m) => {
      const c = { cls: m.default, pro: REGISTRY.pro.has(id) };
      ready.set(id, c);
      return c;
    });
    loaded.set(id, p);
  }
  return p;
}

/** The loaded class of an id (loadExchangeClass first); undefined when ccxt does not know the id. */
export function ccxtClassFor(id: string): LoadedClass | undefined {
  if (!knowsExchange(id)) return undefined;
  const c = ready.get(id);
  if (!c) throw new TickflowError('INTERNAL', `ccxt's ${id} class is not loaded: await loadExchangeClass('${id}') before createExchange`);
  return c;
}

/** Up to three known ids close to a mistyped one, for the error message. */
export function suggestIds(id: string): string[] {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = d[0]!;
      d[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const tmp = d[j]!;
        d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = tmp;
      }
    }
    return d[b.length]!;
  };
  return CCXT_IDS.map((x) => ({ x, d: x.startsWith(id) || id.startsWith(x) ? 1 : dist(id, x) }))
    .filter((c) => c.d <= 2)
    .sort((a, b) => a.d - b.d || a.x.localeCompare(b.x))
    .slice(0, 3)
    .map((c) => c.x);
}

/** A ccxt instance for an entry; its class must be loaded (`await loadExchangeClass(entry.id)`). */
export function createExchange(entry: Pick<ExchangeEntry, 'id' | 'options'>, exchangeDefaults: Plain = {}): Exchange {
  const found = ccxtClassFor(entry.id);
  if (!found) {
    const near = suggestIds(entry.id);
    throw new TickflowError('EXCHANGE_UNKNOWN', `unknown exchange id "${entry.id}": ccxt has no such exchange${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}`);
  }
  return new found.cls(exchangeOptions(entry, exchangeDefaults));
}

/**
 * Where a failed ccxt call went: the URL (REST or websocket), the HTTP method and the HTTP
 * status (of the REST answer, or the one a websocket upgrade was refused with). ccxt's own
 * message names none of these for many exchanges (`coinbaseexchange undefined`); the hooks
 * `instrumentExchange` puts on an instance record them beside the error it throws.
 */
export interface CallSite {
  readonly url: string;
  readonly method?: string;
  readonly status?: number;
}

const callSites = new WeakMap<object, CallSite>();

function noteCallSite(e: unknown, site: CallSite): void {
  if (e === null || typeof e !== 'object') return;
  const had = callSites.get(e);
  // The innermost hook knows the status; an outer one only adds what is missing.
  callSites.set(e, { ...site, ...had });
}

/** The URL and status of a failed ccxt call, where the hooks saw it. */
export function callSiteOf(e: unknown): CallSite | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  return callSites.get(e) ?? (e instanceof TickflowError ? callSiteOf(e.cause) : undefined);
}

/** `GET http://host/path → HTTP 404`, as log lines and gap reasons name a call. */
export function describeCallSite(site: CallSite): string {
  return `${site.method ? `${site.method} ` : ''}${site.url}${site.status !== undefined ? ` → HTTP ${site.status}` : ''}`;
}

const INSTRUMENTED = Symbol('tickflow.instrumented');

type Hooked = Exchange & {
  [INSTRUMENTED]?: true;
  fetch(url: string, method?: string, headers?: unknown, body?: unknown): Promise<unknown>;
  handleRestResponse(response: { status: number }, url: string, method?: string, ...rest: unknown[]): unknown;
};

/**
 * Hooks on one ccxt instance (own properties shadowing ccxt's methods, nothing of ccxt patched
 * globally) so a failed call's error carries its URL and status (`callSiteOf`), and every
 * request's final URL is shown to `onRequest` (the stray-URL check: requests going elsewhere than
 * the entry's URL overrides). Idempotent.
 */
export function instrumentExchange(ex: Exchange, onRequest?: (url: string, kind: 'rest' | 'ws') => void): void {
  const h = ex as Hooked;
  if (h[INSTRUMENTED]) return;
  h[INSTRUMENTED] = true;
  const fetch = h.fetch.bind(h);
  h.fetch = async (url, method = 'GET', headers, body) => {
    onRequest?.(url, 'rest');
    try {
      return await fetch(url, method, headers, body);
    } catch (e) {
      noteCallSite(e, { url, method });
      throw e;
    }
  };
  const handle = h.handleRestResponse.bind(h);
  h.handleRestResponse = (response, url, method = 'GET', ...rest) => {
    const note = (e: unknown) => {
      noteCallSite(e, { url, method, status: response.status });
      throw e;
    };
    try {
      const r = handle(response, url, method, ...rest);
      return r instanceof Promise ? r.catch(note) : r;
    } catch (e) {
      return note(e);
    }
  };
  // A websocket's failure: every error ccxt rejects a connection's pending watches with goes
  // through its client's reset() (a refused upgrade, a close by the server, a missed pong).
  const wsStatus = (e: unknown) => {
    const m = /Unexpected server response: (\d{3})/.exec(messageOf(e));
    return m ? Number(m[1]) : undefined;
  };
  type WsClient = { url: string; reset(error: unknown): void; deliverLoop?: () => Promise<void>; [INSTRUMENTED]?: true };
  const client = (h as unknown as { client(url: string): WsClient }).client.bind(h);
  (h as unknown as { client(url: string): WsClient }).client = (url: string) => {
    onRequest?.(url, 'ws');
    const c = client(url);
    if (!c[INSTRUMENTED]) {
      c[INSTRUMENTED] = true;
      if (typeof c.deliverLoop === 'function') c.deliverLoop = pacedDeliverLoop;
      const reset = c.reset.bind(c);
      c.reset = (error: unknown) => {
        const status = wsStatus(error);
        noteCallSite(error, { url: c.url, ...(status !== undefined ? { status } : {}) });
        reset(error);
      };
    }
    return c;
  };
}

/** How long (ms) one websocket hands messages to ccxt before the event loop gets a turn (pacedDeliverLoop). */
export const DELIVER_SLICE_MS = 10;

interface DuplexClient {
  duplex: AsyncIterable<unknown> & { readonly readableLength: number; read(): unknown };
  onMessage(event: { data: unknown }): void;
}

/**
 * ccxt's websocket delivery (WsClient.deliverLoop, Node) with a turn for the event loop after
 * every DELIVER_SLICE_MS of delivery on a connection. ccxt reads a connection's buffered messages
 * (up to 1,024 in its duplex, plus what the socket holds) on one chain of microtasks and ticks,
 * and every connection does the same, so a process that fell behind ran event-loop turns of
 * seconds (1,000 instruments on 16-24 connections: 4-8 s), and whatever waits for a turn (Kafka's
 * answers, timers) waited that long. Same messages in the same order; only where the loop may
 * run between them. A time slice rather than a count, so a busy process still reads as fast as
 * it can.
 */
export async function pacedDeliverLoop(this: DuplexClient): Promise<void> {
  try {
    let since = performance.now();
    for await (const message of this.duplex) {
      this.onMessage({ data: message });
      // ccxt's release valve (a backlog handed over without waiting for the iterator), within the slice.
      while (this.duplex.readableLength > 0 && performance.now() - since < DELIVER_SLICE_MS) {
        const queued = this.duplex.read();
        if (queued === null) break;
        this.onMessage({ data: queued });
      }
      if (performance.now() - since >= DELIVER_SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        since = performance.now();
      }
    }
  } catch {
    // As ccxt's: only the iterator rejects here (ws destroyed the duplex on a socket error), and
    // the connection's error and close handlers have already failed its watches.
  }
}

/** A TickflowError of a ccxt call: its exchange, URL, HTTP status and ccxt class, and how long a rate-limit answer asked to wait. */
export class ExchangeCallError extends TickflowError {
  readonly retryAfterMs: number | undefined;
  readonly ccxtClass: string;
  readonly exchange: string | undefined;
  readonly url: string | undefined;
  readonly status: number | undefined;
  constructor(code: ErrorCode, message: string, opts: { retriable: boolean; cause: unknown; retryAfterMs?: number; ccxtClass: string; exchange?: string; site?: CallSite }) {
    super(code, message, opts);
    this.retryAfterMs = opts.retryAfterMs;
    this.ccxtClass = opts.ccxtClass;
    this.exchange = opts.exchange;
    this.url = opts.site?.url;
    this.status = opts.site?.status;
  }
}

function retryAfterOf(ex: Exchange | undefined): number | undefined {
  const h = (ex as unknown as { last_response_headers?: Record<string, string> } | undefined)?.last_response_headers;
  const v = h?.['Retry-After'] ?? h?.['retry-after'];
  return v !== undefined && /^\d+$/.test(v) ? Math.min(Number(v) * 1000, 120_000) : undefined;
}

/**
 * ccxt error → TickflowError, at the edge. The message names the call, the exchange, the ccxt
 * class and, where the instance is instrumented, the URL and HTTP status:
 * `watchTrades(BTC/USDT): binance NetworkError (ws://host/stream/ws → HTTP 403): ...`.
 *
 * HTTP 404 is decided by the status, not by ccxt's per-exchange mapping (which makes it
 * ExchangeNotAvailable, OrderNotFound or a bare ExchangeError depending on the exchange): the
 * path is not served there (a wrong URL override, an endpoint moved, a maintenance page), so it
 * is retriable (EXCHANGE_NETWORK) and retried with the slow backoff; an entry is never failed
 * for good on a 404.
 *
 * Otherwise by class: NetworkError (DDoSProtection, RateLimitExceeded, ExchangeNotAvailable,
 * RequestTimeout, InvalidNonce) and other OperationFailed (bad or empty responses) are retriable;
 * ExchangeError (BadSymbol, BadRequest, NotSupported, AuthenticationError, ...) is not; anything
 * else is a bug (INTERNAL, not retriable).
 */
export function translateError(e: unknown, where: string, ex?: Exchange): TickflowError {
  if (e instanceof TickflowError) return e;
  const cls = e instanceof Error ? e.constructor.name : typeof e;
  const site = callSiteOf(e);
  const msg = `${where}: ${ex?.id ? `${ex.id} ` : ''}${cls}${site ? ` (${describeCallSite(site)})` : ''}: ${messageOf(e).slice(0, 400)}`;
  const mk = (code: ErrorCode, retriable: boolean, retryAfterMs?: number) =>
    new ExchangeCallError(code, msg, {
      retriable,
      cause: e,
      ccxtClass: cls,
      ...(ex?.id ? { exchange: ex.id } : {}),
      ...(site ? { site } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  if (site?.status === 404) return mk('EXCHANGE_NETWORK', true);
  if (e instanceof ccxtErrors.DDoSProtection || e instanceof ccxtErrors.RateLimitExceeded) return mk('EXCHANGE_NETWORK', true, retryAfterOf(ex));
  if (e instanceof ccxtErrors.NetworkError) return mk('EXCHANGE_NETWORK', true);
  if (e instanceof ccxtErrors.OperationFailed) return mk('EXCHANGE_NETWORK', true);
  if (e instanceof ccxtErrors.BadSymbol) return mk('SYMBOL_UNKNOWN', false);
  if (e instanceof ccxtErrors.NotSupported) return mk('CHANNEL_UNSUPPORTED', false);
  if (e instanceof ccxtErrors.BaseError) return mk('EXCHANGE_REJECTED', false);
  return mk('INTERNAL', false);
}

/** True when the call was answered 404 (ExchangeCallError or the ccxt error itself). */
export function isNotFound(e: unknown): boolean {
  return callSiteOf(e)?.status === 404;
}

/** Top-level `urls` keys of ccxt that are documentation, not endpoints it calls. */
const DOC_URL_KEYS = new Set(['logo', 'www', 'doc', 'docs', 'fees', 'referral', 'test', 'demo', 'sandbox', 'api_management', 'status']);

function urlsIn(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') {
    if (/^(https?|wss?):\/\//i.test(v)) out.push(v);
  } else if (Array.isArray(v)) for (const x of v) urlsIn(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) urlsIn(x, out);
  return out;
}

function hostOf(url: string): string | undefined {
  try {
    return new URL(url.replace(/\{[^}]*\}/g, 'x')).host.toLowerCase();
  } catch {
    return undefined;
  }
}

/** The hosts an entry's `urls` overrides point at (empty: the entry overrides none). */
export function overrideHosts(overrides: unknown): Set<string> {
  return new Set(urlsIn(overrides).map(hostOf).filter((h): h is string => h !== undefined));
}

/**
 * Every endpoint URL ccxt may call for this instance (its `urls`, documentation keys aside) whose
 * host is none of the overrides' hosts: ccxt's gemini, overridden in `urls.api.public/private`,
 * still fetches `urls.api.webExchange` for its currencies. One URL per stray host.
 */
export function strayUrls(ex: Exchange, hosts: ReadonlySet<string>): string[] {
  if (hosts.size === 0) return [];
  const urls = ex.urls as Record<string, unknown> | undefined;
  const seen = new Map<string, string>();
  for (const [k, v] of Object.entries(urls ?? {})) {
    if (DOC_URL_KEYS.has(k)) continue;
    for (const u of urlsIn(v)) {
      const h = hostOf(u);
      if (h !== undefined && !hosts.has(h) && !seen.has(h)) seen.set(h, u);
    }
  }
  return [...seen.values()];
}

/** True for the error ccxt gives pending watches when we close the exchange ourselves. */
export function isClosedByUser(e: unknown): boolean {
  const cause = e instanceof TickflowError ? e.cause : e;
  return cause instanceof ccxtErrors.ExchangeClosedByUser;
}

/**
 * ccxt pro (4.5) sends a subscription after its rate limiter's delay without handling the send's
 * promise (Exchange.watch → client.throttle(cost).then(() => { client.send(message) })): when the
 * connection closed meanwhile — we closed the exchange, or the server dropped it — ws's "WebSocket
 * is not open" becomes an unhandled rejection, which ends a Node process. The watch itself is
 * already rejected and handled by its loop, so that one rejection is dropped (logged at debug);
 * every other unhandled rejection still ends the process, as it would without this.
 */
export function isCcxtSendAfterClose(reason: unknown): boolean {
  return reason instanceof Error && /^WebSocket is not open: readyState [23] /.test(reason.message) && /[/\\]ccxt[/\\]/.test(reason.stack ?? '');
}

let sendAfterCloseGuarded = false;
export function guardCcxtSendAfterClose(onDropped: (reason: Error) => void): void {
  if (sendAfterCloseGuarded) return;
  sendAfterCloseGuarded = true;
  process.on('unhandledRejection', (reason) => {
    if (isCcxtSendAfterClose(reason)) onDropped(reason as Error);
    else throw reason;
  });
}

/** The ccxt capability behind each channel, per mode. */
export const CAPABILITY: Readonly<Record<Channel, { ws: string; poll: string }>> = {
  trades: { ws: 'watchTrades', poll: 'fetchTrades' },
  ticker: { ws: 'watchTicker', poll: 'fetchTicker' },
  ohlcv: { ws: 'watchOHLCV', poll: 'fetchOHLCV' },
  book: { ws: 'watchOrderBook', poll: 'fetchOrderBook' },
};

export function has(ex: Exchange, capability: string): boolean {
  const v = (ex.has as Record<string, unknown>)[capability];
  return v === true || v === 'emulated';
}

interface WsClientLike {
  url: string;
  subscriptions: Record<string, unknown>;
  futures: Record<string, unknown>;
  onError(error: Error): void;
}

/** How ccxt's hashes and the exchanges' messages name each channel. */
export const CHANNEL_WORDS: Readonly<Record<Channel, RegExp>> = {
  trades: /trade/i,
  ticker: /ticker/i,
  ohlcv: /ohlcv|kline|candle/i,
  book: /book|depth/i,
};

/**
 * Ends the websocket connections that carry a silent stream, the way ccxt ends one whose
 * keep-alive pong is missing: `client.onError(RequestTimeout)` rejects the pending watches and
 * drops the client, and the next watch call dials again. ccxt keeps no index from a
 * (symbol, channel) to its connection, so clients are matched by their subscription and
 * message hashes, which name the unified symbol or the market id on every exchange checked
 * (binance `trade::BTC/USDT`, okx `trades:BTC-USDT`, kraken `trade:BTC/USD`). Returns the
 * number of connections ended.
 */
export function endSilentConnections(ex: Exchange, symbol: string, channel: Channel, reason: string): number {
  const clients = Object.values((ex as unknown as { clients?: Record<string, WsClientLike> }).clients ?? {});
  let marketId = symbol;
  try {
    marketId = ex.market(symbol).id ?? symbol;
  } catch {
    // unknown market: match by the unified symbol only
  }
  const needles = [symbol, marketId, marketId.toLowerCase()];
  const keysOf = (c: WsClientLike) => [...Object.keys(c.subscriptions ?? {}), ...Object.keys(c.futures ?? {}), c.url];
  const bySymbol = clients.filter((c) => keysOf(c).some((k) => needles.some((n) => k.includes(n))));
  const byChannel = bySymbol.filter((c) => keysOf(c).some((k) => needles.some((n) => k.includes(n)) && CHANNEL_WORDS[channel].test(k)));
  const victims = byChannel.length > 0 ? byChannel : bySymbol;
  for (const c of victims) c.onError(new ccxtErrors.RequestTimeout(`${ex.id} ${reason}`));
  return victims.length;
}

/**
 * After the exchange refused a subscribe request: drops what ccxt pro still records of it, so the
 * next watch call for those symbols sends a subscribe again. ccxt marks a subscription as made
 * when it sends it (`client.subscriptions[hash]`) and, on some exchanges, keeps the mark after the
 * venue's refusal (binance `handleWsError` rejects the futures but leaves `trade::BTC/USDT`):
 * every later watch of the symbol would then wait for data that never comes, with nothing sent.
 * Keys are matched as in `endSilentConnections`: naming one of `symbols` (the unified symbol or the
 * market id, as a whole token) and the channel. Returns the number of marks dropped.
 */
export function forgetRefusedSubscriptions(ex: Exchange, symbols: readonly string[], channel: Channel): number {
  const clients = Object.values((ex as unknown as { clients?: Record<string, WsClientLike> }).clients ?? {});
  const needles = new Set<string>();
  for (const symbol of symbols) {
    needles.add(symbol);
    try {
      const id = ex.market(symbol).id;
      if (id) needles.add(id).add(id.toLowerCase());
    } catch {
      // unknown market: the unified symbol only
    }
  }
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // A whole token: `trade::BTC/USDT` and `ohlcv::BTC/USDT::1m` name BTC/USDT, `trade::BTC/USDT:USDT` does not.
  const token = new RegExp(`(?:^|[^A-Za-z0-9])(?:${[...needles].map(esc).join('|')})(?:$|::|[^A-Za-z0-9:/_-])`);
  let n = 0;
  for (const c of clients) {
    for (const k of Object.keys(c.subscriptions ?? {})) {
      if (!CHANNEL_WORDS[channel].test(k) || !token.test(k)) continue;
      delete c.subscriptions[k];
      n++;
    }
  }
  return n;
}

/**
 * The unified symbols of the markets an exchange's error message names (by market id or unified
 * symbol): OKX `... instId:LTC-USDT doesn't exist`, Bybit `handler not found,topic:publicTrade.LTCUSDT`.
 * Binance's `Invalid request: invalid stream` names none.
 */
export function symbolsNamedIn(ex: Exchange, message: string): Set<string> {
  const out = new Set<string>();
  const byId = (ex as unknown as { markets_by_id?: Record<string, Array<{ symbol?: string }> | undefined> }).markets_by_id ?? {};
  const markets = (ex.markets ?? {}) as Record<string, unknown>;
  for (const token of message.split(/[^A-Za-z0-9/_-]+/)) {
    if (token.length < 3) continue;
    if (token.includes('/') && token in markets) out.add(token);
    for (const id of [token, token.toUpperCase()]) for (const m of byId[id] ?? []) if (m.symbol) out.add(m.symbol);
  }
  return out;
}
