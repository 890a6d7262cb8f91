/**
 * The Bybit dialect against the real ccxt 4.5.84: `ccxt.bybit` (REST) and `ccxt.pro.bybit`
 * (websocket) run unchanged through `sim.ccxtOptions('bybit')`, for spot (`BTC/USDT`) and the
 * linear perpetual (`BTC/USDT:USDT`), and what they parse is what the engine emitted. Bybit's
 * `recent-trade` ignores `since` (the latest `limit` trades only), and its refusals map to the
 * ccxt errors a gateway sees in production.
 */
import http from 'node:http';
import ccxt, { type Exchange, type OHLCV, type Trade } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildSim, type Sim, type SimTrade } from '../../index.ts';
import { marketSpec } from '../../market.ts';
import { type Category, tradeIdOf } from './wire.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const MARKETS: ReadonlyArray<[string, string, Category]> = [
  ['BTC/USDT', 'BTC/USDT', 'spot'],
  ['BTC/USDT:USDT', 'BTC/USDT', 'linear'],
];

function client(sim: Sim, pro = false): Exchange {
  const o = sim.ccxtOptions('bybit') as { options: Record<string, unknown> };
  const Cls = pro ? ccxt.pro.bybit : ccxt.bybit;
  return new Cls({ ...o, httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false, options: { ...o.options, tradesLimit: 10_000, ws: { backoff: { base: 100 } } } });
}

/** A sim trade as ccxt parses it from the Bybit dialect of `category`. */
function expected(category: Category, unified: string, t: SimTrade) {
  return { id: tradeIdOf(category, marketSpec(t.symbol), t.id), symbol: unified, timestamp: t.timestamp, price: t.price, amount: t.amount, side: t.side };
}
const pick = (t: Trade) => ({ id: t.id, symbol: t.symbol, timestamp: t.timestamp, price: t.price, amount: t.amount, side: t.side });

