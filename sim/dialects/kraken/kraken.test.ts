/**
 * The Kraken dialect against the real ccxt 4.5.84: `ccxt.kraken` (REST `/0/public/*`) and
 * `ccxt.pro.kraken` (websocket v2) run unchanged through `sim.ccxtOptions('kraken')`, and what
 * they parse must be exactly what the sim says it emitted; refusals and the rate limit become
 * the ccxt errors Kraken's answers give; the raw protocol (status, acks, heartbeat, pong, book
 * checksum) is Kraken's.
 */
import http from 'node:http';
import ccxt, { type Exchange, type Trade } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildSim, type Sim, type SimTrade } from '../../index.ts';
import { crc32 } from './wire.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SYMBOLS = ['BTC/USDT', 'ETH/USD'];

function client(sim: Sim): Exchange {
  const o = sim.ccxtOptions('kraken');
  return new ccxt.pro.kraken({ ...o, httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false, options: { tradesLimit: 10_000, ws: { backoff: { base: 100 } } } });
}

const fromCcxt = (t: Trade) => ({ id: Number(t.id), timestamp: t.timestamp!, price: t.price!, amount: t.amount!, side: t.side });
const strip = (t: SimTrade) => ({ id: t.id, timestamp: t.timestamp, price: t.price, amount: t.amount, side: t.side });

async function kget(sim: Sim, path: string): Promise<{ status: number; body: { error: string[]; result: Record<string, unknown> } }> {
  const res = await fetch(`${sim.url}/kraken/0/public/${path}`);
  return { status: res.status, body: (await res.json()) as { error: string[]; result: Record<string, unknown> } };
}

