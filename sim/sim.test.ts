/**
 * The sim against the real ccxt 4.5.84: `ccxt.binance` (REST) and `ccxt.pro.binance` (websocket)
 * run unchanged through the URL overrides of `sim.ccxtOptions()`, and what they parse must be
 * exactly what the sim says it emitted.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ccxt, { type Exchange, type OrderBook, type Trade } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { bucketOpen, nextOpen } from './candles.ts';
import { SymbolEngine } from './engine.ts';
import { buildSim, SIM_DEFAULTS, type Sim, type SimTrade } from './index.ts';
import { parseSimArgs } from './main.ts';
import { marketSpec } from './market.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function restClient(sim: Sim): Exchange {
  return new ccxt.binance({ ...sim.ccxtOptions(), httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false });
}

function wsClient(sim: Sim): Exchange {
  const o = sim.ccxtOptions();
  return new ccxt.pro.binance({
    ...o,
    httpAgent: new http.Agent({ keepAlive: true }),
    enableRateLimit: false,
    // A short reconnect backoff keeps the disconnect tests fast (default: 1 s doubling).
    options: { ...o.options, tradesLimit: 10_000, ws: { backoff: { base: 100 } } },
  });
}

/** The fields a gateway takes from a ccxt trade, in the sim's terms. */
function fromCcxt(t: Trade): Omit<SimTrade, 'symbol' | 'isBuyerMaker'> {
  return { id: Number(t.id), timestamp: t.timestamp!, price: t.price!, amount: t.amount!, side: t.side as 'buy' | 'sell' };
}
const strip = ({ symbol: _s, isBuyerMaker: _m, ...rest }: SimTrade) => rest;

async function httpJson(url: string): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(url);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // plain-text answers (503) stay text
  }
  return { status: res.status, body, headers: res.headers };
}

describe('engine', () => {
  const mk = (seed: number) =>
    new SymbolEngine({
      seed,
      spec: marketSpec('BTC/USDT'),
      tradesPerSecond: 200,
      startTime: 1_700_000_000_000,
      historyDays: 1,
      bookDepth: 20,
      maxStoredTrades: 100_000,
      volatility: 1e-4,
      bookIntervalMs: 100,
      firstTradeId: 1,
    });

  it('is deterministic in the seed and virtual time, whatever the tick pattern', () => {
    const a = mk(7);
    const b = mk(7);
    for (let t = 1_700_000_000_000; t <= 1_700_000_010_000; t += 10) a.advanceTo(t);
    for (let t = 1_700_000_000_000; t <= 1_700_000_010_000; t += 337) b.advanceTo(t);
    b.advanceTo(1_700_000_010_000);
    expect(a.trades.nextId).toBe(b.trades.nextId);
    expect(a.trades.count).toBeGreaterThan(1500);
    for (let id = a.trades.firstId; id < a.trades.nextId; id++) {
      expect([a.trades.time(id), a.trades.price(id), a.trades.qty(id), a.trades.buyerIsMaker(id)]).toEqual([
        b.trades.time(id),
        b.trades.price(id),
        b.trades.qty(id),
        b.trades.buyerIsMaker(id),
      ]);
    }
    expect(a.kline('1h', bucketOpen('1h', 1_699_990_000_000))).toEqual(b.kline('1h', bucketOpen('1h', 1_699_990_000_000)));
    const c = mk(8);
    c.advanceTo(1_700_000_010_000);
    expect(c.trades.price(c.trades.firstId + 10)).not.toBe(a.trades.price(a.trades.firstId + 10));
  });

  it('prints non-decreasing ms times, and candles that aggregate exactly its trades', () => {
    const e = mk(3);
    e.advanceTo(1_700_000_000_000 + 180_000);
    const t = e.trades;
    for (let id = t.firstId + 1; id < t.nextId; id++) {
      expect(t.time(id)).toBeGreaterThanOrEqual(t.time(id - 1));
      expect(Number.isInteger(t.time(id))).toBe(true);
    }
    const open = bucketOpen('1m', 1_700_000_000_000 + 90_000);
    const from = t.lowerBoundTime(open);
    const to = t.lowerBoundTime(open + 60_000);
    let hi = -Infinity;
    let lo = Infinity;
    let vol = 0;
    for (let id = from; id < to; id++) {
      hi = Math.max(hi, t.price(id));
      lo = Math.min(lo, t.price(id));
      vol += t.qty(id);
    }
    expect(e.kline('1m', open)).toMatchObject({
      open: t.price(from),
      close: t.price(to - 1),
      high: hi,
      low: lo,
      volume: vol,
      trades: to - from,
      firstId: from,
      lastId: to - 1,
    });
  });
});