describe('bybit dialect: REST through ccxt.bybit', () => {
  let sim: Sim;
  let ex: Exchange;
  beforeAll(async () => {
    sim = buildSim({ seed: 3, symbols: SYMBOLS, tradesPerSecond: 200, historyDays: 1 });
    await sim.start();
    ex = client(sim);
    await ex.loadMarkets();
    await sleep(2_000);
  });
  afterAll(async () => {
    await sim.close();
  });

  it('loadMarkets lists spot and linear perpetual markets with the engine tick and step, without keys', () => {
    expect(Object.keys(ex.markets ?? {}).sort()).toEqual(['BTC/USDT', 'BTC/USDT:USDT', 'ETH/USDT', 'ETH/USDT:USDT']);
    expect(ex.market('BTC/USDT')).toMatchObject({ id: 'BTCUSDT', type: 'spot', spot: true, active: true, precision: { price: 0.01, amount: 0.00001 } });
    expect(ex.market('BTC/USDT:USDT')).toMatchObject({ id: 'BTCUSDT', type: 'swap', linear: true, settle: 'USDT', contractSize: 1, active: true, precision: { price: 0.01, amount: 0.00001 } });
  });

  for (const [unified, engineSymbol, category] of MARKETS) {
    it(`${category}: fetchTrades returns the latest trades with Bybit's id style, and ignores since`, async () => {
      const limit = category === 'spot' ? 60 : 200;
      const got = await ex.fetchTrades(unified, undefined, limit);
      expect(got).toHaveLength(limit);
      const all = sim.emitted.trades(engineSymbol);
      const spec = marketSpec(engineSymbol);
      const byId = new Map(all.map((t) => [tradeIdOf(category, spec, t.id), t]));
      // The newest `limit` when the answer was made (trades sharing a ms may come in either order).
      const ids = got.map((t) => byId.get(String(t.id))!.id).sort((a, b) => a - b);
      expect(ids).toEqual(Array.from({ length: limit }, (_, i) => ids[0]! + i));
      for (const t of got) expect(pick(t)).toEqual(expected(category, unified, byId.get(String(t.id))!));
      if (category === 'spot') expect(got[0]!.id).toMatch(/^\d{19}$/);
      else expect(got[0]!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      // since far back: Bybit still answers only the newest trades (ccxt then filters by since).
      const first = all[0]!.timestamp;
      const fromStart = await ex.fetchTrades(unified, first, 100);
      expect(fromStart.length).toBe(category === 'spot' ? 60 : 100); // spot: at most 60 per answer
      expect(fromStart[0]!.timestamp).toBeGreaterThan(first);
      expect(all.length).toBeGreaterThan(fromStart.length);
    });

    it(`${category}: fetchOHLCV pages equal the emitted candles (start forward, newest first on the wire)`, async () => {
      const want = sim.emitted.candles(engineSymbol, '1m', { includeHistory: true }).filter((c) => c.closed);
      const since = want.at(-300)!.timestamp;
      const got: OHLCV[] = await ex.fetchOHLCV(unified, '1m', since, 200);
      expect(got).toHaveLength(200);
      expect(got.map((r) => r.slice(0, 6))).toEqual(want.slice(-300, -100).map((c) => [c.timestamp, c.open, c.high, c.low, c.close, c.volume]));
      const latest = await ex.fetchOHLCV(unified, '1m', undefined, 3);
      expect(latest.at(-1)![0]).toBe(sim.emitted.candles(engineSymbol, '1m').at(-1)!.timestamp);
    });

    it(`${category}: fetchTicker and fetchOrderBook`, async () => {
      const t = await ex.fetchTicker(unified);
      const rest = sim.emitted.tickers(engineSymbol, 'rest').at(-1)!;
      expect(t.symbol).toBe(unified);
      expect({ last: t.last, open: t.open, high: t.high, low: t.low, bid: t.bid, ask: t.ask, bv: t.baseVolume, qv: t.quoteVolume }).toEqual({
        last: rest.last,
        open: rest.open,
        high: rest.high,
        low: rest.low,
        bid: rest.bid,
        ask: rest.ask,
        bv: rest.baseVolume,
        qv: rest.quoteVolume,
      });
      expect(t.timestamp).toBeUndefined(); // Bybit's REST tickers carry no time
      const ob = await ex.fetchOrderBook(unified, 20);
      const book = sim.orderBook(engineSymbol, 20);
      if (ob.bids[0]![0] === book.bids[0]![0]) expect(ob.bids).toEqual(book.bids.map(([p, q]) => [p, q]));
      expect(ob.bids).toHaveLength(20);
      expect(ob.bids[0]![0]!).toBeLessThan(ob.asks[0]![0]!);
    });
  }

  it('errors: a bad symbol is BadRequest; refusals and rate limits map to the ccxt classes Bybit gets', async () => {
    const raw = (await (await fetch(`${sim.url}/bybit/v5/market/recent-trade?category=spot&symbol=NOPE`)).json()) as Record<string, unknown>;
    expect(raw).toMatchObject({ retCode: 10001, retMsg: 'params error: Symbol Invalid', result: {}, retExtInfo: {} });
    expect(typeof raw.time).toBe('number');
    sim.applyFault({ kind: 'refuse', target: 'rest', ms: 1_000, status: 503, dialect: 'bybit' });
    await expect(ex.fetchTicker('BTC/USDT')).rejects.toBeInstanceOf(ccxt.ExchangeNotAvailable);
    // Binance is untouched by a fault aimed at Bybit.
    expect((await fetch(`${sim.url}/api/v3/ping`)).status).toBe(200);
    sim.applyFault({ kind: 'refuse', target: 'rest', ms: 1_000, status: 403, dialect: 'bybit' });
    await expect(ex.fetchTicker('BTC/USDT')).rejects.toBeInstanceOf(ccxt.RateLimitExceeded);
    sim.clearFaults();
    sim.applyFault({ kind: 'rateLimit', requestsPerSecond: 0, ms: 1_000, dialect: 'bybit' });
    const limited = await fetch(`${sim.url}/bybit/v5/market/tickers?category=spot`);
    expect(limited.status).toBe(200);
    expect(await limited.json()).toMatchObject({ retCode: 10006, retMsg: 'Too many visits!' });
    await expect(ex.fetchTrades('BTC/USDT:USDT')).rejects.toBeInstanceOf(ccxt.RateLimitExceeded);
    sim.clearFaults();
    expect((await ex.fetchTicker('BTC/USDT')).last).toBeGreaterThan(0);
  });
});

describe('bybit dialect: websocket through ccxt.pro.bybit', () => {
  let sim: Sim;
  let pro: Exchange;
  beforeAll(async () => {
    sim = buildSim({ seed: 4, symbols: SYMBOLS, tradesPerSecond: 30, historyDays: 0 });
    await sim.start();
    pro = client(sim, true);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  for (const [unified, engineSymbol, category] of MARKETS) {
    it(`${category}: watchTrades delivers every emitted trade once, in order, across a dropped connection`, async () => {
      const seen = new Map<string, Trade>();
      const deadline = Date.now() + 4_000;
      let dropped = false;
      while (Date.now() < deadline) {
        try {
          const batch = await pro.watchTrades(unified);
          for (const t of batch) seen.set(String(t.id), t);
        } catch (err) {
          expect(err).toBeInstanceOf(ccxt.NetworkError); // the drop; the next call reconnects
        }
        if (!dropped && Date.now() > deadline - 2_500) {
          dropped = true;
          // After a drop, a fresh subscription picks up from the next tick (trades in between are lost, as on Bybit).
          sim.applyFault({ kind: 'drop', dialect: 'bybit' });
        }
      }
      const got = [...seen.values()].sort((a, b) => a.timestamp! - b.timestamp!);
      expect(got.length).toBeGreaterThan(50);
      const spec = marketSpec(engineSymbol);
      const byId = new Map(sim.emitted.trades(engineSymbol).map((t) => [tradeIdOf(category, spec, t.id), t]));
      for (const t of got) expect(pick(t)).toEqual(expected(category, unified, byId.get(String(t.id))!));
      // Until the drop, contiguous: no trade missing between the first and the drop.
      const ids = got.map((t) => byId.get(String(t.id))!.id);
      const before = ids.filter((id) => id < ids[0]! + 30);
      expect(before).toEqual(Array.from({ length: before.length }, (_, i) => ids[0]! + i));
    }, 20_000);

    it(`${category}: watchTicker equals the emitted websocket tickers (linear: snapshot then deltas)`, async () => {
      const got = [];
      for (let i = 0; i < 3; i++) got.push({ ...(await pro.watchTicker(unified)) });
      const want = new Map(sim.emitted.tickers(engineSymbol, 'ws').map((t) => [t.timestamp, t]));
      for (const t of got) {
        const w = want.get(t.timestamp!)!;
        expect(w).toBeDefined();
        expect({ last: t.last, open: t.open, high: t.high, low: t.low, bv: t.baseVolume, qv: t.quoteVolume }).toEqual({ last: w.last, open: w.open, high: w.high, low: w.low, bv: w.baseVolume, qv: w.quoteVolume });
        if (category === 'linear') expect({ bid: t.bid, ask: t.ask, bidVolume: t.bidVolume, askVolume: t.askVolume }).toEqual({ bid: w.bid, ask: w.ask, bidVolume: w.bidVolume, askVolume: w.askVolume });
        else expect(t.bid).toBeUndefined(); // Bybit's spot ticker stream has no book fields
      }
    });

    it(`${category}: watchOrderBook keeps the top 50 equal to the engine's book`, async () => {
      let matched = 0;
      for (let i = 0; i < 30; i++) {
        const ob = await pro.watchOrderBook(unified);
        const book = sim.orderBook(engineSymbol, 50);
        if (ob.bids.length === 50 && JSON.stringify(ob.bids) === JSON.stringify(book.bids) && JSON.stringify(ob.asks) === JSON.stringify(book.asks)) matched++;
      }
      expect(matched).toBeGreaterThan(20);
    }, 20_000);
  }

  it('protocol: ack, pong, errors in Bybit format; refused upgrades', async () => {
    const ws = new WebSocket(`${sim.wsUrl}/bybit/v5/public/linear`);
    const msgs: Record<string, unknown>[] = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString()) as Record<string, unknown>));
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ op: 'subscribe', req_id: '7', args: ['orderbook.50.BTCUSDT'] }));
    ws.send(JSON.stringify({ op: 'ping', req_id: '8' }));
    ws.send(JSON.stringify({ op: 'subscribe', req_id: '9', args: ['orderbook.7.BTCUSDT'] }));
    ws.send(JSON.stringify({ op: 'nope' }));
    await sleep(400);
    ws.close();
    expect(msgs).toContainEqual(expect.objectContaining({ success: true, ret_msg: '', op: 'subscribe', req_id: '7', conn_id: expect.any(String) }));
    expect(msgs).toContainEqual(expect.objectContaining({ success: true, ret_msg: 'pong', op: 'ping', req_id: '8' }));
    expect(msgs).toContainEqual(expect.objectContaining({ success: false, op: 'subscribe', req_id: '9' }));
    expect(msgs).toContainEqual(expect.objectContaining({ success: false, ret_msg: 'error:invalid op' }));
    const books = msgs.filter((m) => m.topic === 'orderbook.50.BTCUSDT') as Array<{ type: string; data: { u: number; seq: number } }>;
    expect(books[0]!.type).toBe('snapshot');
    for (let i = 1; i < books.length; i++) {
      expect(books[i]!.type).toBe('delta');
      expect(books[i]!.data.u).toBe(books[i - 1]!.data.u + 1);
      expect(books[i]!.data.seq).toBeGreaterThan(books[i - 1]!.data.seq);
    }
    sim.applyFault({ kind: 'refuse', target: 'ws', ms: 500, status: 403, dialect: 'bybit' });
    const refused = new WebSocket(`${sim.wsUrl}/bybit/v5/public/spot`);
    const status = await new Promise<number>((r) => refused.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0)));
    expect(status).toBe(403);
  });
});

