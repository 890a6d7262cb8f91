/**
 * The OKX dialect against the real ccxt 4.5.84: `ccxt.okx` (REST) and `ccxt.pro.okx` (websocket)
 * run unchanged through `sim.ccxtOptions('okx')`, and what they parse is exactly what the engine
 * emitted — the same trades the Binance dialect prints (one engine under every dialect).
 */
import http from 'node:http';
import ccxt, { type Exchange, type OrderBook, type Trade } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildSim, type Sim, type SimTrade } from '../../index.ts';
import { crc32 } from './wire.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function client(sim: Sim, pro = false): Exchange {
  const o = sim.ccxtOptions('okx') as { options: Record<string, unknown> };
  const cls = pro ? ccxt.pro.okx : ccxt.okx;
  return new cls({ ...o, httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false, options: { ...o.options, tradesLimit: 10_000, ws: { backoff: { base: 100 } } } });
}

const fromCcxt = (t: Trade) => ({ id: Number(t.id), timestamp: t.timestamp!, price: t.price!, amount: t.amount!, side: t.side as 'buy' | 'sell' });
const strip = ({ symbol: _s, isBuyerMaker: _m, ...rest }: SimTrade) => rest;

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

describe('OKX REST through ccxt.okx', () => {
  let sim: Sim;
  let ex: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 42, tradesPerSecond: 50, historyDays: 3 });
    await sim.start();
    ex = client(sim);
    await sleep(3000);
  });
  afterAll(async () => {
    await sim.close();
  });

  it('loadMarkets lists the spot symbols with tick and step sizes (default fetchMarkets types too)', async () => {
    const markets = await ex.loadMarkets();
    expect(Object.keys(markets).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
    const btc = markets['BTC/USDT']!;
    expect(btc).toMatchObject({ id: 'BTC-USDT', base: 'BTC', quote: 'USDT', type: 'spot', spot: true, active: true, precision: { price: 0.01, amount: 0.00001 }, limits: { amount: { min: 0.00001 } } });
    // ccxt's default asks for spot, futures, swap and option markets: the others answer empty.
    const all = new ccxt.okx({ urls: (sim.ccxtOptions('okx') as { urls: Record<string, unknown> }).urls, enableRateLimit: false });
    expect(Object.keys(await all.loadMarkets()).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
  });

  it('fetchTrades: the latest trades, equal to the emitted ones; history-trades pages back by tradeId', async () => {
    const latest = await ex.fetchTrades('BTC/USDT', undefined, 50);
    expect(latest).toHaveLength(50);
    const ids = latest.map((t) => Number(t.id));
    const want = sim.emitted.trades('BTC/USDT', { fromId: ids[0] }).filter((t) => t.id <= ids.at(-1)!);
    expect(latest.map(fromCcxt)).toEqual(want.map(strip));
    expect(typeof latest[0]!.id).toBe('string');
    // Page back from the oldest: `after` = records older than that tradeId.
    const older = await ex.fetchTrades('BTC/USDT', undefined, 40, { method: 'publicGetMarketHistoryTrades', after: String(ids[0]), type: '1' });
    expect(older.map((t) => Number(t.id))).toEqual(Array.from({ length: 40 }, (_, i) => ids[0]! - 40 + i));
    expect(older.map(fromCcxt)).toEqual(sim.emitted.trades('BTC/USDT', { fromId: ids[0]! - 40 }).slice(0, 40).map(strip));
    // `before` alone: the latest trades newer than it (OKX's documented behaviour).
    const newer = await ex.fetchTrades('BTC/USDT', undefined, 100, { method: 'publicGetMarketHistoryTrades', before: String(ids.at(-1)! - 5) });
    expect(newer.map((t) => Number(t.id)).slice(0, 5)).toEqual([1, 2, 3, 4, 5].map((d) => ids.at(-1)! - 5 + d));
    // Both: an exact window, exclusive on both ends.
    const window = await ex.fetchTrades('BTC/USDT', undefined, 100, { method: 'publicGetMarketHistoryTrades', before: String(ids[0]), after: String(ids[0]! + 4) });
    expect(window.map((t) => Number(t.id))).toEqual([1, 2, 3].map((d) => ids[0]! + d));
  });

  it('the trades are the ones the Binance dialect prints (one engine)', async () => {
    const bn = new ccxt.binance({ ...sim.ccxtOptions(), httpAgent: new http.Agent(), enableRateLimit: false });
    const okxTrades = await ex.fetchTrades('ETH/USDT', undefined, 20, { method: 'publicGetMarketHistoryTrades', after: String(sim.emitted.trades('ETH/USDT').at(-1)!.id - 100) });
    const first = Number(okxTrades[0]!.id);
    const bnTrades = await bn.fetchTrades('ETH/USDT', undefined, 20, { fromId: first });
    expect(okxTrades.map(fromCcxt)).toEqual(bnTrades.map(fromCcxt));
  });

  it('fetchOHLCV: candles equal the emitted ones, in every page, closed history and forming last', async () => {
    const since = sim.now() - 2 * 86_400_000; // history-candles (older than 1440 bars)
    const page = await ex.fetchOHLCV('BTC/USDT', '1m', since, 300);
    expect(page).toHaveLength(300);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
    expect(page[0]![0]).toBe(Math.ceil(since / 60_000) * 60_000);
    for (const [ts, o, h, l, c, v] of page) {
      const e = emitted.get(ts!)!;
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
    }
    const recent = await ex.fetchOHLCV('BTC/USDT', '1m', undefined, 5);
    expect(recent.map((r) => r[0])).toEqual(sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).slice(-5).map((c) => c.timestamp));
    // Hours and days: UTC buckets for fetchOHLCV (ccxt asks 1Dutc), equal to the engine's.
    const days = await ex.fetchOHLCV('ETH/USDT', '1d', sim.now() - 3 * 86_400_000, 10);
    const emittedDays = new Map(sim.emitted.candles('ETH/USDT', '1d', { includeHistory: true }).map((c) => [c.timestamp, c]));
    for (const [ts, o, , , c] of days) expect([o, c]).toEqual([emittedDays.get(ts!)!.open, emittedDays.get(ts!)!.close]);
    // The raw rows: newest first, the forming bucket with confirm "0", the rest "1".
    const raw = (await getJson(`${sim.url}/okx/api/v5/market/candles?instId=BTC-USDT&bar=1m&limit=3`)).body as { data: string[][] };
    expect(raw.data.map((r) => r[8])).toEqual(['0', '1', '1']);
    expect(Number(raw.data[0]![0])).toBeGreaterThan(Number(raw.data[1]![0]));
  });

  it('fetchTicker: bid/ask and 24 h stats, recorded as a REST ticker', async () => {
    const t = await ex.fetchTicker('BTC/USDT');
    const e = sim.emitted.tickers('BTC/USDT', 'rest').at(-1)!;
    expect(t.timestamp).toBe(e.timestamp);
    expect({ bid: t.bid, bidVolume: t.bidVolume, ask: t.ask, askVolume: t.askVolume, last: t.last, open: t.open, high: t.high, low: t.low, baseVolume: t.baseVolume, quoteVolume: t.quoteVolume }).toEqual({
      bid: e.bid,
      bidVolume: e.bidVolume,
      ask: e.ask,
      askVolume: e.askVolume,
      last: e.last,
      open: e.open,
      high: e.high,
      low: e.low,
      baseVolume: e.baseVolume,
      quoteVolume: e.quoteVolume,
    });
    const all = await ex.fetchTickers();
    expect(Object.keys(all).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
  });

  it('fetchOrderBook: the book, `sz` levels', async () => {
    const ob = await ex.fetchOrderBook('ETH/USDT', 10);
    const book = sim.orderBook('ETH/USDT', 10);
    expect(ob.bids.map(([p, q]) => [p, q])).toEqual(book.bids.map(([p, q]) => [p, q]));
    expect(ob.asks.map(([p, q]) => [p, q])).toEqual(book.asks.map(([p, q]) => [p, q]));
  });

  it("errors in OKX's format: BadSymbol/51001, 50014; a refused REST is OnMaintenance, the rate limit RateLimitExceeded (429, 50011)", async () => {
    await expect(ex.fetchTicker('XRP/USDT')).rejects.toBeInstanceOf(ccxt.BadSymbol);
    expect(await getJson(`${sim.url}/okx/api/v5/market/ticker?instId=XRP-USDT`)).toMatchObject({ body: { code: '51001', data: [] } });
    expect(await getJson(`${sim.url}/okx/api/v5/market/ticker`)).toMatchObject({ body: { code: '50014', msg: 'Parameter instId can not be empty', data: [] } });
    sim.applyFault({ kind: 'refuse', target: 'rest', ms: 1_000, dialect: 'okx' });
    await expect(ex.fetchTicker('BTC/USDT')).rejects.toBeInstanceOf(ccxt.OnMaintenance);
    // Another dialect is not refused.
    expect((await getJson(`${sim.url}/api/v3/ping`)).status).toBe(200);
    sim.clearFaults();
    sim.applyFault({ kind: 'rateLimit', requestsPerSecond: 1, ms: 2_000, dialect: 'okx' });
    const results = await Promise.allSettled([1, 2, 3].map(() => ex.fetchTicker('BTC/USDT')));
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThanOrEqual(2);
    for (const r of rejected) expect(r.reason).toBeInstanceOf(ccxt.RateLimitExceeded);
    sim.applyFault({ kind: 'rateLimit', requestsPerSecond: 0, ms: 2_000, dialect: 'okx' });
    const raw = await fetch(`${sim.url}/okx/api/v5/public/time`);
    expect(raw.status).toBe(429);
    expect(await raw.json()).toEqual({ msg: 'Too Many Requests', code: '50011' });
    sim.clearFaults();
    expect((await ex.fetchTicker('BTC/USDT')).bid).toBeGreaterThan(0);
  });
});

