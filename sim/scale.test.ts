/**
 * The sim at scale, against the real ccxt 4.5.84: a thousand instruments at Zipf-skewed rates,
 * markets listed and delisted at runtime through the control endpoint (the dialects' markets
 * endpoints follow, a delisted market goes quiet), multi-stream subscriptions, and the venues'
 * per-connection rules (Binance: 1,024 streams, 5 messages a second) that refuse an overloaded
 * connection like the real venue.
 */
import http from 'node:http';
import ccxt, { type Exchange } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connectSim, type SimControl } from './control.ts';
import { buildSim, type Sim } from './index.ts';
import { parseSimArgs } from './main.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function binance(sim: Sim, pro = false): Exchange {
  const o = sim.ccxtOptions();
  const cls = pro ? ccxt.pro.binance : ccxt.binance;
  return new cls({ ...o, httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false, options: { ...o.options, tradesLimit: 10_000 } });
}

function okx(sim: Sim): Exchange {
  const o = sim.ccxtOptions('okx') as { options: Record<string, unknown> };
  return new ccxt.okx({ ...o, httpAgent: new http.Agent({ keepAlive: true }), enableRateLimit: false });
}

/** A raw websocket with every message it got, parsed, and its close code. */
async function openWs(url: string): Promise<{ ws: WebSocket; msgs: unknown[]; closed: Promise<number> }> {
  const ws = new WebSocket(url);
  const msgs: unknown[] = [];
  ws.on('message', (d) => {
    const t = d.toString();
    msgs.push(t === 'pong' ? t : JSON.parse(t));
  });
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, msgs, closed };
}

async function until<T>(f: () => T | undefined, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

describe('a thousand instruments at skewed rates', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 3, instruments: 1000, rateSkew: 1, totalTradesPerSecond: 2_000, historyDays: 0, dialects: ['binance', 'okx'] });
    await sim.start();
  });
  afterAll(() => sim.close());

  it('lists the given symbols first, then generated ones, in ccxt markets of every dialect', async () => {
    expect(sim.symbols).toHaveLength(1000);
    expect(sim.symbols.slice(0, 2)).toEqual(['BTC/USDT', 'ETH/USDT']);
    expect(new Set(sim.symbols).size).toBe(1000);
    const b = binance(sim);
    const o = okx(sim);
    const [bm, om] = await Promise.all([b.loadMarkets(), o.loadMarkets()]);
    expect(Object.keys(bm).sort()).toEqual([...sim.symbols].sort());
    expect(Object.keys(om).sort()).toEqual([...sim.symbols].sort());
  });

  it('trades at the total rate, a few hot symbols and a long tail (Zipf by rank)', async () => {
    const c0 = sim.emitted.counts();
    await sleep(3_000);
    const c1 = sim.emitted.counts();
    const printed = (s: string) => c1[s]!.nextId - c0[s]!.nextId;
    const total = sim.symbols.reduce((n, s) => n + printed(s), 0);
    const seconds = (c1['BTC/USDT']!.until - c0['BTC/USDT']!.until) / 1000; // the sim's clock: a loaded machine sleeps longer
    expect(total / seconds).toBeGreaterThan(2_000 * 0.8);
    expect(total / seconds).toBeLessThan(2_000 * 1.2);
    // Rank 1 trades at 1000× rank 1000's rate (s = 1): ~267/s against ~0.27/s.
    expect(c1['BTC/USDT']!.tradesPerSecond / c1[sim.symbols[999]!]!.tradesPerSecond).toBeCloseTo(1000, 0);
    expect(printed('BTC/USDT')).toBeGreaterThan(total * 0.08);
    const tail = sim.symbols.slice(500).reduce((n, s) => n + printed(s), 0);
    expect(tail).toBeLessThan(total * 0.15);
    // Every symbol's ticker is taken once per second, spread over the ticks.
    const tickers = sim.symbols.map((s) => c1[s]!.tickers - c0[s]!.tickers);
    expect(Math.min(...tickers)).toBeGreaterThanOrEqual(Math.floor(seconds) - 1);
    expect(Math.max(...tickers)).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  });

  it('one ccxt connection carries many symbols (watchTradesForSymbols), and what it gets is what the sim printed', async () => {
    const ex = binance(sim, true);
    const symbols = sim.symbols.slice(0, 40);
    try {
      const deadline = Date.now() + 2_500;
      while (Date.now() < deadline) await ex.watchTradesForSymbols(symbols);
      // Each call returns one symbol's news; the cache per symbol holds everything received.
      const got = new Map<string, number[]>();
      for (const s of symbols) {
        const cached = (ex.trades as Record<string, { id?: string }[] | undefined>)[s];
        if (cached?.length) got.set(s, cached.map((t) => Number(t.id)));
      }
      const stats = sim.stats().dialects.binance!;
      expect(stats.connections).toHaveLength(1);
      expect(stats.connections[0]!.streams).toBe(40);
      // Each symbol seen: every trade from its first one received up to the last one is there.
      expect(got.size).toBeGreaterThan(10);
      for (const [symbol, ids] of got) {
        const want = sim.emitted.trades(symbol, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!).map((t) => t.id);
        expect(ids).toEqual(want);
      }
    } finally {
      await ex.close();
    }
  });

  it('stats and emitted counts stay small and quick with a thousand symbols', async () => {
    const c = connectSim(sim.url);
    const t0 = performance.now();
    const [stats, counts] = await Promise.all([c.stats(), c.emitted.counts()]);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(stats.markets).toBe(1000);
    expect(Object.keys(counts)).toHaveLength(1000);
    expect(JSON.stringify(counts).length).toBeLessThan(300_000);
  });
});

