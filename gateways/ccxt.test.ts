/**
 * The ccxt edge: errors translated (retriable or not, nothing of ccxt kept but the cause),
 * constructor options merged with the gateway's defaults, unknown ids named with suggestions,
 * and a silent stream's connection ended the way ccxt ends one that misses its keep-alive.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import ccxt from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSim, type Sim } from '../sim/index.ts';
import type { ExchangeCallError} from './ccxt.ts';
import {
  CCXT_IDS,
  createExchange,
  endSilentConnections,
  exchangeOptions,
  forgetRefusedSubscriptions,
  instrumentExchange,
  isCcxtSendAfterClose,
  loadExchangeClass,
  overrideHosts,
  pacedDeliverLoop,
  strayUrls,
  symbolsNamedIn,
  translateError,
} from './ccxt.ts';

describe('translateError', () => {
  it('network-ish errors are retriable, exchange refusals are not, bugs are INTERNAL', () => {
    const cases: [unknown, string, boolean][] = [
      [new ccxt.NetworkError('x'), 'EXCHANGE_NETWORK', true],
      [new ccxt.DDoSProtection('429'), 'EXCHANGE_NETWORK', true],
      [new ccxt.RateLimitExceeded('x'), 'EXCHANGE_NETWORK', true],
      [new ccxt.RequestTimeout('x'), 'EXCHANGE_NETWORK', true],
      [new ccxt.ExchangeNotAvailable('503'), 'EXCHANGE_NETWORK', true],
      [new ccxt.BadResponse('x'), 'EXCHANGE_NETWORK', true],
      [new ccxt.BadSymbol('x'), 'SYMBOL_UNKNOWN', false],
      [new ccxt.NotSupported('x'), 'CHANNEL_UNSUPPORTED', false],
      [new ccxt.AuthenticationError('x'), 'EXCHANGE_REJECTED', false],
      [new ccxt.ExchangeError('x'), 'EXCHANGE_REJECTED', false],
      [new TypeError('x is undefined'), 'INTERNAL', false],
    ];
    for (const [e, code, retriable] of cases) {
      const t = translateError(e, 'fetchTrades(BTC/USDT)');
      expect([t.name, t.code, t.retriable, t.cause]).toEqual(['TickflowError', code, retriable, e]);
      expect(t.message).toMatch(/^fetchTrades\(BTC\/USDT\): \w+: x|^fetchTrades\(BTC\/USDT\): \w+: (429|503)/);
    }
  });
});

describe('an HTTP 404, whatever ccxt makes of it per exchange', () => {
  // One server answering 404 (an empty JSON object) to everything; ccxt maps that to
  // ExchangeNotAvailable (binance), OrderNotFound (gemini) or a bare ExchangeError naming
  // nothing (coinbaseexchange: "coinbaseexchange undefined").
  let server: http.Server;
  let base = '';
  beforeAll(async () => {
    server = http.createServer((_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('is one retriable error naming the exchange, URL, HTTP status and ccxt class (never kills the entry)', async () => {
    const seen: { id: string; cls: string; code: string; retriable: boolean; status: number | undefined; message: string }[] = [];
    for (const id of ['binance', 'gemini', 'coinbaseexchange']) {
      const ex = new (ccxt as unknown as Record<string, new (o: object) => InstanceType<typeof ccxt.Exchange>>)[id]!({ urls: { api: { public: `${base}/x`, private: `${base}/x`, rest: `${base}/x` } }, httpAgent: new http.Agent() });
      instrumentExchange(ex);
      const e = await (ex as unknown as { fetch2(path: string, api: string, method: string, params: object): Promise<unknown> }).fetch2('nothing/here', 'public', 'GET', {}).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(ccxt.BaseError);
      const t = translateError(e, 'loadMarkets', ex) as ExchangeCallError;
      seen.push({ id, cls: t.ccxtClass, code: t.code, retriable: t.retriable, status: t.status, message: t.message });
      expect(t.message).toContain(`loadMarkets: ${id} ${t.ccxtClass} (GET ${base}/x/nothing/here → HTTP 404)`);
      expect(t.url).toBe(`${base}/x/nothing/here`);
    }
    // ccxt's classes differ; tickflow's verdict does not.
    expect(new Set(seen.map((s) => s.cls)).size).toBeGreaterThan(1);
    expect(seen.map((s) => [s.code, s.retriable, s.status])).toEqual(seen.map(() => ['EXCHANGE_NETWORK', true, 404]));
  });
});

describe('URLs outside the overrides', () => {
  it("finds ccxt's gemini endpoints that an override of urls.api.public/private does not cover", () => {
    const urls = { api: { public: 'http://127.0.0.1:9500/gemini', private: 'http://127.0.0.1:9500/gemini', ws: 'ws://127.0.0.1:9500/gemini/ws' } };
    const ex = new ccxt.pro.gemini({ urls });
    expect(strayUrls(ex, overrideHosts(urls))).toEqual(['https://docs.gemini.com', 'https://exchange.gemini.com']);
    // No override, nothing to compare with.
    expect(strayUrls(ex, overrideHosts(undefined))).toEqual([]);
  });
});

describe('exchange construction', () => {
  it('deep-merges the entry options over the gateway and exchange-file defaults, without touching the config', () => {
    const entryOptions = Object.freeze({ options: Object.freeze({ tradesLimit: 777, ws: Object.freeze({ backoff: Object.freeze({ base: 100 }) }) }) });
    const o = exchangeOptions({ options: entryOptions }, { options: { watchTrades: { name: 'aggTrade' } } });
    expect(o).toMatchObject({ enableRateLimit: true, options: { tradesLimit: 777, OHLCVLimit: 1000, watchTrades: { name: 'aggTrade' }, ws: { backoff: { base: 100 } } } });
    expect(Object.isFrozen((o.options as Record<string, unknown>).ws)).toBe(false);
    expect(o.httpAgent).toBeUndefined(); // no plain URLs: ccxt's own TLS endpoints
    const local = exchangeOptions({ options: { enableRateLimit: false, urls: { api: { ws: { spot: 'ws://127.0.0.1:9500/stream/ws' } } } } });
    expect(local.httpAgent).toBeInstanceOf(http.Agent);
    expect(local.enableRateLimit).toBe(false);
  });

  it("sends REST calls through Node's own fetch, and through ccxt's default (undici) when the entry names a proxy", () => {
    expect(exchangeOptions({ options: {} })).toMatchObject({ fetchImplementation: globalThis.fetch, fetchIsNative: true });
    const proxied = exchangeOptions({ options: { httpsProxy: 'http://127.0.0.1:3128' } });
    expect(proxied.fetchImplementation).toBeUndefined();
    expect(proxied.fetchIsNative).toBeUndefined();
  });

  it('names an unknown ccxt id, with the ids it may have meant', async () => {
    expect(await loadExchangeClass('binanse')).toBeUndefined();
    expect(() => createExchange({ id: 'binanse', options: {} })).toThrow(/unknown exchange id "binanse": ccxt has no such exchange \(did you mean binance/);
    await loadExchangeClass('kraken');
    expect(createExchange({ id: 'kraken', options: {} }).id).toBe('kraken');
  });
});

describe('ccxt loaded one exchange at a time', () => {
  it("knows every id ccxt knows, and loads ccxt's own classes: its pro class where it has one, else its REST class", async () => {
    expect(CCXT_IDS).toEqual(ccxt.exchanges);
    const pro = ccxt.pro as unknown as Record<string, unknown>;
    for (const id of CCXT_IDS) {
      const c = await loadExchangeClass(id);
      expect([id, c?.cls, c?.pro]).toEqual([id, pro[id] ?? (ccxt as unknown as Record<string, unknown>)[id], pro[id] !== undefined]);
    }
  });

  it('a running gateway on one exchange has loaded no other exchange of ccxt, nor ccxt as a whole, nor the undici package', async () => {
    // A child process (nothing of this test file's ccxt import) runs a gateway with one binance
    // entry on the sim until trades are produced; a loader hook lists every ccxt file it loaded.
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-ccxt-load-'));
    const log = path.join(dir, 'loaded.txt');
    const hook = `data:text/javascript,${encodeURIComponent(`
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(
        `import { appendFileSync } from 'node:fs';
        export async function load(url, context, next) {
          if (url.includes('/ccxt/') || url.includes('/node_modules/undici/')) appendFileSync(${JSON.stringify(log)}, url + '\\n');
          return next(url, context);
        }`,
      )}));`)}`;
    const here = (f: string) => JSON.stringify(new URL(f, import.meta.url).href);
    const script = `
      import { parseConfig } from ${here('../config/schema.ts')};
      import { buildGateway } from ${here('./index.ts')};
      import { buildSim } from ${here('../sim/index.ts')};
      const sim = buildSim({ seed: 3, symbols: ['BTC/USDT'], tradesPerSecond: 50, historyDays: 0 });
      await sim.start();
      let trades = 0;
      const transport = { brokers: ['none'], async connect() {}, async disconnect() {}, async send(batch) { for (const b of batch) if (b.topic.endsWith('.trades')) trades += b.messages.length; } };
      const o = sim.ccxtOptions();
      const config = parseConfig({ kafka: { brokers: ['unused:1'], topicPrefix: 'u' }, exchanges: [{ id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: {}, ticker: {} }, backfillLookbackMinutes: 0, options: { ...o, enableRateLimit: false } }] }, { env: {} });
      const gw = buildGateway(config, { transport, lingerMs: 1 });
      const report = await gw.start();
      const until = Date.now() + 20000;
      while (trades === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      console.log(JSON.stringify({ trades, problems: report.problems.map((p) => p.message) }));
      await gw.close();
      await sim.close();
      process.exit(0);`;
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', hook, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, LOG_LEVEL: 'error' } });
      expect(r.stderr).toBe('');
      const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { trades: number; problems: string[] };
      expect(result).toMatchObject({ problems: [] });
      expect(result.trades).toBeGreaterThan(0);
      const urls = readFileSync(log, 'utf8').trim().split('\n');
      // REST calls go through Node's own fetch: the undici package (a second HTTP client) stays unloaded.
      expect(urls.filter((u) => u.includes('/node_modules/undici/'))).toEqual([]);
      const loaded = urls.map((u) => u.slice(u.indexOf('/ccxt/') + '/ccxt/'.length));
      expect(loaded).toContain('js/src/pro/binance.js');
      expect(loaded).not.toContain('js/ccxt.js');
      const exchangeFiles = loaded.map((f) => /^js\/src\/(?:pro\/)?(\w+)\.js$/.exec(f)?.[1]).filter((id) => id !== undefined && CCXT_IDS.includes(id));
      expect(new Set(exchangeFiles)).toEqual(new Set(['binance']));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('ending a silent stream', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 2, symbols: ['BTC/USDT', 'ETH/USDT'], tradesPerSecond: 0, historyDays: 0, tickerPushIntervalMs: 60_000 });
    await sim.start();
  });
  afterAll(async () => {
    await sim.close();
  });

  it("rejects the pending watch of that (symbol, channel) only, and the next call reconnects", async () => {
    await loadExchangeClass('binance');
    const ex = createExchange({ id: 'binance', options: { ...sim.ccxtOptions(), enableRateLimit: false } });
    await ex.loadMarkets();
    const trades = ex.watchTrades('BTC/USDT'); // no trades at rate 0: waits
    const eth = ex.watchTrades('ETH/USDT');
    await new Promise((r) => setTimeout(r, 300));
    expect(endSilentConnections(ex, 'BTC/USDT', 'trades', 'no message for 30s')).toBe(1);
    await expect(trades).rejects.toBeInstanceOf(ccxt.RequestTimeout);
    await expect(trades).rejects.toThrow(/no message for 30s/);
    // ETH's stream is another connection: still pending.
    expect(await Promise.race([eth.then(() => 'resolved', () => 'rejected'), new Promise((r) => setTimeout(() => r('pending'), 200))])).toBe('pending');
    sim.setTradeRate(20);
    await expect(ex.watchTrades('BTC/USDT')).resolves.not.toHaveLength(0);
    await ex.close();
  });
});

describe('a refused subscription', () => {
  const markets = {
    'BTC/USDT': { id: 'BTCUSDT', symbol: 'BTC/USDT' },
    'BTC/USDT:USDT': { id: 'BTCUSDT_PERP', symbol: 'BTC/USDT:USDT' },
    'LTC/USDT': { id: 'LTC-USDT', symbol: 'LTC/USDT' },
  } as Record<string, { id: string; symbol: string }>;
  const fake = (subscriptions: Record<string, unknown>) =>
    ({
      markets,
      markets_by_id: Object.fromEntries(Object.values(markets).map((m) => [m.id, [m]])),
      market: (s: string) => markets[s]!,
      clients: { 'ws://x': { url: 'ws://x', subscriptions, futures: {}, onError: () => undefined } },
    }) as unknown as Parameters<typeof forgetRefusedSubscriptions>[0];

  it("drops ccxt's marks of the refused symbols' subscriptions on that channel only", () => {
    const subs: Record<string, unknown> = { 'trade::BTC/USDT': {}, 'trade::BTC/USDT:USDT': {}, 'ticker::BTC/USDT': {}, 'publicTrade.BTCUSDT': {}, 'ohlcv::BTC/USDT::1m': {}, 'trade::LTC/USDT': {} };
    expect(forgetRefusedSubscriptions(fake(subs), ['BTC/USDT'], 'trades')).toBe(2);
    expect(Object.keys(subs)).toEqual(['trade::BTC/USDT:USDT', 'ticker::BTC/USDT', 'ohlcv::BTC/USDT::1m', 'trade::LTC/USDT']);
    expect(forgetRefusedSubscriptions(fake(subs), ['BTC/USDT'], 'ohlcv')).toBe(1);
  });

  it('names the markets the exchange names in its refusal', () => {
    const ex = fake({});
    expect(symbolsNamedIn(ex, `okx {"event":"error","code":"60018","msg":"Wrong URL or channel:trades,instId:LTC-USDT doesn't exist."}`)).toEqual(new Set(['LTC/USDT']));
    expect(symbolsNamedIn(ex, 'bybit error:handler not found,topic:publicTrade.BTCUSDT')).toEqual(new Set(['BTC/USDT']));
    expect(symbolsNamedIn(ex, 'binance {"code":2,"msg":"Invalid request: invalid stream"}')).toEqual(new Set());
  });
});

describe('an unhandled "WebSocket is not open" from ccxt', () => {
  // What ccxt's rate-limited subscribe leaves behind when its socket closed meanwhile.
  const script = (second: string) => `
    import { guardCcxtSendAfterClose } from ${JSON.stringify(new URL('./ccxt.ts', import.meta.url).href)};
    guardCcxtSendAfterClose((e) => console.log('dropped: ' + e.message));
    const e = new Error('WebSocket is not open: readyState 3 (CLOSED)');
    e.stack = e.message + '\\n    at sendAfterClose (/app/node_modules/ccxt/node_modules/ws/lib/websocket.js:1153:17)';
    Promise.reject(e);
    ${second}
    setTimeout(() => console.log('still running'), 200);`;
  const run = (code: string) => spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 });

  it('is dropped (logged), and the process goes on', () => {
    const r = run(script(''));
    expect(r.stdout).toContain('dropped: WebSocket is not open: readyState 3 (CLOSED)');
    expect(r.stdout).toContain('still running');
    expect(r.status).toBe(0);
  });

  it('but any other unhandled rejection still ends the process', () => {
    const r = run(script("setTimeout(() => Promise.reject(new Error('something else')), 50);"));
    expect(r.stdout).not.toContain('still running');
    expect(r.stderr).toContain('something else');
    expect(r.status).not.toBe(0);
  });

  it('is told apart by its message and by coming from ccxt', () => {
    const e = new Error('WebSocket is not open: readyState 2 (CLOSING)');
    e.stack = `${e.message}\n    at WsClient.send (/x/node_modules/ccxt/js/src/base/ws/Client.js:288:29)`;
    expect(isCcxtSendAfterClose(e)).toBe(true);
    e.stack = `${e.message}\n    at send (/x/node_modules/ws/lib/websocket.js:1:1)`;
    expect(isCcxtSendAfterClose(e)).toBe(false);
    expect(isCcxtSendAfterClose(new Error('WebSocket is not open: readyState 1 (OPEN)'))).toBe(false);
    expect(isCcxtSendAfterClose('WebSocket is not open: readyState 3 (CLOSED)')).toBe(false);
  });
});

describe('pacedDeliverLoop (ccxt websocket delivery)', () => {
  /** Delivers a connection's backlog of 3,000 messages (each ~20 µs of work); when did the event loop first get a turn? */
  async function deliver(loop: (this: never) => Promise<void>): Promise<{ got: number[]; atFirstTurn: number }> {
    const duplex = new PassThrough({ objectMode: true, highWaterMark: 10_000 });
    for (let i = 0; i < 3_000; i++) duplex.write(i);
    duplex.end();
    const got: number[] = [];
    let atFirstTurn: number | undefined;
    setImmediate(() => (atFirstTurn = got.length));
    const client = {
      duplex,
      onMessage: ({ data }: { data: unknown }) => {
        const t = performance.now();
        while (performance.now() - t < 0.02);
        got.push(data as number);
      },
    };
    await loop.call(client as never);
    // No turn before the loop ended: the whole backlog went first.
    return { got, atFirstTurn: atFirstTurn ?? got.length };
  }

  it("lets the event loop run while a backlog is delivered (ccxt's own loop holds it for the whole backlog), every message once, in order", async () => {
    const ccxtLoop = (Object.getPrototypeOf(new ccxt.pro.binance().client('wss://127.0.0.1:9')) as { deliverLoop: (this: never) => Promise<void> }).deliverLoop;
    const before = await deliver(ccxtLoop);
    expect(before.atFirstTurn).toBe(3_000);
    const after = await deliver(pacedDeliverLoop as (this: never) => Promise<void>);
    expect(after.got).toEqual([...Array(3_000).keys()]);
    expect(after.atFirstTurn).toBeLessThan(3_000);
  });
});
