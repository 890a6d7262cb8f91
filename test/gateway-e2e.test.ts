/**
 * The gateway end to end: the real ccxt (REST and pro websocket) against the sim, into the
 * real Kafka. Decoding the topics gives exactly what the sim emitted: every trade once with its
 * fields, every closed candle once and equal (history backfill and stream), every websocket
 * ticker once and equal; forming candles at most once a second; instruments and book tops.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway, type GatewayReport } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';
import { RECORD_KINDS } from '../schemas/index.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const LOOKBACK_MIN = 30;

describe('gateway → Kafka, against the sim', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwe2e');
  let sim: Sim;
  let gw: Gateway;
  let report: GatewayReport;
  let got: Decoded;
  let startVirtual = 0;
  let lastIdAtClose: Record<string, number> = {};

  beforeAll(async () => {
    // 60x virtual clock: a 1m candle closes every real second; one full ticker per real second.
    sim = buildSim({ seed: 7, symbols: SYMBOLS, tradesPerSecond: 2, speed: 60, historyDays: 1, tickerPushIntervalMs: 60_000 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      {
        id: 'binance',
        name: 'sim',
        symbols: SYMBOLS,
        channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] }, book: { depth: 5, intervalMs: 500 } },
        backfillLookbackMinutes: LOOKBACK_MIN,
        options: simOptions(sim),
      },
    ]);
    gw = buildGateway(config);
    startVirtual = sim.now();
    report = await gw.start();
    await sleep(10_000);
    lastIdAtClose = Object.fromEntries(SYMBOLS.map((s) => [s, sim.emitted.trades(s).at(-1)!.id]));
    await gw.close();
    got = await readTopics(brokers, prefix, RECORD_KINDS);
  }, 90_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('starts the entry without problems', () => {
    expect(report.problems).toEqual([]);
    expect(report.workers).toEqual([{ name: 'sim', status: 'running', symbols: SYMBOLS, channels: ['trades:ws', 'ticker:ws', 'ohlcv:ws', 'book:ws'] }]);
  });

  it('trades: every trade the sim emitted while subscribed, once, fields equal', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      expect(mine.every((t) => t.exchange === 'sim' && t.key === `sim:${symbol}`)).toBe(true);
      const ids = mine.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const first = ids[0]!;
      const last = ids.at(-1)!;
      expect(last - first + 1).toBe(ids.length); // contiguous: nothing missing in between
      expect(ids.length).toBeGreaterThan(500);
      expect(last).toBeGreaterThan(lastIdAtClose[symbol]! - 200); // ran until the close
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      const byId = new Map(mine.map((t) => [Number(t.id), t]));
      expect(want.map((t) => byId.get(t.id)).map((t) => ({ id: t!.id, ts: t!.ts, price: t!.price, amount: t!.amount, side: t!.side }))).toEqual(
        want.map((t) => ({ id: String(t.id), ts: t.timestamp * 1000, price: t.price, amount: t.amount, side: t.side })),
      );
      expect(mine.every((t) => t.received_at > 0 && t.received_at !== t.ts)).toBe(true);
    }
  });

  it('candles: each closed bucket once and equal to the sim, contiguous from the lookback start', () => {
    for (const symbol of SYMBOLS) {
      const closed = got.candle.filter((c) => c.symbol === symbol && c.closed).sort((a, b) => a.ts - b.ts);
      const ts = closed.map((c) => c.ts / 1000);
      expect(new Set(ts).size).toBe(ts.length);
      for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBe(60_000);
      // The lookback counts from the exchange clock when the history starts (a moment after start).
      expect(ts[0]!).toBeLessThanOrEqual(startVirtual - (LOOKBACK_MIN - 5) * 60_000);
      const simCandles = new Map(sim.emitted.candles(symbol, '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
      const lastSimClosed = [...simCandles.values()].filter((c) => c.closed).at(-1)!.timestamp;
      expect(ts.at(-1)!).toBeGreaterThanOrEqual(lastSimClosed - 3 * 60_000);
      for (const c of closed) {
        const s = simCandles.get(c.ts / 1000)!;
        expect(s.closed).toBe(true);
        expect({ o: c.open, h: c.high, l: c.low, c: c.close, v: c.volume, tf: c.timeframe }).toEqual({ o: s.open, h: s.high, l: s.low, c: s.close, v: s.volume, tf: '1m' });
      }
      // Forming updates: at most one per second per symbol/timeframe.
      const forming = got.candle.filter((c) => c.symbol === symbol && !c.closed).sort((a, b) => a.received_at - b.received_at);
      expect(forming.length).toBeGreaterThan(0);
      for (let i = 1; i < forming.length; i++) expect(forming[i]!.received_at - forming[i - 1]!.received_at).toBeGreaterThanOrEqual(999_000);
    }
  });

  it('tickers: every websocket ticker the sim pushed while subscribed, once, fields equal', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.ticker.filter((t) => t.symbol === symbol).sort((a, b) => a.ts - b.ts);
      expect(mine.length).toBeGreaterThanOrEqual(5);
      const first = mine[0]!.ts / 1000;
      const last = mine.at(-1)!.ts / 1000;
      const want = sim.emitted.tickers(symbol, 'ws').filter((t) => t.timestamp >= first && t.timestamp <= last);
      expect(mine.map((t) => ({ ts: t.ts, bid: t.bid, bid_size: t.bid_size, ask: t.ask, ask_size: t.ask_size, last: t.last, o: t.open_24h, h: t.high_24h, l: t.low_24h, bv: t.base_volume_24h, qv: t.quote_volume_24h }))).toEqual(
        want.map((t) => ({ ts: t.timestamp * 1000, bid: t.bid, bid_size: t.bidVolume, ask: t.ask, ask_size: t.askVolume, last: t.last, o: t.open, h: t.high, l: t.low, bv: t.baseVolume, qv: t.quoteVolume })),
      );
    }
  });

  it('instruments and top-of-book snapshots; no gaps on a healthy run', () => {
    expect(got.instrument.map((i) => [i.symbol, i.exchange_symbol, i.base, i.quote, i.type, i.active])).toEqual(
      expect.arrayContaining([
        ['BTC/USDT', 'BTCUSDT', 'BTC', 'USDT', 'spot', true],
        ['ETH/USDT', 'ETHUSDT', 'ETH', 'USDT', 'spot', true],
      ]),
    );
    expect(got.instrument.find((i) => i.symbol === 'BTC/USDT')).toMatchObject({ price_increment: 0.01, amount_increment: 0.00001, min_amount: 0.00001 });
    for (const symbol of SYMBOLS) {
      const books = got.book.filter((b) => b.symbol === symbol);
      expect(books.length).toBeGreaterThanOrEqual(10);
      for (const b of books) {
        expect(b.depth).toBe(5);
        expect(b.bids).toHaveLength(5);
        expect(b.asks).toHaveLength(5);
        expect(b.bids[0]!.price).toBeLessThan(b.asks[0]!.price);
        expect(b.sequence).toBeGreaterThan(0);
      }
    }
    expect(got.gap).toEqual([]);
  });
});