describe('bybit dialect: candles through ccxt.pro.bybit', () => {
  let sim: Sim;
  let pro: Exchange;
  beforeAll(async () => {
    // 60x: a 1m candle closes every real second.
    sim = buildSim({ seed: 5, symbols: ['BTC/USDT'], tradesPerSecond: 2, historyDays: 0, speed: 60 });
    await sim.start();
    pro = client(sim, true);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  for (const [unified, , category] of MARKETS) {
    it(`${category}: watchOHLCV closed buckets equal the emitted candles`, async () => {
      const latest = new Map<number, OHLCV>(); // ccxt hands over new updates only: keep each bucket's last
      const deadline = Date.now() + 4_500;
      while (Date.now() < deadline) for (const r of await pro.watchOHLCV(unified, '1m')) latest.set(r[0]!, r);
      const want = new Map(sim.emitted.candles('BTC/USDT', '1m').map((c) => [c.timestamp, c]));
      const closed = [...latest.values()].sort((a, b) => a[0]! - b[0]!).slice(0, -1);
      expect(closed.length).toBeGreaterThanOrEqual(3);
      for (const r of closed) {
        const c = want.get(r[0]!)!;
        expect(c.closed).toBe(true);
        expect(r.slice(0, 6)).toEqual([c.timestamp, c.open, c.high, c.low, c.close, c.volume]);
      }
    }, 15_000);
  }
});