describe('Kraken REST through ccxt.kraken', () => {
  let sim: Sim;
  let ex: Exchange;

  beforeAll(async () => {
    sim = buildSim({ seed: 11, symbols: SYMBOLS, tradesPerSecond: 40, historyDays: 2, dialects: ['kraken'] });
    await sim.start();
    ex = client(sim);
    await sleep(2500);
  });
  afterAll(async () => {
    await ex.close();
    await sim.close();
  });

  it('loadMarkets (AssetPairs + Assets): Kraken ids, altnames and wsnames, unified symbols, tick and step sizes', async () => {
    const markets = await ex.loadMarkets();
    expect(Object.keys(markets).sort()).toEqual(['BTC/USDT', 'ETH/USD']);
    expect(markets['BTC/USDT']).toMatchObject({ id: 'XBTUSDT', altname: 'XBTUSDT', wsId: 'XBT/USDT', base: 'BTC', quote: 'USDT', baseId: 'BTC', type: 'spot', active: true });
    expect(markets['BTC/USDT']!.info).toMatchObject({ base: 'XXBT', quote: 'USDT', pair_decimals: 2, lot_decimals: 5 });
    expect(markets['BTC/USDT']!.precision).toEqual({ price: 0.01, amount: 0.00001 });
    expect(markets['ETH/USD']).toMatchObject({ id: 'XETHZUSD', altname: 'ETHUSD', wsId: 'ETH/USD', base: 'ETH', quote: 'USD' });
    expect(ex.currencies['BTC']).toMatchObject({ id: 'XXBT', code: 'BTC' });
  });

  it('fetchTrades(since): the emitted trades from that second, ids = trade_id; the `last` cursor pages on exactly', async () => {
    const since = sim.now() - 1500;
    const got = await ex.fetchTrades('BTC/USDT', since);
    // ccxt sends `since` in whole seconds and drops what is older than `since` from the answer.
    const want = sim.emitted.trades('BTC/USDT', { since: Math.floor(since / 1000) * 1000 });
    expect(got.length).toBeGreaterThan(30);
    const wantFromSince = want.filter((t) => t.timestamp >= since);
    expect(got.map(fromCcxt)).toEqual(wantFromSince.slice(0, got.length).map(strip));
    // Raw: count + the `last` cursor give the next page, neither repeating nor skipping a trade.
    const p1 = await kget(sim, `Trades?pair=XBTUSDT&since=${Math.floor(since / 1000)}&count=7`);
    const rows1 = p1.body.result.XBTUSDT as unknown[][];
    expect(rows1).toHaveLength(7);
    expect(rows1[0]).toHaveLength(7); // [price, volume, time, side, ordertype, misc, trade_id]
    const p2 = await kget(sim, `Trades?pair=XBTUSDT&since=${p1.body.result.last as string}&count=7`);
    const ids = [...rows1, ...(p2.body.result.XBTUSDT as unknown[][])].map((r) => r[6]);
    expect(ids).toEqual(want.slice(0, 14).map((t) => t.id));
  });

  it('fetchOHLCV(since): closed candles equal the emitted ones; `since` is exclusive as on Kraken', async () => {
    const emitted = sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).filter((c) => c.closed);
    const since = emitted.at(-30)!.timestamp;
    const got = await ex.fetchOHLCV('BTC/USDT', '1m', since);
    expect(got[0]![0]).toBe(since);
    const byTs = new Map(emitted.map((c) => [c.timestamp, c]));
    let compared = 0;
    for (const [ts, o, h, l, c, v] of got) {
      const e = byTs.get(ts!);
      if (!e) continue; // the forming one
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
      compared++;
    }
    expect(compared).toBe(30);
    const raw = await kget(sim, 'OHLC?pair=XBTUSDT&interval=1');
    expect((raw.body.result.XBTUSDT as unknown[]).length).toBe(720); // Kraken's cap
    expect(typeof raw.body.result.last).toBe('number');
  });

  it('fetchTicker has no exchange timestamp (as Kraken) and equals the ticker the sim recorded', async () => {
    const t = await ex.fetchTicker('ETH/USD');
    expect(t.timestamp).toBeUndefined();
    const e = sim.emitted.tickers('ETH/USD', 'rest').at(-1)!;
    expect({ bid: t.bid, bidVolume: t.bidVolume, ask: t.ask, askVolume: t.askVolume, last: t.last, open: t.open, high: t.high, low: t.low, baseVolume: t.baseVolume }).toEqual({
      bid: e.bid,
      bidVolume: e.bidVolume,
      ask: e.ask,
      askVolume: e.askVolume,
      last: e.last,
      open: e.open,
      high: e.high,
      low: e.low,
      baseVolume: e.baseVolume,
    });
    expect(t.change).toBeCloseTo(e.change, 6);
  });

  it('fetchOrderBook equals the sim book', async () => {
    sim.setTradeRate(0);
    await sleep(150);
    const ob = await ex.fetchOrderBook('BTC/USDT', 10);
    const want = sim.orderBook('BTC/USDT', 10);
    sim.setTradeRate(40);
    expect(ob.bids.map(([p, q]) => [p, q])).toEqual(want.bids.map(([p, q]) => [p, q]));
    expect(ob.asks.map(([p, q]) => [p, q])).toEqual(want.asks.map(([p, q]) => [p, q]));
  });

  it("answers in Kraken's error format: unknown pair, bad arguments", async () => {
    expect((await kget(sim, 'Ticker?pair=FOOBAR')).body).toEqual({ error: ['EQuery:Unknown asset pair'], result: {} });
    expect((await kget(sim, 'Trades?pair=XBTUSDT&since=abc')).body.error).toEqual(['EGeneral:Invalid arguments']);
    await expect(ex.fetchTrades('BTC/USDT', undefined, undefined, { since: 'x' })).rejects.toBeInstanceOf(ccxt.BadRequest);
  });

  it('rate limit: HTTP 200 with EAPI:Rate limit exceeded → DDoSProtection; refusal 503 → ExchangeNotAvailable', async () => {
    sim.rateLimit(1, 1500);
    await kget(sim, 'Time');
    const raw = await kget(sim, 'Time');
    expect(raw).toEqual({ status: 200, body: { error: ['EAPI:Rate limit exceeded'], result: {} } });
    const limited = await ex.fetchTicker('BTC/USDT').catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(ccxt.DDoSProtection);
    sim.clearFaults();
    sim.refuseService(1000, 503);
    const down = await ex.fetchTicker('BTC/USDT').catch((e: unknown) => e);
    expect(down).toBeInstanceOf(ccxt.ExchangeNotAvailable);
    expect(down).toBeInstanceOf(ccxt.NetworkError);
    sim.clearFaults();
    await expect(ex.fetchTicker('BTC/USDT')).resolves.toMatchObject({ symbol: 'BTC/USDT' });
  });
});

