/**
 * Kraken payloads through ccxt's own parsers (ccxt.pro.kraken: REST methods with the HTTP call
 * stubbed, websocket v2 handlers fed the frames) and tickflow's normalizers, as in production:
 * the sim's Kraken dialect (fixtures/kraken/sim.json, captured by sim/dialects/kraken/capture.ts)
 * and real Kraken answers (fixtures/kraken/real.json). Kraken has no adapter file: the generic
 * behaviour (exchanges/default.ts) serves it, `fetchTrades(since)` honouring `since`.
 */
import ccxt, { type Exchange, type OHLCV } from 'ccxt';
import { beforeAll, describe, expect, it } from 'vitest';
import { TYPES } from '../../schemas/index.ts';
import { normalizeBook, normalizeCandle, normalizeInstrument, normalizeTicker, normalizeTrade } from '../normalize.ts';
import real from './fixtures/kraken/real.json' with { type: 'json' };
import sim from './fixtures/kraken/sim.json' with { type: 'json' };

const RECEIVED = 1_800_000_000_123_456;
type Any = Record<string, (...a: unknown[]) => unknown>;
type Row = [string, string, number, string, string, string, number];
type TickerRaw = { a: string[]; b: string[]; c: string[]; v: string[]; p: string[]; l: string[]; h: string[]; o: string };
type WsFrame = { channel: string; type: string; data: Array<Record<string, unknown>> };

const wsClient = { url: 'ws://sim/kraken/v2', resolve() {}, reject() {}, subscriptions: {}, futures: {} };
const valid = (kind: keyof typeof TYPES, rec: unknown) => TYPES[kind].isValid(rec);
/** ms of an RFC 3339 time with more than ms digits (what ccxt's parse8601 keeps). */
const ms = (iso: string) => Date.parse(`${iso.slice(0, 23)}Z`);
/** Kraken's seconds text "1710327959.1733468" → its whole milliseconds, by the digits. */
const msOfSeconds = (s: number) => {
  const [int, frac = ''] = String(s).split('.');
  return Number(int! + frac.padEnd(3, '0').slice(0, 3));
};

async function krakenWith(rest: Record<string, unknown>): Promise<Exchange> {
  const ex = new ccxt.pro.kraken();
  const stub = ex as unknown as Any;
  for (const name of ['Assets', 'AssetPairs', 'Trades', 'Ticker', 'OHLC', 'Depth']) {
    stub[`publicGet${name}`] = async () => structuredClone(rest[name]);
  }
  await ex.loadMarkets();
  return ex;
}

const SETS = [
  { name: 'the sim (captured)', fx: sim as unknown as typeof real, symbol: 'BTC/USDT', id: 'XBTUSDT', wsSymbol: 'BTC/USDT' },
  { name: 'real Kraken', fx: real, symbol: 'BTC/USDT', id: 'XBTUSDT', wsSymbol: 'MATIC/USD' },
] as const;

