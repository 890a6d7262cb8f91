/**
 * The normalizers on captured payloads, parsed by ccxt's own code first (websocket handlers and
 * REST parsers), as in production: the sim's Binance wire format (fixtures/sim-binance.json,
 * captured by fixtures/capture-sim.ts) and real Binance, OKX and Kraken payloads as the
 * exchanges document them (fixtures/exchange-payloads.json).
 */
import ccxt, { type Exchange, type Market, type OHLCV } from 'ccxt';
import { beforeAll, describe, expect, it } from 'vitest';
import { TYPES } from '../schemas/index.ts';
import real from './fixtures/exchange-payloads.json' with { type: 'json' };
import sim from './fixtures/sim-binance.json' with { type: 'json' };
import { increment, normalizeBook, normalizeCandle, normalizeInstrument, normalizeTicker, normalizeTrade, tradeId, DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE } from './normalize.ts';

const RECEIVED = 1_800_000_000_123_456;
type Any = Record<string, (...a: unknown[]) => unknown>;

/** A websocket client as ccxt's handlers see it (Binance tells spot from futures by `/stream`). */
const wsClient = { url: 'ws://sim/stream/ws/0', resolve() {}, reject() {}, subscriptions: {}, futures: {} };

function valid(kind: keyof typeof TYPES, rec: unknown): boolean {
  return TYPES[kind].isValid(rec);
}

describe('Binance wire format (captured from the sim) through ccxt.pro.binance', () => {
  let ex: Exchange;
  beforeAll(async () => {
    ex = new ccxt.pro.binance({ options: { fetchMarkets: { types: ['spot'] } } });
    (ex as unknown as Any).publicGetExchangeInfo = async () => sim.rest.exchangeInfo;
    await ex.loadMarkets();
  });

  it('aggTrade event → trade: exchange id, taker side (m = buyer is maker → sell), both times', () => {
    (ex as unknown as Any).handleMessage!(wsClient, sim.ws.aggTrade);
    const t = normalizeTrade('sim', ex.trades['BTC/USDT']![0]!, RECEIVED)!;
    expect(t).toEqual({ exchange: 'sim', symbol: 'BTC/USDT', ts: sim.ws.aggTrade.T * 1000, received_at: RECEIVED, id: String(sim.ws.aggTrade.a), side: 'sell', price: 60000.97, amount: 0.00498 });
    expect(valid('trade', t)).toBe(true);
  });

  it('REST aggTrades and trade events normalize to the same ids and fields', () => {
    const row = sim.rest.aggTrades[0]!;
    const t = normalizeTrade('sim', (ex as unknown as Any).parseTrade!(row, ex.market('BTC/USDT')) as never, RECEIVED)!;
    expect(t).toMatchObject({ id: String(row.a), ts: row.T * 1000, price: Number(row.p), amount: Number(row.q), side: row.m ? 'sell' : 'buy' });
  });

  it('kline event and REST klines → candle with the closed flag the gateway derives', () => {
    (ex as unknown as Any).handleMessage!(wsClient, sim.ws.kline);
    const row = (ex.ohlcvs['BTC/USDT']!['1m'] as unknown as OHLCV[])[0]!;
    const k = sim.ws.kline.k;
    const c = normalizeCandle('sim', 'BTC/USDT', '1m', row, false, RECEIVED)!;
    expect(c).toEqual({ exchange: 'sim', symbol: 'BTC/USDT', ts: k.t * 1000, received_at: RECEIVED, timeframe: '1m', open: Number(k.o), high: Number(k.h), low: Number(k.l), close: Number(k.c), volume: Number(k.v), closed: false });
    const rest = (ex as unknown as Any).parseOHLCV!(sim.rest.klines[0]) as OHLCV;
    expect(normalizeCandle('sim', 'BTC/USDT', '1m', rest, true, RECEIVED)).toMatchObject({ ts: (sim.rest.klines[0]![0] as number) * 1000, open: Number(sim.rest.klines[0]![1]), closed: true });
    expect(valid('candle', c)).toBe(true);
  });

  it('24hrTicker event → ticker with bid/ask sizes and 24h stats; REST ticker/24hr alike', () => {
    (ex as unknown as Any).handleMessage!(wsClient, sim.ws['24hrTicker']);
    const x = sim.ws['24hrTicker'];
    const t = normalizeTicker('sim', ex.tickers['BTC/USDT']!, RECEIVED);
    expect(t).toEqual({
      exchange: 'sim',
      symbol: 'BTC/USDT',
      ts: x.C * 1000,
      received_at: RECEIVED,
      bid: Number(x.b),
      bid_size: Number(x.B),
      ask: Number(x.a),
      ask_size: Number(x.A),
      last: Number(x.c),
      open_24h: Number(x.o),
      high_24h: Number(x.h),
      low_24h: Number(x.l),
      base_volume_24h: Number(x.v),
      quote_volume_24h: Number(x.q),
    });
    const r = normalizeTicker('sim', (ex as unknown as Any).parseTicker!(sim.rest.ticker24hr, ex.market('BTC/USDT')) as never, RECEIVED);
    expect(r).toMatchObject({ bid: Number(sim.rest.ticker24hr.bidPrice), ask_size: Number(sim.rest.ticker24hr.askQty), ts: sim.rest.ticker24hr.closeTime * 1000 });
    expect(valid('ticker', t)).toBe(true);
  });

  it('depth snapshot → top-N book, best first, with the update id as sequence', () => {
    const ob = (ex as unknown as Any).parseOrderBook!(sim.rest.depth, 'BTC/USDT') as never as { nonce?: number };
    ob.nonce = sim.rest.depth.lastUpdateId;
    const b = normalizeBook('sim', 'BTC/USDT', ob as never, 3, RECEIVED);
    expect(b.bids.map((l) => l.price)).toEqual(sim.rest.depth.bids.slice(0, 3).map((l) => Number(l[0])));
    expect(b.asks.map((l) => l.amount)).toEqual(sim.rest.depth.asks.slice(0, 3).map((l) => Number(l[1])));
    expect(b).toMatchObject({ depth: 3, sequence: sim.rest.depth.lastUpdateId, ts: RECEIVED }); // no exchange time on a REST snapshot
    expect(valid('book', b)).toBe(true);
  });

  it('exchangeInfo market → instrument with tick and step sizes', () => {
    const i = normalizeInstrument('sim', ex.market('BTC/USDT') as NonNullable<Market>, TICK_SIZE, RECEIVED);
    expect(i).toEqual({ exchange: 'sim', symbol: 'BTC/USDT', ts: RECEIVED, received_at: RECEIVED, base: 'BTC', quote: 'USDT', type: 'spot', active: true, price_increment: 0.01, amount_increment: 0.00001, min_amount: 0.00001, exchange_symbol: 'BTCUSDT' });
    expect(valid('instrument', i)).toBe(true);
  });
});