describe('OKX websocket through ccxt.pro.okx', () => {
  let sim: Sim;
  let pro: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 9, tradesPerSecond: 40, historyDays: 0, speed: 60, tickerPushIntervalMs: 1_000 });
    await sim.start();
    pro = client(sim, true);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  it('watchTrades: the emitted trades in order, each once', async () => {
    const got: Trade[] = [];
    while (got.length < 600) got.push(...(await pro.watchTrades('ETH/USDT')));
    const first = Number(got[0]!.id);
    const last = Number(got.at(-1)!.id);
    expect(got.map((t) => Number(t.id))).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    const want = sim.emitted.trades('ETH/USDT', { fromId: first }).filter((t) => t.id <= last);
    expect(got.map(fromCcxt)).toEqual(want.map(strip));
  }, 20_000);

  it('watchTicker: a pushed ticker, equal to the emitted one', async () => {
    const t = await pro.watchTicker('BTC/USDT');
    const e = sim.emitted.tickers('BTC/USDT', 'ws').find((x) => x.timestamp === t.timestamp);
    expect(e).toBeDefined();
    expect({ bid: t.bid, bidVolume: t.bidVolume, ask: t.ask, last: t.last, open: t.open, high: t.high, low: t.low, baseVolume: t.baseVolume, quoteVolume: t.quoteVolume }).toEqual({
      bid: e!.bid,
      bidVolume: e!.bidVolume,
      ask: e!.ask,
      last: e!.last,
      open: e!.open,
      high: e!.high,
      low: e!.low,
      baseVolume: e!.baseVolume,
      quoteVolume: e!.quoteVolume,
    });
  });

  it('watchOHLCV (on /business): closed buckets equal the emitted candles', async () => {
    let rows: number[][] = [];
    const deadline = Date.now() + 15_000;
    while (rows.length < 3 && Date.now() < deadline) {
      await pro.watchOHLCV('BTC/USDT', '1m');
      rows = (pro.ohlcvs['BTC/USDT']!['1m'] as unknown as number[][]).map((r) => [...r]);
    }
    expect(rows.length).toBeGreaterThanOrEqual(3);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m').map((c) => [c.timestamp, c]));
    for (const [ts, o, h, l, c, v] of rows.slice(0, -1)) {
      const e = emitted.get(ts!)!;
      expect(e.closed).toBe(true);
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
    }
    expect(Object.keys((pro as unknown as { clients: Record<string, unknown> }).clients).some((u) => u.endsWith('/okx/ws/v5/business'))).toBe(true);
  }, 20_000);

  it('watchOrderBook (books: snapshot, then updates chained by seqId) equals the sim book', async () => {
    let matched = false;
    let ob: OrderBook | undefined;
    for (let i = 0; i < 60 && !matched; i++) {
      ob = await pro.watchOrderBook('BTC/USDT');
      const book = sim.orderBook('BTC/USDT', 25);
      if (book.nonce !== ob.nonce) continue;
      expect(ob.bids.slice(0, 25).map(([p, q]) => [p, q])).toEqual(book.bids.map(([p, q]) => [p, q]));
      expect(ob.asks.slice(0, 25).map(([p, q]) => [p, q])).toEqual(book.asks.map(([p, q]) => [p, q]));
      matched = true;
    }
    expect(matched).toBe(true);
    const top5 = await pro.watchOrderBook('ETH/USDT', 5); // books5
    expect(top5.bids).toHaveLength(5);
    expect(top5.bids[0]![0]).toBeLessThan(top5.asks[0]![0]!);
  }, 20_000);

  it('a dropped socket rejects the pending watch with a NetworkError; the next watch resubscribes', async () => {
    await pro.watchTrades('BTC/USDT');
    const pending = pro.watchTrades('BTC/USDT');
    sim.applyFault({ kind: 'drop', dialect: 'okx' });
    await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
    expect((await pro.watchTrades('BTC/USDT')).length).toBeGreaterThan(0);
  }, 20_000);
});

