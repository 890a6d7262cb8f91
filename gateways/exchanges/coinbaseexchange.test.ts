/**
 * Coinbase Exchange payloads beside the adapter (fixtures/coinbaseexchange/): real ones as ccxt
 * recorded them and as Coinbase documents them (real.json), and the sim's Coinbase dialect
 * captured by fixtures/coinbaseexchange/capture-sim.ts (sim.json), each run through ccxt's own
 * parsers (REST) and websocket handlers first, then tickflow's normalizers, as in production.
 * Coinbase prints the MAKER's side; the records carry the taker's. Error answers map to the ccxt
 * classes the gateway's retry policy sees.
 */
import ccxt, { type Exchange, type Market, type OHLCV, type OrderBook } from 'ccxt';
import { beforeAll, describe, expect, it } from 'vitest';
import { TYPES } from '../../schemas/index.ts';
import { normalizeBook, normalizeCandle, normalizeInstrument, normalizeTicker, normalizeTrade, TICK_SIZE } from '../normalize.ts';
import real from './fixtures/coinbaseexchange/real.json' with { type: 'json' };
import sim from './fixtures/coinbaseexchange/sim.json' with { type: 'json' };

const RECEIVED = 1_800_000_000_123_456;
type Any = Record<string, (...a: unknown[]) => unknown>;
type Row = Record<string, unknown>;

/** Coinbase's microsecond ISO time → ms, as ccxt parses it (truncated). */
const ms = (iso: string) => Date.parse(iso.replace(/(\.\d{3})\d*Z$/, '$1Z'));
const taker = (makerSide: unknown) => (makerSide === 'buy' ? 'sell' : 'buy');

function wsClient() {
  const rejected: unknown[] = [];
  return {
    url: 'ws://sim/coinbaseexchange/ws-feed',
    rejected,
    resolve() {},
    reject(e: unknown) {
      rejected.push(e);
    },
    subscriptions: { 'level2:BTC-USDT': { messageHash: 'level2:BTC-USDT', symbol: 'BTC/USDT', marketId: 'BTC-USDT' } } as Record<string, unknown>,
    futures: {},
  };
}

async function exchangeWith(products: unknown): Promise<Exchange> {
  const ex = new ccxt.pro.coinbaseexchange({});
  (ex as unknown as Any).publicGetProducts = async () => products;
  (ex as unknown as Any).publicGetCurrencies = async () => [];
  await ex.loadMarkets();
  return ex;
}

const valid = (kind: keyof typeof TYPES, rec: unknown) => TYPES[kind].isValid(rec);