describe('real exchange payloads as documented', () => {
  it('Binance trade and aggTrade events (buyer maker → taker sold; else bought)', () => {
    const ex = new ccxt.pro.binance();
    const market = { id: 'BNBBTC', symbol: 'BNB/BTC', base: 'BNB', quote: 'BTC', type: 'spot', spot: true } as never;
    const t = normalizeTrade('binance', (ex as unknown as Any).parseWsTrade!(real.binance.wsTrade, market) as never, RECEIVED)!;
    expect(t).toMatchObject({ symbol: 'BNB/BTC', id: '12345', side: 'sell', price: 0.001, amount: 100, ts: 1672515782136000 });
    const a = normalizeTrade('binance', (ex as unknown as Any).parseWsTrade!(real.binance.wsAggTrade, market) as never, RECEIVED)!;
    expect(a).toMatchObject({ id: '12345', side: 'buy' });
  });

  it('Binance 24hrTicker and a REST kline', () => {
    const ex = new ccxt.pro.binance();
    const t = normalizeTicker('binance', (ex as unknown as Any).parseWsTicker!(real.binance.ws24hrTicker, 'spot') as never, RECEIVED, 'ETH/BTC');
    expect(t).toMatchObject({ bid: 0.019122, bid_size: 4.104, ask: 0.019125, ask_size: 0.001, last: 0.019125, open_24h: 0.019165, base_volume_24h: 173518.119, quote_volume_24h: 3332.40703994, ts: 1579485597842000 });
    const row = (ex as unknown as Any).parseOHLCV!(real.binance.restKline) as OHLCV;
    expect(normalizeCandle('binance', 'BNB/BTC', '1w', row, true, RECEIVED)).toMatchObject({ ts: 1499040000000000, open: 0.0163479, high: 0.8, low: 0.015758, close: 0.015771, volume: 148976.11427815 });
  });

  it('OKX trade, ticker and candle (its `confirm` flag is dropped by ccxt, like Binance `x`)', () => {
    const ex = new ccxt.okx();
    const market = real.okx.market as never;
    expect(normalizeTrade('okx', (ex as unknown as Any).parseTrade!(real.okx.trade, market) as never, RECEIVED)).toEqual({
      exchange: 'okx',
      symbol: 'BTC/USDT',
      ts: 1621446178316000,
      received_at: RECEIVED,
      id: '15826757',
      side: 'sell',
      price: 0.07065,
      amount: 0.119501,
    });
    const t = normalizeTicker('okx', (ex as unknown as Any).parseTicker!(real.okx.ticker, market) as never, RECEIVED);
    expect(t).toMatchObject({ symbol: 'BTC/USDT', bid: 8888.88, bid_size: 5, ask: 9999.99, ask_size: 11, last: 9999.99, open_24h: 9000, high_24h: 10000, ts: 1597026383085000 });
    const row = (ex as unknown as Any).parseOHLCV!(real.okx.candle, market) as OHLCV;
    expect(normalizeCandle('okx', 'BTC/USDT', '1m', row, false, RECEIVED)).toMatchObject({ ts: 1678928760000000, open: 24341.4, close: 24323, volume: 628 });
  });

  it('Kraken: REST trades have no id (deterministic hash); tickers have no time (receive time) and no bid size per se', () => {
    const ex = new ccxt.kraken();
    const market = real.kraken.market as never;
    const parsed = (ex as unknown as Any).parseTrade!(real.kraken.restTrade, market) as never;
    const t = normalizeTrade('kraken', parsed, RECEIVED)!;
    expect(t).toMatchObject({ symbol: 'BTC/USD', ts: 1541390792763000, side: 'sell', price: 0.03231, amount: 4.28169434 });
    expect(t.id).toMatch(/^h[0-9a-f]{20}$/);
    expect(normalizeTrade('kraken', (ex as unknown as Any).parseTrade!(real.kraken.restTrade, market) as never, RECEIVED + 1)!.id).toBe(t.id);
    const k = normalizeTicker('kraken', (ex as unknown as Any).parseTicker!(real.kraken.restTicker, market) as never, RECEIVED);
    expect(k).toMatchObject({ symbol: 'BTC/USD', ts: RECEIVED, bid: 2431.37, ask: 2432.77, last: 2430.58, open_24h: 2571.56 });
    expect(valid('ticker', k)).toBe(true);
  });
});