describe('REST through ccxt.binance', () => {
  let sim: Sim;
  let ex: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 42, tradesPerSecond: 50, historyDays: 3 });
    await sim.start();
    ex = restClient(sim);
    await sleep(2000);
  });
  afterAll(async () => {
    await sim.close();
  });

  it('loadMarkets lists the spot symbols with tick and step sizes', async () => {
    const markets = await ex.loadMarkets();
    expect(Object.keys(markets).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
    const btc = markets['BTC/USDT']!;
    expect(btc).toMatchObject({ id: 'BTCUSDT', type: 'spot', spot: true, active: true, base: 'BTC', quote: 'USDT' });
    expect(btc.precision).toMatchObject({ price: 0.01, amount: 0.00001 });
    expect(btc.limits.amount?.min).toBe(0.00001);
    expect(btc.limits.cost?.min).toBe(5);
    expect(markets['ETH/USDT']!.precision).toMatchObject({ price: 0.001, amount: 0.0001 });
  });

  it('fetchTrades(since) returns exactly the emitted trades from that time', async () => {
    const since = sim.now() - 1500;
    const asked = sim.now();
    const got = await ex.fetchTrades('BTC/USDT', since);
    // The sim goes on trading while the answer travels: what it emitted after answering is not
    // in it. So: the answer is the emitted trades from `since`, in order, none missing, up to
    // at least the moment it was asked.
    const want = sim.emitted.trades('BTC/USDT', { since, until: since + 3_600_000 }).slice(0, 500);
    expect(want.length).toBeGreaterThan(30);
    expect(got.map(fromCcxt)).toEqual(want.slice(0, got.length).map(strip));
    expect(got.length).toBeGreaterThanOrEqual(want.filter((t) => t.timestamp < asked).length);
    const firstFive = await ex.fetchTrades('ETH/USDT', since, 5);
    expect(firstFive.map(fromCcxt)).toEqual(sim.emitted.trades('ETH/USDT', { since }).slice(0, 5).map(strip));
  });

  it('aggTrades by fromId refills a gap exactly', async () => {
    const all = sim.emitted.trades('BTC/USDT');
    const fromId = all[10]!.id;
    const got = await ex.fetchTrades('BTC/USDT', undefined, 20, { fromId });
    expect(got.map(fromCcxt)).toEqual(all.slice(10, 30).map(strip));
  });

  it('fetchOHLCV with paginate returns contiguous candles over the history, equal to the emitted ones', async () => {
    const since = sim.now() - 2 * 86_400_000;
    const got = await ex.fetchOHLCV('BTC/USDT', '1m', since, undefined, { paginate: true });
    expect(got.length).toBeGreaterThan(2 * 1440 - 2);
    expect(got[0]![0]).toBe(bucketOpen('1m', since) + 60_000);
    for (let i = 1; i < got.length; i++) expect(got[i]![0]! - got[i - 1]![0]!).toBe(60_000);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
    for (const [ts, o, h, l, c, v] of got.slice(0, -2)) {
      const e = emitted.get(ts!)!;
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
      expect(h!).toBeGreaterThanOrEqual(Math.max(o!, c!));
      expect(l!).toBeLessThanOrEqual(Math.min(o!, c!));
    }
    // History ends where live trading starts: no jump at the seam.
    const start = sim.emitted.candles('BTC/USDT', '1m')[0]!;
    const before = emitted.get(start.timestamp - 60_000)!;
    expect(Math.abs(start.open / before.close - 1)).toBeLessThan(0.001);
  });

  it('serves every Binance interval with aligned buckets', async () => {
    const weekly = await ex.fetchOHLCV('BTC/USDT', '1w', undefined, 5);
    expect(new Date(weekly.at(-1)![0]!).getUTCDay()).toBe(1); // Monday
    const monthly = await ex.fetchOHLCV('BTC/USDT', '1M', undefined, 5);
    expect(new Date(monthly.at(-1)![0]!).getUTCDate()).toBe(1);
    const hourly = await ex.fetchOHLCV('BTC/USDT', '1h', sim.now() - 5 * 3_600_000, 3);
    expect(hourly.map((c) => c[0])).toEqual([0, 1, 2].map((i) => nextOpen('1h', bucketOpen('1h', sim.now() - 5 * 3_600_000)) + i * 3_600_000));
    const daily = await ex.fetchOHLCV('BTC/USDT', '1d', undefined, 10);
    expect(daily.at(-1)![0]).toBe(bucketOpen('1d', sim.now()));
  });

  it('fetchTicker has bid and ask; fetchOrderBook the book', async () => {
    const t = await ex.fetchTicker('BTC/USDT');
    expect(t.symbol).toBe('BTC/USDT');
    expect(t.bid).toBeGreaterThan(0);
    expect(t.ask).toBeGreaterThan(t.bid!);
    expect(t.bidVolume).toBeGreaterThan(0);
    expect(t.last).toBeGreaterThan(0);
    expect(t.baseVolume).toBeGreaterThan(0);
    const served = sim.emitted.tickers('BTC/USDT', 'rest').at(-1)!;
    expect(served).toMatchObject({ timestamp: t.timestamp, bid: t.bid, ask: t.ask, last: t.last, quoteVolume: t.quoteVolume, percentage: t.percentage });
    const tickers = await ex.fetchTickers();
    expect(Object.keys(tickers).sort()).toEqual(['BTC/USDT', 'ETH/USDT']);
    const ob = await ex.fetchOrderBook('ETH/USDT', 10);
    expect(ob.bids).toHaveLength(10);
    expect(ob.asks[0]![0]!).toBeGreaterThan(ob.bids[0]![0]!);
    expect(ob.nonce).toBeGreaterThan(0);
  });

  it('unknown symbols: BadSymbol from ccxt, and -1121 from the server', async () => {
    await expect(ex.fetchTicker('FOO/USDT')).rejects.toBeInstanceOf(ccxt.BadSymbol);
    await expect(ex.publicGetTicker24hr({ symbol: 'FOOUSDT' })).rejects.toBeInstanceOf(ccxt.BadSymbol);
    const r = await httpJson(`${sim.url}/api/v3/klines?symbol=FOOUSDT&interval=1m`);
    expect(r).toMatchObject({ status: 400, body: { code: -1121, msg: 'Invalid symbol.' } });
  });

  it("answers bad parameters with Binance's error codes", async () => {
    const get = (q: string) => httpJson(`${sim.url}/api/v3/${q}`);
    expect((await get('klines?symbol=BTCUSDT&interval=7m')).body).toMatchObject({ code: -1120 });
    expect((await get('klines?symbol=BTCUSDT')).body).toMatchObject({ code: -1102 });
    expect((await get('klines?symbol=BTCUSDT&interval=1m&limit=1001')).body).toMatchObject({ code: -1130 });
    expect((await get('aggTrades?symbol=BTCUSDT&startTime=0&endTime=3600001')).body).toMatchObject({ code: -1127 });
    expect((await get('aggTrades?symbol=BTCUSDT&startTime=0&fromId=5')).body).toMatchObject({ code: -1128 });
    expect((await get('aggTrades?symbol=BTCUSDT&limit=abc')).body).toMatchObject({ code: -1100 });
    // klines with startTime start at the first bucket opening at or after it
    const t = sim.now() - 3_600_000 + 1234;
    const rows = (await get(`klines?symbol=BTCUSDT&interval=1m&startTime=${t}&limit=2`)).body as number[][];
    expect(rows[0]![0]).toBe(bucketOpen('1m', t) + 60_000);
  });

  it('refuseService: 429 with Retry-After is a rate-limit error, 503 ExchangeNotAvailable', async () => {
    sim.refuseService(1500, 429);
    const r = await httpJson(`${sim.url}/api/v3/ping`);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('2');
    const e429 = await ex.fetchTicker('BTC/USDT').catch((e: unknown) => e);
    expect(e429).toBeInstanceOf(ccxt.DDoSProtection); // a NetworkError: retriable
    sim.refuseService(1000, 503);
    const e503 = await ex.fetchTicker('BTC/USDT').catch((e: unknown) => e);
    expect(e503).toBeInstanceOf(ccxt.ExchangeNotAvailable);
    expect(e503).toBeInstanceOf(ccxt.NetworkError);
    await sleep(1100);
    await expect(ex.fetchTicker('BTC/USDT')).resolves.toMatchObject({ symbol: 'BTC/USDT' });
  });
});

