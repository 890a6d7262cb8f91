/**
 * OKX payloads beside the adapter (fixtures/okx/): real ones as OKX documents them and as ccxt
 * recorded them (real.json), and the sim's OKX dialect captured by fixtures/okx/capture-sim.ts
 * (sim.json), each run through ccxt's own parsers (REST) and websocket handlers first, then
 * tickflow's normalizers, as in production. Error answers map to the ccxt classes the gateway's
 * retry policy relies on.
 */
import ccxt, { type Exchange, type Market, type OHLCV, type OrderBook } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TYPES } from '../../schemas/index.ts';
import { buildSim, type Sim } from '../../sim/index.ts';
import { createExchange, loadExchangeClass } from '../ccxt.ts';
import { normalizeBook, normalizeCandle, normalizeInstrument, normalizeTicker, normalizeTrade, TICK_SIZE } from '../normalize.ts';
import real from './fixtures/okx/real.json' with { type: 'json' };
import sim from './fixtures/okx/sim.json' with { type: 'json' };
import { adapterFor } from './index.ts';

const RECEIVED = 1_800_000_000_123_456;
type Any = Record<string, (...a: unknown[]) => unknown>;
type Row = Record<string, string>;

function wsClient() {
  const rejected: unknown[] = [];
  return {
    url: 'ws://sim/okx/ws/v5/public',
    rejected,
    resolve() {},
    reject(e: unknown) {
      rejected.push(e);
    },
    subscriptions: { 'books:BTC/USDT': true, 'books5:BTC/USDT': true, 'books5:ETH/USDT': true } as Record<string, unknown>,
    futures: {},
  };
}

async function exchangeWith(instruments: unknown): Promise<Exchange> {
  const ex = new ccxt.pro.okx({ options: { fetchMarkets: { types: ['spot'] } } });
  (ex as unknown as Any).publicGetPublicInstruments = async () => instruments;
  await ex.loadMarkets();
  return ex;
}

const valid = (kind: keyof typeof TYPES, rec: unknown) => TYPES[kind].isValid(rec);