describe('Kraken websocket v2 through ccxt.pro.kraken', () => {
  let sim: Sim;
  let pro: Exchange;

  beforeAll(async () => {
    // 30x virtual speed: a 1m candle closes every 2 real seconds.
    sim = buildSim({ seed: 12, symbols: SYMBOLS, tradesPerSecond: 10, historyDays: 1, speed: 30, dialects: ['kraken'] });
    await sim.start();
    pro = client(sim);
    await pro.loadMarkets();
  });
  afterAll(async () => {
    await pro.close();
    await sim.close();
  });

  it('watchTrades: the snapshot then every emitted trade in order, each once', async () => {
    const got: Trade[] = [];
    while (got.length < 600) got.push(...(await pro.watchTrades('ETH/USD')));
    const first = Number(got[0]!.id);
    const last = Number(got.at(-1)!.id);
    expect(got.map((t) => Number(t.id))).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    const want = sim.emitted.trades('ETH/USD', { fromId: first }).filter((t) => t.id <= last);
    expect(got.map(fromCcxt)).toEqual(want.map(strip));
  }, 20_000);

  it('watchOHLCV: closed buckets equal the emitted candles', async () => {
    let rows: number[][] = [];
    const deadline = Date.now() + 15_000;
    const start = sim.now();
    while (Date.now() < deadline) {
      await pro.watchOHLCV('BTC/USDT', '1m');
      rows = (pro.ohlcvs['BTC/USDT']!['1m'] as unknown as number[][]).map((r) => [...r]);
      if (rows.filter((r) => r[0]! > start).length >= 3) break;
    }
    const emitted = new Map(sim.emitted.candles('BTC/USDT', '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
    const closed = rows.slice(0, -1);
    expect(closed.filter((r) => r[0]! > start).length).toBeGreaterThanOrEqual(2);
    for (const [ts, o, h, l, c, v] of closed) {
      const e = emitted.get(ts!)!;
      expect(e.closed).toBe(true);
      expect([o, h, l, c, v]).toEqual([e.open, e.high, e.low, e.close, e.volume]);
    }
  }, 20_000);

  it('watchTicker: no exchange timestamp; the numbers of an emitted ticker', async () => {
    await pro.watchTicker('BTC/USDT'); // the snapshot
    const t = await pro.watchTicker('BTC/USDT'); // an update, pushed on the engine's cadence
    expect(t.timestamp).toBeUndefined();
    const hit = sim.emitted.tickers('BTC/USDT', 'ws').find((e) => e.last === t.last && e.baseVolume === t.baseVolume && e.bid === t.bid && e.ask === t.ask);
    expect(hit).toBeDefined();
    expect({ bidVolume: t.bidVolume, askVolume: t.askVolume, high: t.high, low: t.low, vwap: t.vwap }).toEqual({
      bidVolume: hit!.bidVolume,
      askVolume: hit!.askVolume,
      high: hit!.high,
      low: hit!.low,
      vwap: Number(hit!.vwap.toFixed(2)),
    });
    expect(t.change).toBeCloseTo(hit!.change, 6);
  }, 10_000);

  it('watchOrderBook: snapshot and updates keep the top 10 equal to the sim book', async () => {
    await pro.watchOrderBook('ETH/USD');
    for (let i = 0; i < 10; i++) await pro.watchOrderBook('ETH/USD');
    sim.setTradeRate(0);
    await sleep(300);
    const ob = await Promise.race([pro.watchOrderBook('ETH/USD'), sleep(300).then(() => pro.orderbooks['ETH/USD']!)]);
    const want = sim.orderBook('ETH/USD', 10);
    sim.setTradeRate(10);
    expect(ob.bids.slice(0, 10).map(([p, q]) => [p, q])).toEqual(want.bids.map(([p, q]) => [p, q]));
    expect(ob.asks.slice(0, 10).map(([p, q]) => [p, q])).toEqual(want.asks.map(([p, q]) => [p, q]));
  }, 15_000);

  it('dropConnections: the pending watch throws NetworkError, the next call reconnects', async () => {
    await pro.watchTrades('BTC/USDT');
    sim.setTradeRate(0); // nothing in flight: the pending watch can only end by the drop
    await sleep(200);
    const pending = pro.watchTrades('BTC/USDT');
    await sleep(50);
    expect(sim.dropConnections()).toBeGreaterThan(0);
    await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
    sim.setTradeRate(10);
    const again = await pro.watchTrades('BTC/USDT');
    expect(again.length).toBeGreaterThan(0);
  }, 15_000);

  it('refuseWebsocket: the upgrade is answered 403 and ccxt throws', async () => {
    sim.refuseWebsocket(2000, 403);
    sim.dropConnections();
    const err = await pro.watchTrades('ETH/USD').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ccxt.BaseError);
    sim.clearFaults();
  }, 15_000);
});

describe('Kraken websocket v2 protocol (raw)', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 13, symbols: ['BTC/USDT'], tradesPerSecond: 20, historyDays: 0, dialects: ['kraken'] });
    await sim.start();
  });
  afterAll(async () => {
    await sim.close();
  });

  it('status on connect, per-symbol acks, pong, heartbeat, errors; book updates carry a valid CRC32 checksum', async () => {
    const ws = new WebSocket(`${sim.wsUrl}/kraken/v2`);
    const msgs: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString()) as Record<string, unknown>));
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ method: 'subscribe', params: { channel: 'book', symbol: ['BTC/USDT'] }, req_id: 7 }));
    ws.send(JSON.stringify({ method: 'subscribe', params: { channel: 'trade', symbol: ['FOO/BAR'] }, req_id: 8 }));
    ws.send(JSON.stringify({ method: 'ping', req_id: 9 }));
    await sleep(2500);
    ws.close();
    expect(msgs[0]).toMatchObject({ channel: 'status', type: 'update', data: [{ api_version: 'v2', system: 'online' }] });
    expect(msgs.find((m) => m.method === 'subscribe' && m.req_id === 7)).toMatchObject({ success: true, result: { channel: 'book', depth: 10, snapshot: true, symbol: 'BTC/USDT' } });
    expect(msgs.find((m) => m.req_id === 8)).toMatchObject({ success: false, error: 'Currency pair not supported FOO/BAR', symbol: 'FOO/BAR' });
    expect(msgs.find((m) => m.method === 'pong')).toMatchObject({ req_id: 9 });
    expect(msgs.some((m) => m.channel === 'heartbeat')).toBe(true);
    // Rebuild the book from the messages, checking each checksum the way Kraken documents it:
    // top 10 asks then top 10 bids, price and qty at the pair's decimals, '.' and leading zeros removed.
    const book = msgs.filter((m) => m.channel === 'book');
    expect(book[0]!.type).toBe('snapshot');
    expect(book.length).toBeGreaterThan(5);
    const bids = new Map<number, number>();
    const asks = new Map<number, number>();
    const fmt = (x: number, d: number) => x.toFixed(d).replace('.', '').replace(/^0+/, '');
    for (const m of book) {
      const d = (m.data as Array<{ bids: Array<{ price: number; qty: number }>; asks: Array<{ price: number; qty: number }>; checksum: number }>)[0]!;
      for (const [side, levels] of [[bids, d.bids], [asks, d.asks]] as const) {
        for (const l of levels) {
          if (l.qty === 0) side.delete(l.price);
          else side.set(l.price, l.qty);
        }
      }
      const a = [...asks].sort((x, y) => x[0] - y[0]).slice(0, 10);
      const b = [...bids].sort((x, y) => y[0] - x[0]).slice(0, 10);
      const payload = [...a, ...b].map(([p, q]) => fmt(p, 2) + fmt(q, 5)).join('');
      expect(crc32(payload)).toBe(d.checksum);
      expect(bids.size).toBe(10);
    }
  });
});