describe('websocket through ccxt.pro.binance', () => {
  let sim: Sim;
  let pro: Exchange;

  beforeAll(async () => {
    // 30x virtual speed: a 1m candle closes every 2 real seconds.
    sim = buildSim({ seed: 9, tradesPerSecond: 10, historyDays: 1, speed: 30 });
    await sim.start();
    pro = wsClient(sim);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  it('watchTrades receives the emitted trades in order, each once', async () => {
    const got: Trade[] = [];
    while (got.length < 600) got.push(...(await pro.watchTrades('ETH/USDT')));
    const first = Number(got[0]!.id);
    const last = Number(got.at(-1)!.id);
    expect(got.map((t) => Number(t.id))).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    const want = sim.emitted.trades('ETH/USDT', { fromId: first }).filter((t) => t.id <= last);
    expect(got.map(fromCcxt)).toEqual(want.map(strip));
  }, 20_000);

  it('watchOHLCV: closed buckets equal the emitted candles', async () => {
    let closed = 0;
    let rows: number[][] = [];
    const deadline = Date.now() + 15_000;
    while (closed < 2 && Date.now() < deadline) {
      await pro.watchOHLCV('BTC/USDT', '1m');
      rows = (pro.ohlcvs['BTC/USDT']!['1m'] as unknown as number[][]).map((r) => [...r]);
      closed = rows.length - 1; // ccxt drops Binance's `x`: every bucket but the newest is closed
    }
    expect(closed).toBeGreaterThanOrEqual(2);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m').map((c) => [c.timestamp, c]));
    for (const [ts, o, h, l, c, v] of rows.slice(0, -1)) {
      const e = emitted.get(ts!)!;
      expect(e.closed).toBe(true);
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
    }
  }, 20_000);

  it("watchTicker with name 'ticker' has bid/ask and matches an emitted ticker", async () => {
    const t = await pro.watchTicker('BTC/USDT', { name: 'ticker' });
    expect(t.bid).toBeGreaterThan(0);
    expect(t.ask).toBeGreaterThan(t.bid!);
    expect(t.askVolume).toBeGreaterThan(0);
    const e = sim.emitted.tickers('BTC/USDT', 'ws').find((x) => x.timestamp === t.timestamp);
    expect(e).toBeDefined();
    expect({ bid: t.bid, ask: t.ask, last: t.last, open: t.open, high: t.high, low: t.low, baseVolume: t.baseVolume }).toEqual({
      bid: e!.bid,
      ask: e!.ask,
      last: e!.last,
      open: e!.open,
      high: e!.high,
      low: e!.low,
      baseVolume: e!.baseVolume,
    });
  });

  it('watchOrderBook(symbol, limit) syncs snapshot and diffs to the sim book', async () => {
    let matched = false;
    let ob: OrderBook | undefined;
    for (let i = 0; i < 40 && !matched; i++) {
      ob = await pro.watchOrderBook('BTC/USDT', 50);
      const book = sim.orderBook('BTC/USDT', 10);
      if (book.nonce !== ob.nonce) continue;
      expect(ob.bids.slice(0, 10).map(([p, q]) => [p, q])).toEqual(book.bids.map(([p, q]) => [p, q]));
      expect(ob.asks.slice(0, 10).map(([p, q]) => [p, q])).toEqual(book.asks.map(([p, q]) => [p, q]));
      matched = true;
    }
    expect(matched).toBe(true);
    expect(ob!.bids.length).toBeLessThanOrEqual(50);
  }, 20_000);
});

describe('disconnects', () => {
  let sim: Sim;
  let pro: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 5, tradesPerSecond: 50, historyDays: 0, symbols: ['BTC/USDT'] });
    await sim.start();
    pro = wsClient(sim);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  it('dropConnections: the pending watch throws NetworkError, the next call reconnects', async () => {
    await pro.watchTrades('BTC/USDT');
    sim.setTradeRate(0); // nothing in flight: the pending watch can only end by the drop
    await sleep(200);
    const pending = pro.watchTrades('BTC/USDT');
    await sleep(50);
    expect(sim.dropConnections()).toBeGreaterThan(0);
    await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
    sim.setTradeRate(50);
    const again = await pro.watchTrades('BTC/USDT');
    expect(again.length).toBeGreaterThan(0);
    expect(sim.stats().ws.connections).toBe(1);
  }, 15_000);

  it('pauseStream: trades keep being generated, ws refuses them, REST refills the gap exactly', async () => {
    const seen = await pro.watchTrades('BTC/USDT');
    let lastSeen = Number(seen.at(-1)!.id);
    sim.setTradeRate(0);
    await sleep(200);
    for (const t of await Promise.race([pro.watchTrades('BTC/USDT'), sleep(100).then(() => [] as Trade[])])) lastSeen = Number(t.id);
    const pending = pro.watchTrades('BTC/USDT');
    sim.pauseStream('trades', 1500);
    sim.setTradeRate(50);
    await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
    await expect(pro.watchTrades('BTC/USDT')).rejects.toBeInstanceOf(ccxt.NetworkError);
    await sleep(1600);
    const resumed = await pro.watchTrades('BTC/USDT');
    const firstAfter = Number(resumed[0]!.id);
    expect(firstAfter).toBeGreaterThan(lastSeen + 20); // ~75 trades happened during the pause

    const rest = restClient(sim);
    const refill = await rest.fetchTrades('BTC/USDT', undefined, 1000, { fromId: lastSeen + 1 });
    const gap = refill.filter((t) => Number(t.id) < firstAfter);
    expect(gap.map((t) => Number(t.id))).toEqual(Array.from({ length: firstAfter - lastSeen - 1 }, (_, i) => lastSeen + 1 + i));
    expect(gap.map(fromCcxt)).toEqual(sim.emitted.trades('BTC/USDT', { fromId: lastSeen + 1 }).filter((t) => t.id < firstAfter).map(strip));
  }, 20_000);
});