for (const [name, fx] of [
  ['real OKX', real],
  ['the sim', sim],
] as const) {
  describe(`OKX payloads (${name}) through ccxt.pro.okx and the normalizers`, () => {
    let ex: Exchange;
    beforeAll(async () => {
      ex = await exchangeWith(fx.rest.instruments);
    });

    it('instruments → markets → instrument records with tick and step sizes', () => {
      const raw = fx.rest.instruments.data[0] as Row;
      const m = ex.market(raw.instId!.replace('-', '/')) as NonNullable<Market>;
      const i = normalizeInstrument('okx', m, TICK_SIZE, RECEIVED);
      expect(i).toMatchObject({ symbol: `${raw.baseCcy}/${raw.quoteCcy}`, exchange_symbol: raw.instId, base: raw.baseCcy, quote: raw.quoteCcy, type: 'spot', active: true, price_increment: Number(raw.tickSz), amount_increment: Number(raw.lotSz), min_amount: Number(raw.minSz) });
      expect(valid('instrument', i)).toBe(true);
    });

    it('REST trades → numeric-string ids, taker side, ms times in µs', () => {
      for (const row of fx.rest.trades.data as Row[]) {
        const t = normalizeTrade('okx', (ex as unknown as Any).parseTrade!(row) as never, RECEIVED)!;
        expect(t).toEqual({ exchange: 'okx', symbol: row.instId!.replace('-', '/'), ts: Number(row.ts) * 1000, received_at: RECEIVED, id: row.tradeId, side: row.side, price: Number(row.px), amount: Number(row.sz) });
        expect(t.id).toMatch(/^\d+$/);
        expect(valid('trade', t)).toBe(true);
      }
    });

    it('REST ticker → ticker record (quote volume = volCcy24h on spot)', () => {
      const row = fx.rest.ticker.data[0] as Row;
      const t = normalizeTicker('okx', (ex as unknown as Any).parseTicker!(row) as never, RECEIVED);
      expect(t).toEqual({
        exchange: 'okx',
        symbol: 'BTC/USDT',
        ts: Number(row.ts) * 1000,
        received_at: RECEIVED,
        bid: Number(row.bidPx),
        bid_size: Number(row.bidSz),
        ask: Number(row.askPx),
        ask_size: Number(row.askSz),
        last: Number(row.last),
        open_24h: Number(row.open24h),
        high_24h: Number(row.high24h),
        low_24h: Number(row.low24h),
        base_volume_24h: Number(row.vol24h),
        quote_volume_24h: Number(row.volCcy24h),
      });
      expect(valid('ticker', t)).toBe(true);
    });

    it('REST candles → candle records (base volume), confirm "0" is the forming bucket', () => {
      for (const row of fx.rest.candles.data as string[][]) {
        const o = (ex as unknown as Any).parseOHLCV!(row, ex.market('BTC/USDT')) as OHLCV;
        const c = normalizeCandle('okx', 'BTC/USDT', '1m', o, row[8] === '1', RECEIVED)!;
        expect(c).toEqual({ exchange: 'okx', symbol: 'BTC/USDT', ts: Number(row[0]) * 1000, received_at: RECEIVED, timeframe: '1m', open: Number(row[1]), high: Number(row[2]), low: Number(row[3]), close: Number(row[4]), volume: Number(row[5]), closed: row[8] === '1' });
        expect(valid('candle', c)).toBe(true);
      }
    });

    it('REST books → book record, best first', async () => {
      (ex as unknown as Any).publicGetMarketBooks = async () => fx.rest.books;
      const ob = await ex.fetchOrderBook('BTC/USDT', 3);
      const raw = fx.rest.books.data[0] as { bids: string[][]; asks: string[][]; ts: string };
      const b = normalizeBook('okx', 'BTC/USDT', ob, 3, RECEIVED);
      expect(b.bids.map((l) => [l.price, l.amount])).toEqual(raw.bids.slice(0, 3).map(([p, s]) => [Number(p), Number(s)]));
      expect(b.asks[0]!.price).toBe(Number(raw.asks[0]![0]));
      expect(b.ts).toBe(Number(raw.ts) * 1000);
    });

    it('REST errors: 51001 is BadSymbol (not retried), 50011 RateLimitExceeded (retried)', () => {
      const body = fx.rest.error;
      expect(() => (ex as unknown as Any).handleErrors!(400, '', 'url', 'GET', {}, JSON.stringify(body), body)).toThrow(ccxt.BadSymbol);
      const limited = real.rest.rateLimited;
      expect(() => (ex as unknown as Any).handleErrors!(429, '', 'url', 'GET', {}, JSON.stringify(limited), limited)).toThrow(ccxt.RateLimitExceeded);
    });

    it('websocket trades, tickers and candles → records equal to the payload', () => {
      const client = wsClient();
      const h = (m: unknown) => (ex as unknown as Any).handleMessage!(client, m);
      h(fx.ws.subscribe_trades);
      const tw = fx.ws.trades.data[0] as Row;
      h(fx.ws.trades);
      const t = normalizeTrade('okx', ex.trades['BTC/USDT']!.at(-1)!, RECEIVED)!;
      expect(t).toMatchObject({ id: tw.tradeId, ts: Number(tw.ts) * 1000, price: Number(tw.px), amount: Number(tw.sz), side: tw.side });
      h(fx.ws.tickers);
      const kw = fx.ws.tickers.data[0] as Row;
      expect(normalizeTicker('okx', ex.tickers['BTC/USDT']!, RECEIVED)).toMatchObject({ ts: Number(kw.ts) * 1000, bid: Number(kw.bidPx), ask_size: Number(kw.askSz), base_volume_24h: Number(kw.vol24h) });
      const candle = 'candle1m' in fx.ws ? fx.ws.candle1m : fx.ws.candle1m_confirm1;
      h(candle);
      const row = (ex.ohlcvs['BTC/USDT']!['1m'] as unknown as OHLCV[]).at(-1)!;
      const cw = candle.data[0] as string[];
      expect(normalizeCandle('okx', 'BTC/USDT', '1m', row, true, RECEIVED)).toMatchObject({ ts: Number(cw[0]) * 1000, open: Number(cw[1]), close: Number(cw[4]), volume: Number(cw[5]) });
      expect(client.rejected).toEqual([]);
    });

    it('websocket books: snapshot then update applied in order; books5 replaces the top', () => {
      const client = wsClient();
      const h = (m: unknown) => (ex as unknown as Any).handleMessage!(client, m);
      h(fx.ws.books_snapshot);
      h(fx.ws.books_update);
      expect(client.rejected).toEqual([]);
      const ob = ex.orderbooks['BTC/USDT'] as OrderBook;
      const snap = fx.ws.books_snapshot.data[0] as { bids: string[][]; asks: string[][] };
      const upd = fx.ws.books_update.data[0] as { bids: string[][]; asks: string[][]; ts: string; seqId?: number };
      const apply = (side: string[][], diff: string[][]) => {
        const m = new Map(side.map(([p, s]) => [Number(p), Number(s)]));
        for (const [p, s] of diff) {
          if (Number(s) === 0) m.delete(Number(p));
          else m.set(Number(p), Number(s));
        }
        return m;
      };
      const bids = [...apply(snap.bids, upd.bids)].sort((a, b) => b[0] - a[0]);
      const asks = [...apply(snap.asks, upd.asks)].sort((a, b) => a[0] - b[0]);
      const b = normalizeBook('okx', 'BTC/USDT', ob, 3, RECEIVED);
      expect(b.bids.map((l) => [l.price, l.amount])).toEqual(bids.slice(0, 3));
      expect(b.asks.map((l) => [l.price, l.amount])).toEqual(asks.slice(0, 3));
      expect(b.ts).toBe(Number(upd.ts) * 1000);
      if (upd.seqId !== undefined) expect(ob.nonce).toBe(upd.seqId);
      expect(valid('book', b)).toBe(true);
      h(fx.ws.books5);
      const top = fx.ws.books5.data[0] as { bids: string[][] };
      expect((ex.orderbooks['BTC/USDT'] as OrderBook).bids[0]![0]).toBe(Number(top.bids[0]![0]));
    });

    it('websocket error events reject the pending watches with the mapped ccxt class', () => {
      const client = wsClient();
      const err = 'error' in fx.ws ? fx.ws.error : fx.ws.error_;
      (ex as unknown as Any).handleMessage!(client, err);
      expect(client.rejected).toHaveLength(1);
      expect(client.rejected[0]).toBeInstanceOf(ccxt.ExchangeError);
      expect(String(client.rejected[0])).toContain(err.code);
    });
  });
}