for (const set of SETS) {
  describe(`Kraken payloads of ${set.name} through ccxt.pro.kraken and the normalizers`, () => {
    let ex: Exchange;
    const rest = set.fx.rest as unknown as Record<string, { result: Record<string, unknown>; error: string[] }>;
    beforeAll(async () => {
      ex = await krakenWith(set.fx.rest);
    });

    it('AssetPairs + Assets → instrument: unified symbol from the X/Z assets, Kraken id, tick and step from the decimals', () => {
      const pair = rest.AssetPairs!.result[set.id] as { pair_decimals: number; lot_decimals: number; ordermin: string };
      const i = normalizeInstrument('kraken', ex.market(set.symbol), ex.precisionMode!, RECEIVED);
      expect(i).toMatchObject({ symbol: set.symbol, exchange_symbol: set.id, base: 'BTC', quote: 'USDT', type: 'spot', active: true, min_amount: Number(pair.ordermin) });
      expect(i.price_increment).toBeCloseTo(10 ** -pair.pair_decimals, 12);
      expect(i.amount_increment).toBeCloseTo(10 ** -pair.lot_decimals, 12);
      expect(valid('instrument', i)).toBe(true);
    });

    it('REST Trades → trades: id = trade_id, time to the millisecond, taker side, price and volume', async () => {
      const rows = rest.Trades!.result[set.id] as Row[];
      const got = await ex.fetchTrades(set.symbol);
      expect(got).toHaveLength(rows.length);
      for (const [k, row] of rows.entries()) {
        const t = normalizeTrade('kraken', got[k]!, RECEIVED)!;
        expect(t).toEqual({ exchange: 'kraken', symbol: set.symbol, ts: msOfSeconds(row[2]) * 1000, received_at: RECEIVED, id: String(row[6]), side: row[3] === 's' ? 'sell' : 'buy', price: Number(row[0]), amount: Number(row[1]) });
        expect(valid('trade', t)).toBe(true);
      }
    });

    it('REST Ticker → ticker without an exchange time (ts = received), 24 h values from index 1', async () => {
      const x = rest.Ticker!.result[set.id] as TickerRaw;
      const t = normalizeTicker('kraken', await ex.fetchTicker(set.symbol), RECEIVED);
      expect(t).toMatchObject({ symbol: set.symbol, ts: RECEIVED, received_at: RECEIVED, bid: Number(x.b[0]), ask: Number(x.a[0]), last: Number(x.c[0]), open_24h: Number(x.o), high_24h: Number(x.h[1]), low_24h: Number(x.l[1]), base_volume_24h: Number(x.v[1]) });
      expect(t.quote_volume_24h).toBeCloseTo(Number(x.v[1]) * Number(x.p[1]), 4);
      expect(valid('ticker', t)).toBe(true);
    });

    it('REST OHLC → candles: seconds to µs, volume from the 7th field (not the vwap)', async () => {
      const rows = rest.OHLC!.result[set.id] as Array<[number, string, string, string, string, string, string, number]>;
      const got = await ex.fetchOHLCV(set.symbol, '1m');
      expect(got).toHaveLength(rows.length);
      const c = normalizeCandle('kraken', set.symbol, '1m', got[0]!, true, RECEIVED)!;
      const r = rows[0]!;
      expect(c).toEqual({ exchange: 'kraken', symbol: set.symbol, ts: r[0] * 1_000_000, received_at: RECEIVED, timeframe: '1m', open: Number(r[1]), high: Number(r[2]), low: Number(r[3]), close: Number(r[4]), volume: Number(r[6]), closed: true });
      expect(valid('candle', c)).toBe(true);
    });

    it('REST Depth → book top: levels in order, no exchange time or sequence', async () => {
      const raw = rest.Depth!.result[set.id] as { bids: string[][]; asks: string[][] };
      const b = normalizeBook('kraken', set.symbol, await ex.fetchOrderBook(set.symbol), 2, RECEIVED);
      expect(b).toEqual({
        exchange: 'kraken',
        symbol: set.symbol,
        ts: RECEIVED,
        received_at: RECEIVED,
        depth: 2,
        bids: raw.bids.slice(0, 2).map(([p, q]) => ({ price: Number(p), amount: Number(q) })),
        asks: raw.asks.slice(0, 2).map(([p, q]) => ({ price: Number(p), amount: Number(q) })),
        sequence: null,
      });
      expect(valid('book', b)).toBe(true);
    });

    it('websocket v2 trade → trade: trade_id, RFC 3339 time to the millisecond', () => {
      const f = set.fx.ws.trade_update as unknown as WsFrame;
      (ex as unknown as Any).handleMessage!(wsClient, structuredClone(f));
      const d = f.data.at(-1)!;
      const t = normalizeTrade('kraken', ex.trades[set.wsSymbol]!.at(-1)!, RECEIVED)!;
      expect(t).toEqual({ exchange: 'kraken', symbol: set.wsSymbol, ts: ms(d.timestamp as string) * 1000, received_at: RECEIVED, id: String(d.trade_id), side: d.side, price: d.price, amount: d.qty });
      expect(valid('trade', t)).toBe(true);
    });

    it('websocket v2 ticker → ticker without an exchange time', () => {
      const f = set.fx.ws.ticker_snapshot as unknown as WsFrame;
      (ex as unknown as Any).handleMessage!(wsClient, structuredClone(f));
      const d = f.data[0]!;
      const t = normalizeTicker('kraken', ex.tickers[d.symbol as string]!, RECEIVED);
      expect(t).toMatchObject({ symbol: d.symbol, ts: RECEIVED, bid: d.bid, bid_size: d.bid_qty, ask: d.ask, ask_size: d.ask_qty, last: d.last, high_24h: d.high, low_24h: d.low, base_volume_24h: d.volume });
      expect(t.quote_volume_24h).toBeCloseTo((d.volume as number) * (d.vwap as number), 2);
      expect(valid('ticker', t)).toBe(true);
    });

    it('websocket v2 ohlc → candle opening at interval_begin', () => {
      const f = set.fx.ws.ohlc_update as unknown as WsFrame;
      (ex as unknown as Any).handleMessage!(wsClient, structuredClone(f));
      const d = f.data.at(-1)!;
      const tf = ex.findTimeframe(d.interval as number)!;
      const row = (ex.ohlcvs[d.symbol as string]![tf] as unknown as OHLCV[]).at(-1)!;
      const c = normalizeCandle('kraken', d.symbol as string, tf, row, false, RECEIVED)!;
      expect(c).toMatchObject({ ts: ms(d.interval_begin as string) * 1000, open: d.open, high: d.high, low: d.low, close: d.close, volume: d.volume, closed: false });
      expect(valid('candle', c)).toBe(true);
    });

    it('websocket v2 book snapshot + update → the book with the update applied, at the snapshot depth', () => {
      const snap = set.fx.ws.book_snapshot as unknown as WsFrame;
      const upd = set.fx.ws.book_update as unknown as WsFrame;
      (ex as unknown as Any).handleMessage!(wsClient, structuredClone(snap));
      (ex as unknown as Any).handleMessage!(wsClient, structuredClone(upd));
      type L = { price: number; qty: number };
      const apply = (side: 'bids' | 'asks') => {
        const m = new Map((snap.data[0]![side] as L[]).map((l) => [l.price, l.qty]));
        for (const l of upd.data[0]![side] as L[]) {
          if (l.qty === 0) m.delete(l.price);
          else m.set(l.price, l.qty);
        }
        return [...m].sort((a, b) => (side === 'bids' ? b[0] - a[0] : a[0] - b[0])).map(([price, amount]) => ({ price, amount }));
      };
      const sym = snap.data[0]!.symbol as string;
      // ccxt keeps as many levels as the snapshot had asks (Kraken's subscribed depth).
      const depth = (snap.data[0]!.asks as L[]).length;
      const b = normalizeBook('kraken', sym, ex.orderbooks[sym]!, 10, RECEIVED);
      expect(b.bids).toEqual(apply('bids').slice(0, depth));
      expect(b.asks).toEqual(apply('asks').slice(0, depth));
      expect(b.ts).toBe(ms(upd.data[0]!.timestamp as string) * 1000);
      expect(valid('book', b)).toBe(true);
    });
  });
}

describe("Kraken's error answers through ccxt's error mapping", () => {
  const check = (body: unknown) => {
    const ex = new ccxt.kraken();
    try {
      ex.handleErrors(200, 'OK', 'http://sim/kraken/0/public/Ticker', 'GET', {}, JSON.stringify(body), body, {}, undefined);
    } catch (e) {
      return e;
    }
    return undefined;
  };

  it('rate limit (HTTP 200, EAPI:Rate limit exceeded) → DDoSProtection, a retriable NetworkError', () => {
    expect(check(real.rest.rateLimited)).toBeInstanceOf(ccxt.DDoSProtection);
    expect(check(sim.rest.unknownPair)).toBeInstanceOf(ccxt.ExchangeError);
  });

  it('an unknown pair (EQuery:Unknown asset pair) is a plain ExchangeError in ccxt, not BadSymbol (ccxt maps only "Unknown asset" / "Invalid asset pair")', () => {
    const e = check(real.rest.unknownPair);
    expect(e).toBeInstanceOf(ccxt.ExchangeError);
    expect(e).not.toBeInstanceOf(ccxt.BadSymbol);
    expect(sim.rest.unknownPair).toEqual({ error: ['EQuery:Unknown asset pair'], result: {} });
  });
});