describe('edge cases', () => {
  it('missing numbers are null, never 0 or NaN; unknown side is unknown', () => {
    const t = normalizeTicker('x', { symbol: 'A/B', timestamp: undefined, bid: undefined, ask: NaN, last: 1 } as never, RECEIVED);
    expect(t).toMatchObject({ ts: RECEIVED, bid: null, ask: null, last: 1, bid_size: null, quote_volume_24h: null });
    expect(normalizeTrade('x', { symbol: 'A/B', id: '1', timestamp: 5, price: 1, amount: 2, side: undefined } as never, RECEIVED)!.side).toBe('unknown');
    expect(normalizeTrade('x', { symbol: 'A/B', id: '1', timestamp: 5, price: undefined, amount: 2 } as never, RECEIVED)).toBeUndefined();
    expect(normalizeCandle('x', 'A/B', '1m', [1, 2, 3, 1, 2, undefined] as never, true, RECEIVED)).toBeUndefined();
  });

  it('a trade id is the exchange one, else a hash of time, price, amount and side', () => {
    expect(tradeId({ id: '42', timestamp: 1, price: 1, amount: 1, side: 'buy' })).toBe('42');
    const a = tradeId({ id: undefined as never, timestamp: 1, price: 1, amount: 1, side: 'buy' });
    expect(a).toBe(tradeId({ id: '' as never, timestamp: 1, price: 1, amount: 1, side: 'buy' }));
    expect(a).not.toBe(tradeId({ id: undefined as never, timestamp: 1, price: 1, amount: 1, side: 'sell' }));
  });

  it('precision → increment in every ccxt precision mode', () => {
    expect(increment(0.01, TICK_SIZE)).toBe(0.01);
    expect(increment(3, DECIMAL_PLACES)).toBe(0.001);
    expect(increment(5, SIGNIFICANT_DIGITS)).toBeNull();
    expect(increment(undefined, TICK_SIZE)).toBeNull();
  });
});