describe('raw websocket protocol', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 11, tradesPerSecond: 20, historyDays: 0, speed: 60, symbols: ['BTC/USDT'] });
    await sim.start();
  });
  afterAll(async () => {
    await sim.close();
  });

  async function collect(url: string, ms: number, send?: unknown): Promise<unknown[]> {
    const ws = new WebSocket(url);
    const msgs: unknown[] = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    if (send) ws.send(JSON.stringify(send));
    await sleep(ms);
    ws.close();
    return msgs;
  }

  it('acks SUBSCRIBE, sends klines with x=true once per closed bucket', async () => {
    const msgs = await collect(`${sim.wsUrl}/stream/ws/0`, 2500, { method: 'SUBSCRIBE', params: ['btcusdt@kline_1m'], id: 7 });
    expect(msgs[0]).toEqual({ result: null, id: 7 });
    const klines = msgs.slice(1) as { e: string; k: { t: number; x: boolean; o: string; c: string; v: string } }[];
    expect(klines.every((m) => m.e === 'kline')).toBe(true);
    const finals = klines.filter((m) => m.k.x);
    expect(finals.length).toBeGreaterThanOrEqual(1);
    expect(new Set(finals.map((m) => m.k.t)).size).toBe(finals.length);
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m').map((c) => [c.timestamp, c]));
    for (const f of finals) {
      const e = emitted.get(f.k.t)!;
      expect(e.closed).toBe(true);
      expect([Number(f.k.o), Number(f.k.c), Number(f.k.v)]).toEqual([e.open, e.close, e.volume]);
    }
  });

  it('combined streams wrap events as {stream, data}', async () => {
    const msgs = (await collect(`${sim.wsUrl}/stream?streams=btcusdt@trade/btcusdt@miniTicker`, 1200)) as { stream: string; data: { e: string } }[];
    expect(msgs.some((m) => m.stream === 'btcusdt@trade' && m.data.e === 'trade')).toBe(true);
    expect(msgs.some((m) => m.stream === 'btcusdt@miniTicker' && m.data.e === '24hrMiniTicker')).toBe(true);
  });

  it('pauseStream("all") refuses new connections', async () => {
    sim.pauseStream('all', 500);
    await expect(collect(`${sim.wsUrl}/ws/x`, 10)).rejects.toThrow(/503/);
    await sleep(600);
    await expect(collect(`${sim.wsUrl}/ws/x`, 10)).resolves.toEqual([]);
  });
});

