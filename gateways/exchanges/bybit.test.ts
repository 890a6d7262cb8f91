/**
 * Bybit fixtures beside the adapter: payloads captured from the sim's Bybit dialect
 * (fixtures/bybit/sim.json, by gateways/fixtures/capture-bybit.ts) and real Bybit v5 payloads as
 * documented (fixtures/bybit/real.json), run through ccxt.pro.bybit's own parsers and websocket
 * handlers and then tickflow's normalizers, for spot and the linear perpetual. And the Bybit
 * exchange file: a refill is one request for as many trades as Bybit gives.
 */
import ccxt, { type Exchange, type OHLCV, type OrderBook, type Trade } from 'ccxt';
import { beforeAll, describe, expect, it } from 'vitest';
import { TYPES } from '../../schemas/index.ts';
import { normalizeBook, normalizeCandle, normalizeInstrument, normalizeTicker, normalizeTrade, TICK_SIZE } from '../normalize.ts';
import real from './fixtures/bybit/real.json' with { type: 'json' };
import sim from './fixtures/bybit/sim.json' with { type: 'json' };
import { adapterFor } from './index.ts';

const RECEIVED = 1_800_000_000_123_456;
type Any = Record<string, (...a: unknown[]) => unknown>;
type Json = Record<string, unknown>;

const wsClient = (category: 'spot' | 'linear') => ({ url: `ws://sim/bybit/v5/public/${category}`, resolve() {}, reject() {}, subscriptions: {}, futures: {} });

/** ccxt.pro.bybit with its markets loaded from the fixture's instruments-info answers. */
async function exchange(rest: { instrumentsSpot: unknown; instrumentsLinear: unknown }): Promise<Exchange> {
  const ex = new ccxt.pro.bybit({ options: { fetchMarkets: { types: ['spot', 'linear'] } } });
  (ex as unknown as Any).publicGetV5MarketInstrumentsInfo = async (params: unknown) => {
    const p = params as { category: string; status?: string };
    if (p.status === 'PreLaunch') return { retCode: 0, retMsg: 'OK', result: { category: p.category, list: [], nextPageCursor: '' }, time: 0 };
    return p.category === 'spot' ? rest.instrumentsSpot : rest.instrumentsLinear;
  };
  await ex.loadMarkets();
  return ex;
}

const list = (r: unknown): Json[] => ((r as { result: { list: Json[] } }).result.list);
const valid = (kind: keyof typeof TYPES, rec: unknown) => TYPES[kind].isValid(rec);