describe('OKX websocket protocol (raw)', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 3, tradesPerSecond: 20, historyDays: 0, symbols: ['BTC/USDT'] });
    await sim.start();
  });
  afterAll(async () => {
    await sim.close();
  });

  async function open(path: string): Promise<{ ws: WebSocket; frames: string[] }> {
    const ws = new WebSocket(`${sim.wsUrl}/okx/ws/v5/${path}`);
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    return { ws, frames };
  }
  const waitFor = async (frames: string[], pred: (f: string) => boolean) => {
    for (let i = 0; i < 100 && !frames.some(pred); i++) await sleep(20);
    return frames.find(pred);
  };

  it('ping → pong; subscribe → ack; unknown channel or wrong URL → error 60018; bad JSON → 60012', async () => {
    const { ws, frames } = await open('public');
    ws.send('ping');
    expect(await waitFor(frames, (f) => f === 'pong')).toBe('pong');
    ws.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'trades', instId: 'BTC-USDT' }] }));
    const ack = JSON.parse((await waitFor(frames, (f) => f.includes('"event":"subscribe"')))!);
    expect(ack).toMatchObject({ event: 'subscribe', arg: { channel: 'trades', instId: 'BTC-USDT' } });
    const push = JSON.parse((await waitFor(frames, (f) => f.startsWith('{"arg"')))!);
    expect(push.data[0]).toMatchObject({ instId: 'BTC-USDT', tradeId: expect.stringMatching(/^\d+$/), ts: expect.stringMatching(/^\d+$/) });
    ws.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'candle1m', instId: 'BTC-USDT' }] })); // candles live on /business
    const err = JSON.parse((await waitFor(frames, (f) => f.includes('"event":"error"')))!);
    expect(err).toMatchObject({ event: 'error', code: '60018' });
    ws.send('{nope');
    expect(JSON.parse((await waitFor(frames, (f) => f.includes('60012')))!)).toMatchObject({ event: 'error', code: '60012' });
    ws.close();
  });

  it('books: snapshot then updates with prevSeqId = the previous seqId and the top-25 checksum', async () => {
    const { ws, frames } = await open('public');
    ws.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'books', instId: 'BTC-USDT' }] }));
    for (let i = 0; i < 100 && frames.filter((f) => f.includes('"action":"update"')).length < 5; i++) await sleep(50);
    ws.close();
    const msgs = frames.filter((f) => f.includes('"action"')).map((f) => JSON.parse(f) as { action: string; data: Array<{ seqId: number; prevSeqId: number; checksum: number; bids: string[][]; asks: string[][] }> });
    expect(msgs[0]!.action).toBe('snapshot');
    expect(msgs[0]!.data[0]!.prevSeqId).toBe(-1);
    // Apply the updates to the snapshot, check chaining and checksums.
    const bids = new Map(msgs[0]!.data[0]!.bids.map(([p, s]) => [p!, s!]));
    const asks = new Map(msgs[0]!.data[0]!.asks.map(([p, s]) => [p!, s!]));
    let seq = msgs[0]!.data[0]!.seqId;
    for (const m of msgs.slice(1)) {
      const d = m.data[0]!;
      expect(d.prevSeqId).toBe(seq);
      seq = d.seqId;
      for (const [side, levels] of [[bids, d.bids], [asks, d.asks]] as const) {
        for (const [p, s] of levels) {
          if (s === '0') side.delete(p!);
          else side.set(p!, s!);
        }
      }
      const b = [...bids].sort((x, y) => Number(y[0]) - Number(x[0]));
      const a = [...asks].sort((x, y) => Number(x[0]) - Number(y[0]));
      const parts: string[] = [];
      for (let i = 0; i < 25; i++) {
        if (b[i]) parts.push(b[i]![0], b[i]![1]);
        if (a[i]) parts.push(a[i]![0], a[i]![1]);
      }
      expect(crc32(parts.join(':'))).toBe(d.checksum);
    }
    expect(msgs.length).toBeGreaterThan(3);
  });

  it('a refused websocket is answered with the status; a paused channel drops its sockets', async () => {
    sim.applyFault({ kind: 'refuse', target: 'ws', status: 403, ms: 500, dialect: 'okx' });
    await expect(open('public')).rejects.toThrow(/403/);
    await sleep(600);
    const { ws } = await open('public');
    ws.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'trades', instId: 'BTC-USDT' }] }));
    await sleep(100);
    const closed = new Promise((r) => ws.once('close', r));
    sim.applyFault({ kind: 'pause', channel: 'trades', ms: 300, dialect: 'okx' });
    await closed;
  });

  it('crc32 is the IEEE one, signed', () => {
    expect(crc32('123456789')).toBe(0xcbf43926 | 0);
  });
});