describe('continuing from a saved state (restarts)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-sim-state-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const SYMBOL = 'BTC/USDT';
  const base = { seed: 9, symbols: [SYMBOL], tradesPerSecond: 20, historyDays: 1, speed: 60 } as const;

  async function runFor(sim: Sim, virtualMs: number): Promise<void> {
    await sim.start();
    const until = sim.now() + virtualMs;
    while (sim.now() < until) await sleep(20);
  }

  it('a restart with the state file goes on: ids increase, the price and the virtual clock carry on, the candles served stay the same', async () => {
    const file = path.join(dir, 'restart.json');
    const one = buildSim({ ...base, stateFile: file });
    await runFor(one, 5 * 60_000);
    await one.close();
    const served = one.emitted.trades(SYMBOL);
    const last = served.at(-1)!;
    const candles1 = one.emitted.candles(SYMBOL, '1m', { includeHistory: true });
    expect(served.length).toBeGreaterThan(1000);
    expect(existsSync(file)).toBe(true);

    const two = buildSim({ ...base, stateFile: file });
    expect(two.resumed).toBe(true);
    await runFor(two, 60_000);
    await two.close();
    const next = two.emitted.trades(SYMBOL);
    expect(next.length).toBeGreaterThan(100);
    // Ids go on from the last one, none repeats.
    expect(next[0]!.id).toBe(last.id + 1);
    // The price path is continuous: the first trade of run 2 is where run 1 stopped.
    expect(Math.abs(next[0]!.price / last.price - 1)).toBeLessThan(0.001);
    // The virtual clock (ahead of the wall clock at speed 60) does not jump back.
    expect(next[0]!.timestamp).toBeGreaterThanOrEqual(last.timestamp);
    // What run 1 served (history and live minutes) is served again unchanged, over run 2's window.
    const list2 = two.emitted.candles(SYMBOL, '1m', { includeHistory: true });
    const candles2 = new Map(list2.map((c) => [c.timestamp, c]));
    const closed1 = candles1.filter((c) => c.closed && c.timestamp >= list2[0]!.timestamp);
    expect(closed1.length).toBeGreaterThan(1400);
    for (const c of closed1) expect(candles2.get(c.timestamp)).toEqual(c);

    // And a third run from the file run 2 left.
    const three = buildSim({ ...base, stateFile: file });
    await runFor(three, 10_000);
    await three.close();
    expect(three.emitted.trades(SYMBOL)[0]!.id).toBe(next.at(-1)!.id + 1);
  }, 60_000);

  it('the minutes it was down are traded on from the last price, ids contiguous, into the new start', async () => {
    const t0 = Date.UTC(2026, 0, 5, 10, 0, 0);
    const one = buildSim({ ...base, startTime: t0 });
    await runFor(one, 3 * 60_000);
    await one.close();
    const last = one.emitted.trades(SYMBOL).at(-1)!;
    const st = one.state();
    const two = buildSim({ ...base, startTime: t0 + 2 * 3_600_000, resume: st });
    await runFor(two, 60_000);
    await two.close();
    const minutes = two.emitted.candles(SYMBOL, '1m', { includeHistory: true }).filter((c) => c.timestamp >= t0 && c.timestamp < t0 + 2 * 3_600_000);
    expect(minutes.length).toBe(120);
    // Every minute of the downtime (after the one run 1 stopped in) has trades, and the first
    // one opens at run 1's last price.
    const down = minutes.filter((c) => c.timestamp > st.symbols[SYMBOL]!.generatedUntil);
    expect(down.length).toBeGreaterThan(110);
    expect(down.every((c) => c.trades > 0)).toBe(true);
    expect(Math.abs(down[0]!.open / last.price - 1)).toBeLessThan(0.002);
    // Trade ids: the downtime's minutes follow run 1's last id, run 2's trades follow them.
    const k = (open: number) => two.emitted.candles(SYMBOL, '1m', { includeHistory: true }).find((c) => c.timestamp === open)!;
    expect(ids(two, down[0]!.timestamp).firstId).toBe(last.id + 1);
    for (let i = 1; i < down.length; i++) expect(ids(two, down[i]!.timestamp).firstId).toBe(ids(two, down[i - 1]!.timestamp).lastId + 1);
    const live = two.emitted.trades(SYMBOL);
    expect(live[0]!.id).toBe(ids(two, down.at(-1)!.timestamp).lastId + 1);
    expect(Math.abs(live[0]!.price / down.at(-1)!.close - 1)).toBeLessThan(0.002);
    expect(k(t0 + 2 * 3_600_000).trades).toBeGreaterThan(0);
  }, 60_000);

  it('a state taken while running (as after a crash) leases ids ahead: none repeats', async () => {
    const one = buildSim({ ...base, tradesPerSecond: 200 });
    await runFor(one, 30_000);
    const st = one.state();
    expect(st.final).toBe(false);
    const more = one.emitted.trades(SYMBOL).length;
    await sleep(300); // it trades on after the state was taken, then "crashes"
    await one.close();
    const lastId = one.emitted.trades(SYMBOL).at(-1)!.id;
    expect(one.emitted.trades(SYMBOL).length).toBeGreaterThan(more);
    const two = buildSim({ ...base, tradesPerSecond: 200, resume: st });
    await runFor(two, 5_000);
    await two.close();
    expect(two.emitted.trades(SYMBOL)[0]!.id).toBeGreaterThan(lastId);
  }, 60_000);

  it('an unreadable state file is logged and ignored: the sim starts afresh', async () => {
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{"format":"tickflow-sim-state/1","symbols":');
    const t0 = Date.UTC(2026, 0, 5, 10, 0, 0);
    const sim = buildSim({ ...base, startTime: t0, stateFile: file });
    expect(sim.resumed).toBe(false);
    await runFor(sim, 5_000);
    await sim.close();
    const fresh = buildSim({ ...base, startTime: t0 });
    await runFor(fresh, 5_000);
    await fresh.close();
    expect(sim.emitted.trades(SYMBOL)[0]).toEqual(fresh.emitted.trades(SYMBOL)[0]);
    // The file holds a usable state again.
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ format: 'tickflow-sim-state/1', final: true });
  }, 30_000);
});

