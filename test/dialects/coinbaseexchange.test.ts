/**
 * The gateway end to end against the sim's Coinbase Exchange dialect: the real
 * `ccxt.pro.coinbaseexchange` (REST and websocket) into the real Kafka, with every Coinbase
 * websocket dropped every few seconds (the sim's fault control; each drop once every trade stream
 * is back from the last and delivering, so each drop is one outage whatever the load).
 * `fetchTrades` ignores `since`, so what the drops cost is refilled by paging
 * `/products/{id}/trades` back with the `after` trade-id cursor
 * (gateways/exchanges/coinbaseexchange.ts); every trade is stored exactly once, each drop is one
 * gap record, closed. Coinbase streams no candles: the ohlcv channel falls back to polling
 * `fetchOHLCV`, and the closed candles equal the sim's; tickers and books (level2, which ccxt
 * signs: any credentials do) are the sim's. Figures are printed.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway, type GatewayReport } from '../../gateways/index.ts';
import { RECORD_KINDS } from '../../schemas/index.ts';
import { buildSim, type Sim } from '../../sim/index.ts';
import { expectClosedCandlesLikeSim, feedRefusedWhileRestAnswers } from '../harness/dialects.ts';
import { gatewayConfig, simOptions, sleep, tradeStreams, uniquePrefix } from '../harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from '../harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const LOOKBACK_MIN = 30;
const DROPS = 5;
const EVERY_MS = 4_000;

describe('gateway → Kafka against the Coinbase Exchange dialect, websockets dropped every few seconds', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwcoinbase');
  let sim: Sim;
  let gw: Gateway;
  let report: GatewayReport;
  let got: Decoded;
  let lastIdAtClose: Record<string, number> = {};
  const downMs = new Map<string, number[]>();

  beforeAll(async () => {
    // 60x virtual clock: 120 trades per real second per symbol, a 1m candle closes every second.
    sim = buildSim({ seed: 11, symbols: SYMBOLS, tradesPerSecond: 2, speed: 60, historyDays: 1, tickerPushIntervalMs: 60_000, dialects: ['coinbaseexchange'] });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      {
        id: 'coinbaseexchange',
        name: 'cbsim',
        symbols: SYMBOLS,
        // No candle stream on Coinbase: the ohlcv channel polls on its schedule (every second = a virtual minute).
        channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'], schedule: '* * * * * *' }, book: { depth: 5, intervalMs: 500 } },
        backfillLookbackMinutes: LOOKBACK_MIN,
        // ccxt signs its level2 subscription: any credentials do for the sim.
        options: { ...simOptions(sim, 'coinbaseexchange'), apiKey: 'sim', secret: 'c2lt', password: 'sim' },
      },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      const k = `${e.channel} ${e.symbol}`;
      downMs.set(k, [...(downMs.get(k) ?? []), e.downMs]);
    });
    const trades = tradeStreams(gw.events, SYMBOLS);
    report = await gw.start();
    await sleep(3_000);
    for (let i = 0; i < DROPS; i++) {
      await trades.live();
      sim.applyFault({ kind: 'drop', how: 'abrupt', dialect: 'coinbaseexchange' });
      trades.dropped();
      await sleep(EVERY_MS);
    }
    await trades.live();
    // One longer outage (the matches channel paused 2.5 s, ~300 trades a symbol): the refill pages back over several cursor pages.
    sim.applyFault({ kind: 'pause', channel: 'trades', ms: 2_500, dialect: 'coinbaseexchange' });
    await sleep(EVERY_MS + 2_000);
    await trades.live(); // any outage closed before the gateway closes
    lastIdAtClose = Object.fromEntries(SYMBOLS.map((s) => [s, sim.emitted.trades(s).at(-1)!.id]));
    await gw.close();
    got = await readTopics(brokers, prefix, RECORD_KINDS);

    for (const s of SYMBOLS) {
      const ids = got.trade.filter((t) => t.symbol === s).map((t) => Number(t.id));
      const first = Math.min(...ids);
      const last = Math.max(...ids);
      const emitted = sim.emitted.trades(s, { fromId: first }).filter((t) => t.id <= last).length;
      const closed = got.gap.filter((g) => g.symbol === s && g.channel === 'trades' && g.to_ts !== null);
      const recover = downMs.get(`trades ${s}`) ?? [];
      console.log(
        `coinbaseexchange ${s}: trades emitted ${emitted} (first to last stored id), stored ${ids.length}, duplicates ${ids.length - new Set(ids).size}, ` +
          `trade gaps ${closed.length} closed (refilled ${closed.map((g) => g.refilled).join(', ')}), time to recover ${recover.join(', ')} ms; ` +
          `candles closed ${got.candle.filter((c) => c.symbol === s && c.closed).length}, tickers ${got.ticker.filter((t) => t.symbol === s).length}, books ${got.book.filter((b) => b.symbol === s).length}`,
      );
    }
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('starts the entry on the websockets; ohlcv (no candle stream on Coinbase) polls, with a warning saying so', () => {
    expect(report.problems).toEqual([expect.objectContaining({ channel: 'ohlcv', code: 'CHANNEL_UNSUPPORTED', severity: 'warning' })]);
    expect(report.workers).toEqual([{ name: 'cbsim', status: 'running', symbols: SYMBOLS, channels: ['trades:ws', 'ticker:ws', 'ohlcv:poll', 'book:ws'] }]);
  });

  it('trades: every trade once across the drops, ids numeric and contiguous, fields equal to the sim', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      expect(mine.every((t) => t.exchange === 'cbsim' && t.key === `cbsim:${symbol}` && /^\d+$/.test(t.id))).toBe(true);
      const ids = mine.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const first = ids[0]!;
      const last = ids.at(-1)!;
      expect(last - first + 1).toBe(ids.length);
      expect(ids.length).toBeGreaterThan(1_000);
      expect(last).toBeGreaterThan(lastIdAtClose[symbol]! - 300);
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      const byId = new Map(mine.map((t) => [Number(t.id), t]));
      expect(want.map((t) => byId.get(t.id)).map((t) => ({ id: t!.id, ts: t!.ts, price: t!.price, amount: t!.amount, side: t!.side }))).toEqual(
        want.map((t) => ({ id: String(t.id), ts: t.timestamp * 1000, price: t.price, amount: t.amount, side: t.side })),
      );
    }
  });

  it('each drop is a trades gap record, closed, with the refilled trades counted and no note of loss', () => {
    for (const symbol of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades');
      const closed = gaps.filter((g) => g.to_ts !== null);
      expect(closed.length).toBeGreaterThanOrEqual(DROPS);
      expect(closed.length).toBeLessThanOrEqual(DROPS + 2);
      expect(closed.some((g) => (g.refilled ?? 0) > 0)).toBe(true);
      // The pause: more than one page of 100 refilled by the `after` cursor.
      expect(Math.max(...closed.map((g) => g.refilled ?? 0))).toBeGreaterThan(100);
      for (const g of closed) expect(g.reason).not.toMatch(/may be missing|not refilled|incomplete/);
    }
  });

  it('candles: each closed bucket once, contiguous from the lookback, equal to the sim', () => {
    for (const symbol of SYMBOLS) {
      const ts = expectClosedCandlesLikeSim(got.candle, sim, symbol);
      expect(ts.length).toBeGreaterThan(LOOKBACK_MIN);
    }
  });

  it('tickers: each stored once and equal to a ticker the sim pushed', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.ticker.filter((t) => t.symbol === symbol);
      expect(mine.length).toBeGreaterThanOrEqual(8);
      expect(new Set(mine.map((t) => t.ts)).size).toBe(mine.length);
      const pushed = new Map(sim.emitted.tickers(symbol, 'ws').map((t) => [t.timestamp * 1000, t]));
      for (const t of mine) {
        const w = pushed.get(t.ts)!;
        expect({ bid: t.bid, bid_size: t.bid_size, ask: t.ask, ask_size: t.ask_size, last: t.last, o: t.open_24h, h: t.high_24h, l: t.low_24h, bv: t.base_volume_24h }).toEqual({
          bid: w.bid,
          bid_size: w.bidVolume,
          ask: w.ask,
          ask_size: w.askVolume,
          last: w.last,
          o: w.open,
          h: w.high,
          l: w.low,
          bv: w.baseVolume,
        });
      }
    }
  });

  it('instruments and book tops (level2: snapshot, then l2update), equal to a book the sim had', () => {
    expect(got.instrument.map((i) => [i.symbol, i.exchange_symbol, i.base, i.quote, i.type, i.active])).toEqual(
      expect.arrayContaining([
        ['BTC/USDT', 'BTC-USDT', 'BTC', 'USDT', 'spot', true],
        ['ETH/USDT', 'ETH-USDT', 'ETH', 'USDT', 'spot', true],
      ]),
    );
    expect(got.instrument.find((i) => i.symbol === 'BTC/USDT')).toMatchObject({ price_increment: 0.01, amount_increment: 0.00001 });
    for (const symbol of SYMBOLS) {
      const books = got.book.filter((b) => b.symbol === symbol);
      expect(books.length).toBeGreaterThanOrEqual(10);
      for (const b of books) {
        expect(b.depth).toBe(5);
        expect(b.bids).toHaveLength(5);
        expect(b.asks).toHaveLength(5);
        expect(b.bids[0]!.price).toBeLessThan(b.asks[0]!.price);
      }
      // The stored tops follow the sim's prices: the last one is near the sim's last trade.
      const last = books.at(-1)!;
      const lastTrade = sim.emitted.trades(symbol).at(-1)!.price;
      expect(Math.abs(last.bids[0]!.price - lastTrade) / lastTrade).toBeLessThan(0.01);
    }
  });
});

/**
 * The Coinbase feed refused (HTTP 403) while REST answers: trades fall back to polling
 * `/products/{id}/trades`, which ignores `since`, so each poll pages back by the `after` cursor to
 * the last trade produced; every trade is kept once, and the stream returns to the websocket.
 */
describe('gateway → Kafka against the Coinbase Exchange dialect, the feed refused while REST answers', () => {
  const SYMBOL = 'BTC/USDT';
  const r = feedRefusedWhileRestAnswers({ dialect: 'coinbaseexchange', name: 'cbfall', markets: [{ symbol: SYMBOL }], seed: 19, tradesPerSecond: 40 });

  it('falls back to polling naming the feed URL and 403, and returns to the websocket', () => {
    expect(r.switches.map((s) => s.to)).toEqual(['poll', 'ws']);
    expect(r.switches[0]!.status).toBe(403);
    expect(r.switches[0]!.url).toContain('/coinbaseexchange/ws-feed');
  });

  it('every trade once, contiguous, polled by cursor while the feed was refused', () => {
    const ids = r.engineIds(SYMBOL).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
    expect(r.during(SYMBOL)).toBeGreaterThan(40 * 3);
  });
});