describe("the sim's books chain: prevSeqId of the first update = seqId of the snapshot", () => {
  it('holds in the captured frames', () => {
    expect(sim.ws.books_update.data[0]!.prevSeqId).toBe(sim.ws.books_snapshot.data[0]!.seqId);
    expect(sim.ws.books_snapshot.data[0]!.prevSeqId).toBe(-1);
  });
});

describe('OKX candles of 6 h and more: stream and REST on the same UTC buckets (against the sim)', () => {
  let simServer: Sim;
  beforeAll(async () => {
    simServer = buildSim({ seed: 2, symbols: ['BTC/USDT'], tradesPerSecond: 2, historyDays: 3, dialects: ['okx'] });
    await simServer.start();
  });
  afterAll(async () => {
    await simServer.close();
  });

  it('watchOHLCV and fetchOHLCV give the same 6h and 1d buckets, opening on UTC, equal to the engine', async () => {
    const entry = { id: 'okx', options: { ...simServer.ccxtOptions('okx'), enableRateLimit: false } };
    await loadExchangeClass('okx');
    const ex = createExchange(entry, adapterFor('okx').ccxtDefaults(entry.options));
    try {
      for (const [tf, ms] of [
        ['6h', 6 * 3_600_000],
        ['1d', 86_400_000],
      ] as const) {
        const streamed = await ex.watchOHLCV('BTC/USDT', tf);
        const fetched = await ex.fetchOHLCV('BTC/USDT', tf, simServer.now() - 2 * 86_400_000, 20);
        const forming = streamed.at(-1)!;
        expect(forming[0]! % ms).toBe(0);
        expect(fetched.every((r) => r[0]! % ms === 0)).toBe(true);
        expect(fetched.at(-1)![0]).toBe(forming[0]);
        const engine = new Map(simServer.emitted.candles('BTC/USDT', tf, { includeHistory: true }).map((c) => [c.timestamp, c]));
        for (const [ts, o] of fetched) expect(o).toBe(engine.get(ts!)!.open);
      }
    } finally {
      await ex.close();
    }
  });
});