for (const [name, fx] of [
  ['real Coinbase Exchange', real],
  ['the sim', sim],
] as const) {
  describe(`Coinbase Exchange payloads (${name}) through ccxt.pro.coinbaseexchange and the normalizers`, () => {
    let ex: Exchange;
    beforeAll(async () => {
      ex = await exchangeWith(fx.rest.products);
    });

    it('products → markets → instrument records with tick and step sizes', () => {
      const raw = fx.rest.products[0] as unknown as Row;
      const m = ex.market(String(raw.id).replace('-', '/')) as NonNullable<Market>;
      const i = normalizeInstrument('coinbaseexchange', m, TICK_SIZE, RECEIVED);
      expect(i).toMatchObject({ symbol: `${raw.base_currency}/${raw.quote_currency}`, exchange_symbol: raw.id, base: raw.base_currency, quote: raw.quote_currency, type: 'spot', active: true, price_increment: Number(raw.quote_increment), amount_increment: Number(raw.base_increment) });
      expect(valid('instrument', i)).toBe(true);
    });

    it("REST trades → numeric ids, the taker's side, µs times", () => {
      for (const row of fx.rest.trades as Row[]) {
        const t = normalizeTrade('coinbaseexchange', (ex as unknown as Any).parseTrade!(row, ex.market('BTC/USDT')) as never, RECEIVED)!;
        expect(t).toEqual({ exchange: 'coinbaseexchange', symbol: 'BTC/USDT', ts: ms(String(row.time)) * 1000, received_at: RECEIVED, id: String(row.trade_id), side: taker(row.side), price: Number(row.price), amount: Number(row.size) });
        expect(t.id).toMatch(/^\d+$/);
        expect(valid('trade', t)).toBe(true);
      }
    });

    it('REST ticker → ticker record with the exchange time (no 24 h open/high/low on /ticker)', () => {
      const row = fx.rest.ticker as Row;
      const t = normalizeTicker('coinbaseexchange', (ex as unknown as Any).parseTicker!(row, ex.market('BTC/USDT')) as never, RECEIVED);
      expect(t).toEqual({
        exchange: 'coinbaseexchange',
        symbol: 'BTC/USDT',
        ts: ms(String(row.time)) * 1000,
        received_at: RECEIVED,
        bid: Number(row.bid),
        bid_size: null,
        ask: Number(row.ask),
        ask_size: null,
        last: Number(row.price),
        open_24h: null,
        high_24h: null,
        low_24h: null,
        base_volume_24h: Number(row.volume),
        quote_volume_24h: null,
      });
      expect(valid('ticker', t)).toBe(true);
    });

    it('REST candles [time s, low, high, open, close, volume] → candle records', () => {
      for (const row of fx.rest.candles as number[][]) {
        const o = (ex as unknown as Any).parseOHLCV!(row, ex.market('BTC/USDT')) as OHLCV;
        const c = normalizeCandle('coinbaseexchange', 'BTC/USDT', '1m', o, true, RECEIVED)!;
        expect(c).toEqual({ exchange: 'coinbaseexchange', symbol: 'BTC/USDT', ts: row[0]! * 1_000_000, received_at: RECEIVED, timeframe: '1m', open: row[3], high: row[2], low: row[1], close: row[4], volume: row[5], closed: true });
        expect(valid('candle', c)).toBe(true);
      }
    });

    it('REST book (level 2) → book record, best first, sequence kept', async () => {
      (ex as unknown as Any).publicGetProductsIdBook = async () => fx.rest.book;
      const ob = await ex.fetchOrderBook('BTC/USDT');
      const raw = fx.rest.book as { bids: Array<Array<string | number>>; asks: Array<Array<string | number>>; sequence: number };
      const b = normalizeBook('coinbaseexchange', 'BTC/USDT', ob, 2, RECEIVED);
      expect(b.bids.map((l) => [l.price, l.amount])).toEqual(raw.bids.slice(0, 2).map(([p, s]) => [Number(p), Number(s)]));
      expect(b.asks[0]!.price).toBe(Number(raw.asks[0]![0]));
      expect(b.sequence).toBe(raw.sequence);
      expect(valid('book', b)).toBe(true);
    });

    it('REST errors: 404 {"message":"NotFound"} is what ccxt maps to OrderNotFound; 429 is RateLimitExceeded', () => {
      const err = fx.rest.error;
      expect(err.status).toBe(404);
      expect(() => (ex as unknown as Any).handleErrors!(404, '', 'url', 'GET', {}, JSON.stringify(err.body), err.body)).toThrow(ccxt.OrderNotFound);
      const limited = real.rest.rateLimited;
      expect((ex as unknown as Any).handleErrors!(429, '', 'url', 'GET', {}, JSON.stringify(limited.body), limited.body)).toBeUndefined();
      expect(() => (ex as unknown as Any).handleHttpStatusCode!(429, 'Too Many Requests', 'url', 'GET', JSON.stringify(limited.body))).toThrow(ccxt.RateLimitExceeded);
    });

    it("websocket match (taker's side, numeric id) and ticker (exchange time, 24 h stats) → records equal to the payload", () => {
      const client = wsClient();
      const h = (m: unknown) => (ex as unknown as Any).handleMessage!(client, m);
      h(fx.ws.subscriptions);
      h(fx.ws.last_match); // not a trade for ccxt (it ignores the type)
      h(fx.ws.heartbeat);
      expect(ex.trades['BTC/USDT']).toBeUndefined();
      const mw = fx.ws.match as Row;
      h(fx.ws.match);
      const t = normalizeTrade('coinbaseexchange', ex.trades['BTC/USDT']!.at(-1)!, RECEIVED)!;
      expect(t).toEqual({ exchange: 'coinbaseexchange', symbol: 'BTC/USDT', ts: ms(String(mw.time)) * 1000, received_at: RECEIVED, id: String(mw.trade_id), side: taker(mw.side), price: Number(mw.price), amount: Number(mw.size) });
      h(fx.ws.ticker);
      const kw = fx.ws.ticker as Row;
      expect(normalizeTicker('coinbaseexchange', ex.tickers['BTC/USDT']!, RECEIVED)).toEqual({
        exchange: 'coinbaseexchange',
        symbol: 'BTC/USDT',
        ts: ms(String(kw.time)) * 1000,
        received_at: RECEIVED,
        bid: Number(kw.best_bid),
        bid_size: Number(kw.best_bid_size),
        ask: Number(kw.best_ask),
        ask_size: Number(kw.best_ask_size),
        last: Number(kw.price),
        open_24h: Number(kw.open_24h),
        high_24h: Number(kw.high_24h),
        low_24h: Number(kw.low_24h),
        base_volume_24h: Number(kw.volume_24h),
        quote_volume_24h: null,
      });
      expect(client.rejected).toEqual([]);
    });

    it('websocket level2: snapshot then l2update applied ([side, price, size], size 0 removes)', () => {
      const client = wsClient();
      const h = (m: unknown) => (ex as unknown as Any).handleMessage!(client, m);
      h(fx.ws.snapshot);
      h(fx.ws.l2update);
      expect(client.rejected).toEqual([]);
      const snap = fx.ws.snapshot as { bids: string[][]; asks: string[][] };
      const upd = fx.ws.l2update as { changes: string[][]; time: string };
      const apply = (side: string[][], which: string) => {
        const m = new Map(side.map(([p, s]) => [Number(p), Number(s)]));
        for (const [sd, p, s] of upd.changes) {
          if (sd !== which) continue;
          if (Number(s) === 0) m.delete(Number(p));
          else m.set(Number(p), Number(s));
        }
        return m;
      };
      const bids = [...apply(snap.bids, 'buy')].sort((a, b) => b[0] - a[0]);
      const asks = [...apply(snap.asks, 'sell')].sort((a, b) => a[0] - b[0]);
      const b = normalizeBook('coinbaseexchange', 'BTC/USDT', ex.orderbooks['BTC/USDT'] as OrderBook, 3, RECEIVED);
      expect(b.bids.map((l) => [l.price, l.amount])).toEqual(bids.slice(0, 3));
      expect(b.asks.map((l) => [l.price, l.amount])).toEqual(asks.slice(0, 3));
      expect(b.ts).toBe(ms(upd.time) * 1000);
      expect(valid('book', b)).toBe(true);
    });

    it('websocket error messages reject the pending watches with an ExchangeError naming the reason', () => {
      const client = wsClient();
      (ex as unknown as Any).handleMessage!(client, fx.ws.error);
      expect(client.rejected).toHaveLength(1);
      expect(client.rejected[0]).toBeInstanceOf(ccxt.ExchangeError);
      expect(String(client.rejected[0])).toContain(fx.ws.error.reason);
    });
  });
}

describe("the sim's trade pages carry Coinbase's cursors", () => {
  it('cb-before = the newest id of the page, cb-after = the oldest (the next `after`)', () => {
    const page = sim.rest.tradesPage;
    const ids = page.body.map((t) => t.trade_id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(page.headers).toEqual({ 'cb-before': String(ids[0]), 'cb-after': String(ids.at(-1)) });
  });
});
