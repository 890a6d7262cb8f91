/**
 * The Coinbase Exchange dialect against the real ccxt 4.5.84: `ccxt.coinbaseexchange` (REST) and
 * `ccxt.pro.coinbaseexchange` (websocket) run unchanged through `sim.ccxtOptions('coinbaseexchange')`,
 * and what they parse is exactly what the engine emitted. The gateway's refill adapter
 * (gateways/exchanges/coinbaseexchange.ts) pages back by the `after` trade-id cursor against it.
 */
import http from 'node:http';
import ccxt, { type Exchange, type Trade } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { adapterFor } from '../../../gateways/exchanges/index.ts';
import { buildSim, type Sim, type SimTrade } from '../../index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Credentials are only there because ccxt signs its `level2` subscription; the sim takes any. */
function client(sim: Sim, pro = false): Exchange {
  const o = sim.ccxtOptions('coinbaseexchange');
  const Cls = pro ? ccxt.pro.coinbaseexchange : ccxt.coinbaseexchange;
  return new Cls({ ...o, apiKey: 'sim', secret: 'c2lt', password: 'sim', httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false, options: { tradesLimit: 10_000, ws: { backoff: { base: 100 } } } });
}

const fromCcxt = (t: Trade) => ({ id: Number(t.id), timestamp: t.timestamp!, price: t.price!, amount: t.amount!, side: t.side as 'buy' | 'sell' });
const strip = ({ symbol: _s, isBuyerMaker: _m, ...rest }: SimTrade) => rest;
const ids = (ts: readonly Trade[]) => ts.map((t) => Number(t.id));
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('Coinbase Exchange REST through ccxt.coinbaseexchange', () => {
  let sim: Sim;
  let ex: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 42, tradesPerSecond: 60, historyDays: 2 });
    await sim.start();
    ex = client(sim);
    await sleep(4500);
  });
  afterAll(async () => {
    await sim.close();
  });

  it('loadMarkets (products + currencies) lists the symbols with tick and step sizes', async () => {
    const markets = await ex.loadMarkets();
    expect(Object.keys(markets).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
    expect(markets['BTC/USDT']).toMatchObject({ id: 'BTC-USDT', base: 'BTC', quote: 'USDT', type: 'spot', spot: true, active: true, precision: { price: 0.01, amount: 0.00001 } });
    expect(Object.keys(ex.currencies).sort()).toEqual(['BTC', 'ETH', 'USDT']);
  });

  it('fetchTrades: the latest trades, newest first on the wire, equal to the emitted ones; ignores since', async () => {
    const latest = await ex.fetchTrades('BTC/USDT', undefined, 50);
    expect(latest).toHaveLength(50);
    const first = Number(latest[0]!.id);
    expect(ids(latest)).toEqual(range(first, 50));
    expect(latest.map(fromCcxt)).toEqual(sim.emitted.trades('BTC/USDT', { fromId: first }).slice(0, 50).map(strip));
    // `since` is not sent (ccxt) and would be ignored: still the latest page.
    const withSince = await ex.fetchTrades('BTC/USDT', sim.now() - 60_000, 10, { since: 0 });
    expect(Number(withSince.at(-1)!.id)).toBeGreaterThanOrEqual(Number(latest.at(-1)!.id));
  });

  it('trades page by the after/before trade-id cursors, with cb-after/cb-before headers', async () => {
    const last = sim.emitted.trades('ETH/USDT').at(-1)!.id;
    const older = await ex.fetchTrades('ETH/USDT', undefined, 40, { after: String(last - 100) });
    expect(ids(older)).toEqual(range(last - 140, 40));
    expect(older.map(fromCcxt)).toEqual(sim.emitted.trades('ETH/USDT', { fromId: last - 140 }).slice(0, 40).map(strip));
    const newer = await ex.fetchTrades('ETH/USDT', undefined, 5, { before: String(last - 100) });
    expect(ids(newer)).toEqual(range(last - 99, 5));
    const res = await fetch(`${sim.url}/coinbaseexchange/products/ETH-USDT/trades?limit=3&after=${last - 10}`);
    expect([res.headers.get('cb-before'), res.headers.get('cb-after')]).toEqual([String(last - 11), String(last - 13)]);
    const rows = (await res.json()) as Array<{ trade_id: number; time: string }>;
    expect(rows.map((r) => r.trade_id)).toEqual([last - 11, last - 12, last - 13]);
    expect(rows[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('the refill adapter pages back by cursor to the last stored trade, oldest page first', async () => {
    const adapter = adapterFor('coinbaseexchange');
    const all = sim.emitted.trades('BTC/USDT');
    expect(all.length).toBeGreaterThan(200);
    const cursor = all[all.length - 200]!;
    const gen = adapter.refillTrades(ex, 'BTC/USDT', { id: String(cursor.id), ts: cursor.timestamp }, { maxPages: 20 });
    const got: Trade[] = [];
    let step = await gen.next();
    while (!step.done) {
      got.push(...step.value);
      step = await gen.next();
    }
    expect(step.value).toEqual({ reachedCursor: true });
    const firstId = Number(got[0]!.id);
    expect(firstId).toBeLessThanOrEqual(cursor.id);
    expect(ids(got)).toEqual(range(firstId, got.length)); // no gap, no duplicate across pages
    expect(got.map(fromCcxt)).toEqual(sim.emitted.trades('BTC/USDT', { fromId: firstId }).slice(0, got.length).map(strip));
    // Too few pages: it says it did not reach back.
    const short = adapter.refillTrades(ex, 'BTC/USDT', { id: String(all[0]!.id), ts: all[0]!.timestamp }, { maxPages: 1 });
    let s = await short.next();
    while (!s.done) s = await short.next();
    expect(s.value).toMatchObject({ reachedCursor: false });
  });

  it('fetchOHLCV: candles equal the emitted ones (granularity, start/end), newest first on the wire', async () => {
    const since = Math.floor((sim.now() - 86_400_000) / 60_000) * 60_000;
    const page = await ex.fetchOHLCV('BTC/USDT', '1m', since, 300);
    expect(page).toHaveLength(300);
    expect(page[0]![0]).toBe(since);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
    for (const [ts, o, h, l, c, v] of page) {
      const e = emitted.get(ts!)!;
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
    }
    const hours = await ex.fetchOHLCV('ETH/USDT', '1h', Math.floor(sim.now() / 3_600_000) * 3_600_000 - 20 * 3_600_000, 10);
    const emittedHours = new Map(sim.emitted.candles('ETH/USDT', '1h', { includeHistory: true }).map((c) => [c.timestamp, c]));
    expect(hours).toHaveLength(10);
    for (const [ts, o, h, l, c, v] of hours) expect([o, h, l, c, v]).toEqual(['open', 'high', 'low', 'close', 'volume'].map((k) => (emittedHours.get(ts!) as unknown as Record<string, number>)[k]));
    const raw = (await (await fetch(`${sim.url}/coinbaseexchange/products/BTC-USDT/candles?granularity=60`)).json()) as number[][];
    expect(raw.length).toBe(300);
    expect(raw[0]![0]).toBeGreaterThan(raw[1]![0]!);
    expect(raw[0]![0]! * 1000).toBe(sim.emitted.candles('BTC/USDT', '1m').at(-1)!.timestamp); // the forming bucket is included
    expect((await fetch(`${sim.url}/coinbaseexchange/products/BTC-USDT/candles?granularity=61`)).status).toBe(400);
  });

  it('fetchTicker: bid/ask, last, volume and the time, recorded as a REST ticker', async () => {
    const t = await ex.fetchTicker('BTC/USDT');
    const e = sim.emitted.tickers('BTC/USDT', 'rest').at(-1)!;
    expect({ timestamp: t.timestamp, bid: t.bid, ask: t.ask, last: t.last, baseVolume: t.baseVolume }).toEqual({ timestamp: e.timestamp, bid: e.bid, ask: e.ask, last: e.last, baseVolume: e.baseVolume });
  });

  it('fetchOrderBook (level 2): the whole book, sequence as nonce', async () => {
    const ob = await ex.fetchOrderBook('ETH/USDT');
    const book = sim.orderBook('ETH/USDT');
    expect(ob.nonce).toBe(book.nonce);
    expect(ob.bids.map(([p, q]) => [p, q])).toEqual(book.bids.map(([p, q]) => [p, q]));
    expect(ob.asks.map(([p, q]) => [p, q])).toEqual(book.asks.map(([p, q]) => [p, q]));
  });

  it('errors: {"message"} with the status; 404 NotFound (ccxt: OrderNotFound), refusal ExchangeNotAvailable, 429 RateLimitExceeded', async () => {
    const nf = await fetch(`${sim.url}/coinbaseexchange/products/XRP-USDT/ticker`);
    expect([nf.status, await nf.json()]).toEqual([404, { message: 'NotFound' }]);
    // What ccxt makes of Coinbase's 404 (issue 13: the same 404 means different classes per exchange).
    await expect((ex as unknown as Record<string, (p: unknown) => Promise<unknown>>).publicGetProductsIdTicker!({ id: 'XRP-USDT' })).rejects.toBeInstanceOf(ccxt.OrderNotFound);
    await expect(ex.fetchTicker('XRP/USDT')).rejects.toBeInstanceOf(ccxt.BadSymbol); // ccxt's own check, no request
    sim.applyFault({ kind: 'refuse', target: 'rest', ms: 1_000, status: 503, dialect: 'coinbaseexchange' });
    await expect(ex.fetchTicker('BTC/USDT')).rejects.toBeInstanceOf(ccxt.ExchangeNotAvailable);
    expect((await fetch(`${sim.url}/okx/api/v5/public/time`)).status).toBe(200); // other dialects unaffected
    sim.clearFaults();
    sim.applyFault({ kind: 'rateLimit', requestsPerSecond: 1, ms: 2_000, dialect: 'coinbaseexchange' });
    // 1 a second: of three at once at least one is refused (two if they fall in the same second).
    const results = await Promise.allSettled([1, 2, 3].map(() => ex.fetchTrades('BTC/USDT')));
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    for (const r of rejected) expect(r.reason).toBeInstanceOf(ccxt.RateLimitExceeded);
    sim.applyFault({ kind: 'rateLimit', requestsPerSecond: 0, ms: 2_000, dialect: 'coinbaseexchange' });
    const raw = await fetch(`${sim.url}/coinbaseexchange/time`);
    expect([raw.status, await raw.json()]).toEqual([429, { message: 'Public rate limit exceeded' }]);
    sim.clearFaults();
    expect((await ex.fetchTicker('BTC/USDT')).bid).toBeGreaterThan(0);
  });
});

describe('Coinbase Exchange websocket through ccxt.pro.coinbaseexchange', () => {
  let sim: Sim;
  let pro: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 9, tradesPerSecond: 40, historyDays: 0, tickerPushIntervalMs: 500 });
    await sim.start();
    pro = client(sim, true);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  it('has no candle stream: ccxt says so, the gateway polls candles', () => {
    expect(pro.has.watchOHLCV).toBe(false);
  });

  it('watchTrades (matches): the emitted trades in order, each once, taker side', async () => {
    const got: Trade[] = [];
    while (got.length < 400) got.push(...(await pro.watchTrades('ETH/USDT')));
    const first = Number(got[0]!.id);
    expect(ids(got)).toEqual(range(first, got.length));
    expect(got.map(fromCcxt)).toEqual(sim.emitted.trades('ETH/USDT', { fromId: first }).slice(0, got.length).map(strip));
  }, 20_000);

  it('watchTicker: a pushed ticker, equal to the emitted one', async () => {
    const t = await pro.watchTicker('BTC/USDT');
    const e = sim.emitted.tickers('BTC/USDT', 'ws').find((x) => x.timestamp === t.timestamp);
    expect(e).toBeDefined();
    expect({ bid: t.bid, bidVolume: t.bidVolume, ask: t.ask, askVolume: t.askVolume, last: t.last, open: t.open, high: t.high, low: t.low, baseVolume: t.baseVolume }).toEqual({
      bid: e!.bid,
      bidVolume: e!.bidVolume,
      ask: e!.ask,
      askVolume: e!.askVolume,
      last: e!.last,
      open: e!.open,
      high: e!.high,
      low: e!.low,
      baseVolume: e!.baseVolume,
    });
  });

  it('watchOrderBook (level2: snapshot, then l2update) equals the sim book', async () => {
    let matched = false;
    for (let i = 0; i < 100 && !matched; i++) {
      const ob = await pro.watchOrderBook('BTC/USDT');
      const book = sim.orderBook('BTC/USDT', 20);
      const same = (a: number[][], b: ReadonlyArray<readonly [number, number]>) => JSON.stringify(a.slice(0, 20).map(([p, q]) => [p, q])) === JSON.stringify(b.map(([p, q]) => [p, q]));
      matched = same(ob.bids as number[][], book.bids) && same(ob.asks as number[][], book.asks);
    }
    expect(matched).toBe(true);
  }, 20_000);

  it('a dropped socket rejects the pending watch with a NetworkError; the next watch resubscribes', async () => {
    await pro.watchTrades('BTC/USDT');
    const pending = pro.watchTrades('BTC/USDT');
    sim.applyFault({ kind: 'drop', dialect: 'coinbaseexchange' });
    await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
    expect((await pro.watchTrades('BTC/USDT')).length).toBeGreaterThan(0);
  }, 20_000);
});

describe('Coinbase Exchange feed protocol (raw)', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 3, tradesPerSecond: 20, historyDays: 0, symbols: ['BTC/USDT'] });
    await sim.start();
  });
  afterAll(async () => {
    await sim.close();
  });

  it('subscribe → subscriptions, last_match, matches with sequence, heartbeat; errors {"type":"error"}; refused upgrades', async () => {
    const ws = new WebSocket(`${sim.wsUrl}/coinbaseexchange/ws-feed`);
    const msgs: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString()) as Record<string, unknown>));
    await new Promise((r) => ws.once('open', r));
    await sleep(1_000); // a first trade exists (last_match)
    ws.send(JSON.stringify({ type: 'subscribe', product_ids: ['BTC-USDT'], channels: ['matches', { name: 'heartbeat', product_ids: ['BTC-USDT'] }] }));
    ws.send(JSON.stringify({ type: 'subscribe', product_ids: ['NOPE-USDT'], channels: ['matches'] }));
    ws.send(JSON.stringify({ type: 'subscribe', product_ids: ['BTC-USDT'], channels: ['candles'] }));
    await sleep(2_500);
    ws.close();
    expect(msgs[0]).toEqual({ type: 'subscriptions', channels: [{ name: 'matches', product_ids: ['BTC-USDT'] }, { name: 'heartbeat', product_ids: ['BTC-USDT'] }] });
    expect(msgs[1]).toMatchObject({ type: 'last_match', product_id: 'BTC-USDT' });
    expect(msgs).toContainEqual({ type: 'error', message: 'Failed to subscribe', reason: 'NOPE-USDT is not a valid product' });
    expect(msgs).toContainEqual({ type: 'error', message: 'Failed to subscribe', reason: 'candles is not a valid channel' });
    const matches = msgs.filter((m) => m.type === 'match');
    expect(matches.length).toBeGreaterThan(5);
    expect(typeof matches[0]!.trade_id).toBe('number');
    const seqs = matches.map((m) => m.sequence as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(msgs.some((m) => m.type === 'heartbeat')).toBe(true);
    sim.applyFault({ kind: 'refuse', target: 'ws', status: 403, ms: 500, dialect: 'coinbaseexchange' });
    const refused = new WebSocket(`${sim.wsUrl}/coinbaseexchange/ws-feed`);
    const status = await new Promise<number>((r) => refused.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0)));
    expect(status).toBe(403);
  });
});