describe('markets listed and delisted at runtime through the control endpoint', () => {
  let sim: Sim;
  let control: SimControl;
  beforeAll(async () => {
    sim = buildSim({ seed: 4, symbols: ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'], tradesPerSecond: 40, historyDays: 0, dialects: ['binance', 'okx', 'bybit', 'kraken', 'coinbaseexchange'] });
    await sim.start();
    control = connectSim(sim.url);
  });
  afterAll(() => sim.close());

  it('a delisted market leaves every markets endpoint and stops emitting; a new one trades and streams; relisting continues its ids', async () => {
    const sub = await openWs(`${sim.wsUrl}/stream?streams=ethusdt@aggTrade/ethusdt@kline_1m/newusdt@aggTrade`);
    await until(() => (sub.msgs.some((m) => (m as { stream?: string }).stream === 'ethusdt@aggTrade') ? true : undefined));

    const r = await control.markets({ add: [{ symbol: 'NEW/USDT', startPrice: 2.5, tradesPerSecond: 50 }], remove: ['ETH/USDT'] });
    expect(r).toEqual({ added: ['NEW/USDT'], removed: ['ETH/USDT'], markets: 3 });
    expect(await control.symbols()).toEqual(['BTC/USDT', 'SOL/USDT', 'NEW/USDT']);
    const ethAt = sub.msgs.length;
    const ethNext = sim.emitted.counts()['ETH/USDT']!.nextId;

    // Every dialect's markets endpoint, through ccxt.
    const want = ['BTC/USDT', 'NEW/USDT', 'SOL/USDT'];
    const b = await binance(sim).loadMarkets();
    expect(Object.keys(b).sort()).toEqual(want);
    expect(Object.keys(await okx(sim).loadMarkets()).sort()).toEqual(want);
    const k = await new ccxt.kraken({ ...sim.ccxtOptions('kraken'), httpAgent: new http.Agent(), enableRateLimit: false }).loadMarkets();
    expect(Object.keys(k).sort()).toEqual(want);
    const cb = await new ccxt.coinbaseexchange({ ...sim.ccxtOptions('coinbaseexchange'), httpAgent: new http.Agent(), enableRateLimit: false }).loadMarkets();
    expect(Object.keys(cb).sort()).toEqual(want);
    const by = await new ccxt.bybit({ ...sim.ccxtOptions('bybit'), httpAgent: new http.Agent(), enableRateLimit: false }).loadMarkets();
    expect(Object.keys(by).filter((s) => !s.includes(':')).sort()).toEqual(want);

    // The new one streams on the subscription made before it was listed.
    await until(() => (sub.msgs.some((m) => (m as { stream?: string }).stream === 'newusdt@aggTrade') ? true : undefined));
    await sleep(1_200);
    const eth = sub.msgs.slice(ethAt).filter((m) => (m as { stream: string }).stream.startsWith('ethusdt@'));
    expect(eth).toEqual([]);
    const counts = sim.emitted.counts();
    expect(counts['ETH/USDT']).toMatchObject({ listed: false, nextId: ethNext });
    expect(counts['NEW/USDT']!.listed).toBe(true);
    expect(counts['NEW/USDT']!.nextId).toBeGreaterThan(counts['NEW/USDT']!.firstLiveId);
    // What the delisted market printed stays the truth.
    expect(sim.emitted.trades('ETH/USDT').at(-1)!.id).toBe(ethNext - 1);

    // A new subscription to the delisted instrument is refused like an unknown one (OKX 60018).
    const o = await openWs(`${sim.wsUrl}/okx/ws/v5/public`);
    o.ws.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'trades', instId: 'ETH-USDT' }] }));
    const err = await until(() => o.msgs.find((m) => (m as { event?: string }).event === 'error'));
    expect(err).toMatchObject({ code: '60018' });
    o.ws.close();

    // Relisted: it trades again with ids after its last one.
    await control.markets({ add: ['ETH/USDT'] });
    await until(() => (sub.msgs.slice(ethAt).some((m) => (m as { stream: string }).stream === 'ethusdt@aggTrade') ? true : undefined));
    const relisted = sub.msgs.slice(ethAt).filter((m) => (m as { stream: string }).stream === 'ethusdt@aggTrade') as { data: { a: number } }[];
    expect(relisted[0]!.data.a).toBeGreaterThanOrEqual(ethNext);
    sub.ws.close();
  });

  it('a bad change names the symbol and changes nothing', async () => {
    const before = await control.symbols();
    await expect(control.markets({ add: ['BTC/USDT'] })).rejects.toThrow(/400.*BTC\/USDT is already listed/);
    await expect(control.markets({ add: ['X1/USDT'], remove: ['NOPE/USDT'] })).rejects.toThrow(/400.*NOPE\/USDT/);
    await expect(control.markets({ add: ['not a symbol'] })).rejects.toThrow(/400.*not a symbol/);
    const res = await fetch(`${sim.url}/__sim/markets`, { method: 'POST', body: '{"add":"BTC/USDT"}' });
    expect(res.status).toBe(400);
    expect(await control.symbols()).toEqual(before);
  });
});