/** First and last trade id of the 1m kline opening at `open`, through REST (Binance's klines carry no ids; aggTrades do). */
function ids(sim: Sim, open: number): { firstId: number; lastId: number } {
  const st = sim.state().symbols[SIM_DEFAULTS.symbols[0]!]!;
  const i = Math.round((open - st.minutes.baseOpen) / 60_000);
  const col = (k: 'f' | 'L') => new Float64Array(new Uint8Array(Buffer.from(st.minutes.columns[k], 'base64')).buffer)[i]!;
  return { firstId: col('f'), lastId: col('L') };
}

describe('parseSimArgs', () => {
  it('parses the CLI', () => {
    expect(parseSimArgs(['--port', '9000', '--seed=3', '--rate', '20000', '--symbols', 'btc/usdt, ETH/USDT'])).toEqual({
      port: 9000,
      seed: 3,
      tradesPerSecond: 20000,
      symbols: ['BTC/USDT', 'ETH/USDT'],
    });
    expect(() => parseSimArgs(['--rate', 'fast'])).toThrow(/--rate expects a number/);
    expect(() => parseSimArgs(['--nope'])).toThrow(/--nope is not an option/);
    expect(parseSimArgs(['--start-time', '2024-01-01T00:00:00Z']).startTime).toBe(Date.UTC(2024, 0, 1));
  });

  it('rejects bad options by name', () => {
    expect(() => buildSim({ symbols: ['BTCUSDT'] })).toThrow(/BTCUSDT/);
    expect(() => buildSim({ tradesPerSecond: -1 })).toThrow(/tradesPerSecond/);
    expect(SIM_DEFAULTS.symbols).toEqual(['BTC/USDT', 'ETH/USDT']);
  });
});