for (const [source, fx] of [
  ['sim', sim],
  ['real', real],
] as const) {
  describe(`Bybit v5 payloads (${source}) through ccxt.pro.bybit and the normalizers`, () => {
    let ex: Exchange;
    beforeAll(async () => {
      ex = await exchange(fx.rest);
    });

    it('instruments-info → instruments: spot and the linear perpetual share the exchange id', () => {
      const spot = normalizeInstrument('bybit', ex.market('BTC/USDT'), TICK_SIZE, RECEIVED);
      const perp = normalizeInstrument('bybit', ex.market('BTC/USDT:USDT'), TICK_SIZE, RECEIVED);
      expect(spot).toMatchObject({ symbol: 'BTC/USDT', exchange_symbol: 'BTCUSDT', type: 'spot', base: 'BTC', quote: 'USDT', active: true });
      expect(perp).toMatchObject({ symbol: 'BTC/USDT:USDT', exchange_symbol: 'BTCUSDT', type: 'swap', active: true });
      const s = list(fx.rest.instrumentsSpot)[0] as { lotSizeFilter: Json; priceFilter: Json };
      expect(spot.price_increment).toBe(Number(s.priceFilter.tickSize));
      expect(spot.amount_increment).toBe(Number(s.lotSizeFilter.basePrecision));
      expect(perp.amount_increment).toBe(Number((list(fx.rest.instrumentsLinear)[0] as { lotSizeFilter: Json }).lotSizeFilter.qtyStep));
      expect(valid('instrument', spot) && valid('instrument', perp)).toBe(true);
    });

    it('recent-trade → trades: Bybit ids kept as strings (spot numeric, linear UUID), taker side, exchange time', () => {
      for (const [symbol, key] of [
        ['BTC/USDT', 'recentTradeSpot'],
        ['BTC/USDT:USDT', 'recentTradeLinear'],
      ] as const) {
        const row = list(fx.rest[key])[0]!;
        const t = normalizeTrade('bybit', (ex as unknown as Any).parseTrade!(row, ex.market(symbol)) as Trade, RECEIVED)!;
        expect(t).toEqual({ exchange: 'bybit', symbol, ts: Number(row.time) * 1000, received_at: RECEIVED, id: row.execId, side: String(row.side).toLowerCase(), price: Number(row.price), amount: Number(row.size) });
        expect(valid('trade', t)).toBe(true);
      }
      expect(list(fx.rest.recentTradeSpot)[0]!.execId).toMatch(/^\d+$/);
      expect(list(fx.rest.recentTradeLinear)[0]!.execId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    });

    it('REST tickers carry no exchange time: the ticker is stamped with the receive time', () => {
      const row = list(fx.rest.tickersSpot)[0]!;
      const t = normalizeTicker('bybit', (ex as unknown as Any).parseTicker!(row, ex.market('BTC/USDT')) as never, RECEIVED);
      expect(t).toEqual({
        exchange: 'bybit',
        symbol: 'BTC/USDT',
        ts: RECEIVED,
        received_at: RECEIVED,
        bid: Number(row.bid1Price),
        bid_size: Number(row.bid1Size),
        ask: Number(row.ask1Price),
        ask_size: Number(row.ask1Size),
        last: Number(row.lastPrice),
        open_24h: Number(row.prevPrice24h),
        high_24h: Number(row.highPrice24h),
        low_24h: Number(row.lowPrice24h),
        base_volume_24h: Number(row.volume24h),
        quote_volume_24h: Number(row.turnover24h),
      });
      expect(valid('ticker', t)).toBe(true);
    });

    it('kline rows (newest first) → candles', () => {
      const r = (fx.rest as Json).klineSpot ?? (fx.rest as Json).klineLinear;
      const rows = list(r) as unknown as string[][];
      const symbol = (fx.rest as Json).klineSpot ? 'BTC/USDT' : 'BTC/USDT:USDT';
      const parsed = rows.map((k) => (ex as unknown as Any).parseOHLCV!(k, ex.market(symbol)) as OHLCV);
      expect(Number(rows[0]![0])).toBeGreaterThan(Number(rows[1]![0]));
      const c = normalizeCandle('bybit', symbol, '1m', parsed[1]!, true, RECEIVED)!;
      expect(c).toEqual({ exchange: 'bybit', symbol, ts: Number(rows[1]![0]) * 1000, received_at: RECEIVED, timeframe: '1m', open: Number(rows[1]![1]), high: Number(rows[1]![2]), low: Number(rows[1]![3]), close: Number(rows[1]![4]), volume: Number(rows[1]![5]), closed: true });
      expect(valid('candle', c)).toBe(true);
    });

    it('REST order book → book with the exchange time', () => {
      const r = ((fx.rest as Json).orderbookLinear ?? (fx.rest as Json).orderbookSpot) as { result: { b: string[][]; a: string[][]; ts: number } };
      const symbol = (fx.rest as Json).orderbookLinear ? 'BTC/USDT:USDT' : 'BTC/USDT';
      const ob = ex.parseOrderBook(r.result, symbol, r.result.ts, 'b', 'a') as OrderBook;
      const b = normalizeBook('bybit', symbol, ob, 1, RECEIVED);
      expect(b).toMatchObject({ ts: r.result.ts * 1000, bids: [{ price: Number(r.result.b[0]![0]), amount: Number(r.result.b[0]![1]) }], asks: [{ price: Number(r.result.a[0]![0]), amount: Number(r.result.a[0]![1]) }] });
      expect(valid('book', b)).toBe(true);
    });
  });
}

describe('Bybit v5 websocket messages through ccxt.pro.bybit handlers', () => {
  it('sim: publicTrade, tickers (spot snapshot; linear snapshot + delta), kline, orderbook snapshot + delta', async () => {
    const ex = await exchange(sim.rest);
    const h = (ex as unknown as Any).handleMessage!.bind(ex);
    for (const [category, symbol] of [
      ['spot', 'BTC/USDT'],
      ['linear', 'BTC/USDT:USDT'],
    ] as const) {
      const frames = sim.ws[category] as Record<string, Json>;
      h(wsClient(category), frames.ack_subscribe);
      h(wsClient(category), frames.ack_ping);
      h(wsClient(category), frames.publicTrade);
      const raw = (frames.publicTrade!.data as Json[])[0]!;
      const t = normalizeTrade('bybit', ex.trades[symbol]![0]!, RECEIVED)!;
      expect(t).toEqual({ exchange: 'bybit', symbol, ts: (raw.T as number) * 1000, received_at: RECEIVED, id: raw.i, side: String(raw.S).toLowerCase(), price: Number(raw.p), amount: Number(raw.v) });

      h(wsClient(category), frames.tickers);
      if (category === 'linear') h(wsClient(category), frames.tickers_delta);
      const last = (category === 'linear' ? frames.tickers_delta : frames.tickers)!;
      const tk = normalizeTicker('bybit', ex.tickers[symbol]!, RECEIVED);
      expect(tk.ts).toBe((last.ts as number) * 1000);
      expect(tk.last).toBe(Number((last.data as Json).lastPrice));
      if (category === 'linear') expect(tk.bid).toBe(Number((last.data as Json).bid1Price));
      else expect(tk.bid).toBeNull(); // Bybit's spot ticker stream has no book fields
      expect(valid('ticker', tk)).toBe(true);

      h(wsClient(category), frames.kline_confirm);
      const k = (frames.kline_confirm!.data as Json[])[0]!;
      const row = (ex.ohlcvs[symbol]!['1m'] as unknown as OHLCV[]).find((r) => r[0] === k.start)!;
      expect(normalizeCandle('bybit', symbol, '1m', row, true, RECEIVED)).toMatchObject({ ts: (k.start as number) * 1000, open: Number(k.open), close: Number(k.close), volume: Number(k.volume), closed: true });

      h(wsClient(category), frames.orderbook);
      h(wsClient(category), frames.orderbook_delta);
      const ob = ex.orderbooks[symbol] as unknown as OrderBook;
      const book = normalizeBook('bybit', symbol, ob, 5, RECEIVED);
      expect(book.ts).toBe((frames.orderbook_delta!.ts as number) * 1000);
      expect(book.bids).toHaveLength(5);
      expect(book.bids[0]!.price).toBeLessThan(book.asks[0]!.price);
      const delta = frames.orderbook_delta!.data as { b: string[][]; a: string[][] };
      for (const [p, q] of [...delta.b]) {
        const lvl = ob.bids.find(([x]) => x === Number(p));
        if (Number(q) === 0) expect(lvl).toBeUndefined();
        else expect(lvl?.[1]).toBe(Number(q));
      }
    }
  });

  it('real: the documented messages parse the same way (linear delta merged into the snapshot; book delta removes a level)', async () => {
    const ex = await exchange(real.rest);
    const h = (ex as unknown as Any).handleMessage!.bind(ex);
    h(wsClient('linear'), real.ws.subscribeAck);
    h(wsClient('linear'), real.ws.pong);
    h(wsClient('linear'), real.ws.publicTradeLinear);
    expect(normalizeTrade('bybit', ex.trades['BTC/USDT:USDT']![0]!, RECEIVED)).toMatchObject({ id: '20f43950-d8dd-5b31-9112-a178eb6023af', side: 'buy', price: 16578.5, amount: 0.001, ts: 1672304486865000 });
    h(wsClient('linear'), real.ws.tickersLinearSnapshot);
    h(wsClient('linear'), real.ws.tickersLinearDelta);
    expect(normalizeTicker('bybit', ex.tickers['BTC/USDT:USDT']!, RECEIVED)).toMatchObject({ ts: 1673272861786000, bid: 17215, ask: 17215.5, last: 17216, open_24h: 16926.5 });
    h(wsClient('spot'), real.ws.tickersSpot);
    expect(normalizeTicker('bybit', ex.tickers['BTC/USDT']!, RECEIVED)).toMatchObject({ ts: 1673853746002000, bid: null, last: 21109.77 });
    h(wsClient('linear'), real.ws.klineLinear);
    expect((ex.ohlcvs['BTC/USDT:USDT']!['5m'] as unknown as OHLCV[])[0]).toEqual([1672324800000, 16649.5, 16677, 16608, 16677, 2.081]);
    h(wsClient('linear'), real.ws.orderbookLinearSnapshot);
    h(wsClient('linear'), real.ws.orderbookLinearDelta);
    const b = normalizeBook('bybit', 'BTC/USDT:USDT', ex.orderbooks['BTC/USDT:USDT'] as unknown as OrderBook, 5, RECEIVED);
    expect(b.bids).toEqual([
      { price: 16493, amount: 0.1 },
      { price: 16490, amount: 0.25 },
    ]);
    expect(b.asks[0]).toEqual({ price: 16611, amount: 0.101 });
  });

  it('errors: retCode 10006 is RateLimitExceeded, 10001 BadRequest', async () => {
    const ex = new ccxt.bybit();
    const body = JSON.stringify(real.rest.rateLimited);
    expect(() => ex.handleErrors(200, 'OK', 'http://x/v5/market/tickers', 'GET', {}, body, real.rest.rateLimited, {}, undefined)).toThrow(ccxt.RateLimitExceeded);
    const bad = { retCode: 10001, retMsg: 'params error: Symbol Invalid', result: {}, retExtInfo: {}, time: 1 };
    expect(() => ex.handleErrors(200, 'OK', 'http://x/v5/market/tickers', 'GET', {}, JSON.stringify(bad), bad, {}, undefined)).toThrow(ccxt.BadRequest);
  });
});

describe('Bybit exchange file', () => {
  it('refills with one request for the most trades Bybit returns (spot 60, linear 1000), handed over oldest first', async () => {
    const ex = await exchange(sim.rest);
    const calls: Array<[string, number | undefined, number | undefined]> = [];
    ex.fetchTrades = async (symbol, since, limit) => {
      calls.push([symbol, since, limit]);
      return [3, 1, 2].map((i) => ({ id: String(i), timestamp: 1000 + i, price: 1, amount: 1, side: 'buy', symbol }) as Trade);
    };
    const a = adapterFor('bybit');
    for (const symbol of ['BTC/USDT', 'BTC/USDT:USDT']) {
      const pages: Trade[][] = [];
      for await (const p of a.refillTrades(ex, symbol, { id: '0', ts: 0 }, { maxPages: 10 })) pages.push(p);
      expect(pages.map((p) => p.map((t) => t.id))).toEqual([['1', '2', '3']]);
    }
    expect(calls).toEqual([
      ['BTC/USDT', undefined, 60],
      ['BTC/USDT:USDT', undefined, 1000],
    ]);
    expect(a.ohlcvPageLimit(ex)).toBe(1000);
  });

  it('refills without loaded markets (the category read from the symbol), instead of throwing', async () => {
    const ex = new ccxt.pro.bybit();
    const limits: Array<number | undefined> = [];
    ex.fetchTrades = async (symbol, _since, limit) => {
      limits.push(limit);
      return [{ id: '1', timestamp: 1001, price: 1, amount: 1, side: 'buy', symbol } as Trade];
    };
    for (const symbol of ['BTC/USDT', 'BTC/USDT:USDT']) {
      const pages: Trade[][] = [];
      for await (const p of adapterFor('bybit').refillTrades(ex, symbol, { id: '1', ts: 1001 }, { maxPages: 10 })) pages.push(p);
      expect(pages.map((p) => p.map((t) => t.id))).toEqual([['1']]);
    }
    expect(limits).toEqual([60, 1000]);
  });

  it('says whether the latest trades reached back to the cursor (its trade or its millisecond)', async () => {
    const ex = await exchange(sim.rest);
    ex.fetchTrades = async (symbol) => [5, 6, 7].map((i) => ({ id: String(i), timestamp: 1000 + i, price: 1, amount: 1, side: 'buy', symbol }) as Trade);
    const end = async (cursor: { id: string | undefined; ts: number }) => {
      const gen = adapterFor('bybit').refillTrades(ex, 'BTC/USDT', cursor, { maxPages: 10 });
      for (;;) {
        const step = await gen.next();
        if (step.done) return step.value as { reachedCursor: boolean; why?: string };
      }
    };
    expect(await end({ id: '6', ts: 1006 })).toEqual({ reachedCursor: true });
    expect(await end({ id: '4', ts: 1005 })).toEqual({ reachedCursor: true }); // its millisecond is in the page
    expect(await end({ id: '2', ts: 1002 })).toEqual({ reachedCursor: false, why: expect.stringMatching(/only the latest 60 trades/) });
    expect(await end({ id: undefined, ts: 0 })).toEqual({ reachedCursor: true });
  });
});