describe("the venues' per-connection rules", () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = buildSim({ seed: 5, instruments: 300, tradesPerSecond: 1, historyDays: 0, dialects: ['binance'], venueMessageRate: true });
    await sim.start();
  });
  afterAll(() => sim.close());
  const streams = () => sim.symbols.flatMap((s) => ['trade', 'aggTrade', 'ticker', 'kline_1m'].map((k) => `${s.replace('/', '').toLowerCase()}@${k}`));

  it('Binance: a SUBSCRIBE taking a connection past 1,024 streams is refused; up to 1,024 are served', async () => {
    const all = streams();
    const c = await openWs(`${sim.wsUrl}/stream/ws/0`);
    c.ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: all.slice(0, 1024), id: 1 }));
    await until(() => c.msgs.find((m) => (m as { id?: number }).id === 1));
    c.ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: all.slice(1024, 1025), id: 2 }));
    const refused = await until(() => c.msgs.find((m) => (m as { id?: number }).id === 2));
    expect(refused).toMatchObject({ error: { code: 3 } });
    c.ws.send(JSON.stringify({ method: 'LIST_SUBSCRIPTIONS', id: 3 }));
    const list = (await until(() => c.msgs.find((m) => (m as { id?: number }).id === 3))) as { result: string[] };
    expect(list.result).toHaveLength(1024);
    const conn = sim.stats().dialects.binance!.connections.find((x) => x.streams === 1024);
    expect(conn).toBeDefined();
    expect(sim.stats().dialects.binance!.ws.refusedConnections).toBeGreaterThanOrEqual(1);
    c.ws.close();
  });

  it('Binance: a combined-stream URL naming more than 1,024 streams is closed with 1008', async () => {
    const url = `${sim.wsUrl}/stream?streams=${streams().slice(0, 1025).join('/')}`;
    const c = await openWs(url);
    expect(await c.closed).toBe(1008);
  });

  it('Binance: more than 5 messages in a second close the connection with 1008 (venueMessageRate)', async () => {
    const c = await openWs(`${sim.wsUrl}/ws`);
    for (let i = 1; i <= 5; i++) c.ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: [streams()[i]!], id: i }));
    await until(() => (c.msgs.filter((m) => (m as { id?: number }).id !== undefined).length === 5 ? true : undefined));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: [streams()[6]!], id: 6 }));
    expect(await c.closed).toBe(1008);
    // Paced under the limit, the same six are served.
    const p = await openWs(`${sim.wsUrl}/ws`);
    for (let i = 1; i <= 6; i++) {
      p.ws.send(JSON.stringify({ method: 'SUBSCRIBE', params: [streams()[i]!], id: i }));
      await sleep(250);
    }
    await until(() => (p.msgs.filter((m) => (m as { id?: number }).id !== undefined).length === 6 ? true : undefined));
    expect(p.ws.readyState).toBe(WebSocket.OPEN);
    p.ws.close();
  });
});

describe('CLI flags', () => {
  it('parses the scale options', () => {
    expect(parseSimArgs(['--instruments', '1000', '--total-rate', '10000', '--skew', '1.1', '--venue-message-rate', '--no-venue-limits'])).toEqual({
      instruments: 1000,
      totalTradesPerSecond: 10_000,
      rateSkew: 1.1,
      venueMessageRate: true,
      venueLimits: false,
    });
  });
});
