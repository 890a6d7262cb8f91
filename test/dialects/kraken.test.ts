/**
 * The gateway end to end against the sim's Kraken dialect: the real ccxt.kraken / ccxt.pro.kraken
 * (REST `/0/public/*`, websocket v2) into the real Kafka, with the generic adapter (Kraken's
 * `fetchTrades(since)` honours `since`, so trades are refilled by time).
 *
 * 1. Websocket dropped every few seconds (each drop once every trade stream is back from the last
 *    and delivering, so each drop is one outage whatever the load): every trade the sim emitted
 *    lands once (refilled over REST after each drop), each drop is one gap opened and closed,
 *    closed candles equal the sim's, every ticker stored is one the sim sent and none twice in a
 *    row (Kraken's ticker has no exchange time, and each resubscription starts with a snapshot),
 *    books are whole.
 * 2. Tickers polled over REST with a quiet market: stored once per change, not once per poll
 *    (issue 13: a ticker without an exchange time used to be stored on every poll).
 * 3. The websocket refused (HTTP 403) for 8 s while REST answers: trades fall back to polling
 *    `fetchTrades(since)` and return to the websocket; every trade once, the switches name the
 *    URL and the status.
 * Figures are printed: trades emitted vs stored, duplicates, gap records, time to recover.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway, type GatewayReport } from '../../gateways/index.ts';
import { RECORD_KINDS } from '../../schemas/index.ts';
import { buildSim, type Sim, type SimTicker } from '../../sim/index.ts';
import { expectClosedCandlesLikeSim, feedRefusedWhileRestAnswers } from '../harness/dialects.ts';
import { gatewayConfig, simOptions, sleep, tradeStreams, uniquePrefix } from '../harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from '../harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USD'];
const LOOKBACK_MIN = 20;
const DROPS = 4;
const EVERY_MS = 3_000;

type StoredTicker = Decoded['ticker'][number];
const storedContent = (t: StoredTicker) => JSON.stringify([t.bid, t.bid_size, t.ask, t.ask_size, t.last, t.open_24h, t.high_24h, t.low_24h, t.base_volume_24h]);
const simContent = (t: SimTicker) => JSON.stringify([t.bid, t.bidVolume, t.ask, t.askVolume, t.last, t.open, t.high, t.low, t.baseVolume]);

describe('gateway → Kafka against the Kraken dialect, websocket dropped every few seconds', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwkraken');
  let sim: Sim;
  let gw: Gateway;
  let report: GatewayReport;
  let got: Decoded;
  let startVirtual = 0;
  const lastIdAtClose: Record<string, number> = {};
  const downMs = new Map<string, number[]>();

  beforeAll(async () => {
    // 60x virtual clock: a 1m candle closes every real second; ~120 trades per real second per symbol.
    sim = buildSim({ seed: 21, symbols: SYMBOLS, tradesPerSecond: 2, speed: 60, historyDays: 1, tickerPushIntervalMs: 60_000, dialects: ['kraken'] });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      {
        id: 'kraken',
        name: 'krsim',
        symbols: SYMBOLS,
        channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] }, book: { depth: 10, intervalMs: 500 } },
        backfillLookbackMinutes: LOOKBACK_MIN,
        options: simOptions(sim, 'kraken'),
      },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      const k = `${e.channel} ${e.symbol}`;
      downMs.set(k, [...(downMs.get(k) ?? []), e.downMs]);
    });
    const trades = tradeStreams(gw.events, SYMBOLS);
    startVirtual = sim.now();
    report = await gw.start();
    await sleep(4_000);
    for (let i = 0; i < DROPS; i++) {
      await trades.live();
      sim.dropConnections('abrupt');
      trades.dropped();
      await sleep(EVERY_MS);
    }
    await trades.live(); // the last outage closed before the gateway does
    for (const s of SYMBOLS) lastIdAtClose[s] = sim.emitted.trades(s).at(-1)!.id;
    await gw.close();
    got = await readTopics(brokers, prefix, RECORD_KINDS);
    for (const s of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === s);
      const ids = mine.map((t) => Number(t.id));
      const first = Math.min(...ids);
      const emitted = sim.emitted.trades(s, { fromId: first }).filter((t) => t.id <= Math.max(...ids)).length;
      const gaps = got.gap.filter((g) => g.symbol === s && g.channel === 'trades');
      const closed = gaps.filter((g) => g.to_ts !== null);
      console.log(
        `kraken ${s}: trades emitted ${emitted} (first..last stored) vs stored ${mine.length}, duplicates ${mine.length - new Set(ids).size}; ` +
          `trade gaps opened ${gaps.length - closed.length}, closed ${closed.length}, refilled ${closed.reduce((a, g) => a + (g.refilled ?? 0), 0)}; ` +
          `time to recover (ms, gateway clock): trades ${downMs.get(`trades ${s}`)?.join(', ')}; ticker ${downMs.get(`ticker ${s}`)?.join(', ')}; book ${downMs.get(`book ${s}`)?.join(', ')}; ` +
          `gap records (all channels) ${got.gap.filter((g) => g.symbol === s).length}`,
      );
    }
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('starts the entry without problems, every channel on the websocket', () => {
    expect(report.problems).toEqual([]);
    expect(report.workers).toEqual([{ name: 'krsim', status: 'running', symbols: SYMBOLS, channels: ['trades:ws', 'ticker:ws', 'ohlcv:ws', 'book:ws'] }]);
  });

  it('trades: every trade the sim emitted, once, fields equal, across the drops', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      expect(mine.every((t) => t.exchange === 'krsim' && t.key === `krsim:${symbol}`)).toBe(true);
      const ids = mine.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const first = ids[0]!;
      const last = ids.at(-1)!;
      expect(last - first + 1).toBe(ids.length); // Kraken trade ids are consecutive: nothing missing
      expect(last).toBeGreaterThan(lastIdAtClose[symbol]! - 300);
      expect(ids.length).toBeGreaterThan(1000);
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      const byId = new Map(mine.map((t) => [Number(t.id), t]));
      expect(want.map((t) => byId.get(t.id)).map((t) => ({ id: t!.id, ts: t!.ts, price: t!.price, amount: t!.amount, side: t!.side }))).toEqual(
        want.map((t) => ({ id: String(t.id), ts: t.timestamp * 1000, price: t.price, amount: t.amount, side: t.side })),
      );
    }
  });

  it('each drop is one trade gap, opened and closed, refilled over REST', () => {
    for (const symbol of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades');
      const opened = gaps.filter((g) => g.to_ts === null);
      const closed = gaps.filter((g) => g.to_ts !== null);
      expect(opened).toHaveLength(DROPS);
      expect(closed).toHaveLength(DROPS);
      for (const g of closed) expect(g.reason).not.toMatch(/not refilled|incomplete|missing|unknown/);
      expect(closed.reduce((a, g) => a + (g.refilled ?? 0), 0)).toBeGreaterThan(0);
    }
  });

  it('candles: each closed bucket once and equal to the sim, contiguous from the lookback start', () => {
    for (const symbol of SYMBOLS) {
      const ts = expectClosedCandlesLikeSim(got.candle, sim, symbol);
      expect(ts[0]!).toBeLessThanOrEqual(startVirtual - (LOOKBACK_MIN - 5) * 60_000);
      const lastSimClosed = sim.emitted.candles(symbol, '1m', { includeHistory: true }).filter((c) => c.closed).at(-1)!.timestamp;
      expect(ts.at(-1)!).toBeGreaterThanOrEqual(lastSimClosed - 3 * 60_000);
    }
  });

  it('tickers: each stored one is a ticker the sim sent; none stored twice in a row (no exchange time: deduped by content)', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.ticker.filter((t) => t.symbol === symbol).sort((a, b) => a.received_at - b.received_at);
      expect(mine.length).toBeGreaterThanOrEqual(5);
      const sent = new Set(sim.emitted.tickers(symbol, 'ws').map(simContent));
      for (const t of mine) expect(sent.has(storedContent(t))).toBe(true);
      const repeats = mine.filter((t, i) => i > 0 && storedContent(t) === storedContent(mine[i - 1]!));
      expect(repeats).toEqual([]);
    }
  });

  it('books: whole top-10 snapshots, bid below ask', () => {
    for (const symbol of SYMBOLS) {
      const books = got.book.filter((b) => b.symbol === symbol);
      expect(books.length).toBeGreaterThanOrEqual(10);
      for (const b of books) {
        expect(b.depth).toBe(10);
        expect(b.bids).toHaveLength(10);
        expect(b.asks).toHaveLength(10);
        expect(b.bids[0]!.price).toBeLessThan(b.asks[0]!.price);
      }
    }
    expect(got.instrument.map((i) => [i.symbol, i.exchange_symbol, i.base, i.quote, i.type, i.active])).toEqual(
      expect.arrayContaining([
        ['BTC/USDT', 'XBTUSDT', 'BTC', 'USDT', 'spot', true],
        ['ETH/USD', 'XETHZUSD', 'ETH', 'USD', 'spot', true],
      ]),
    );
  });
});

describe('gateway → Kafka against the Kraken dialect, tickers polled over REST in a quiet market', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwkrtick');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;

  beforeAll(async () => {
    sim = buildSim({ seed: 22, symbols: ['BTC/USDT'], tradesPerSecond: 5, historyDays: 1, dialects: ['kraken'] });
    await sim.start();
    sim.setTradeRate(0); // no trades: the ticker changes only when the book's best level is resized
    const config = gatewayConfig(brokers, prefix, [
      { id: 'kraken', name: 'krpoll', symbols: ['BTC/USDT'], channels: { ticker: { mode: 'poll', schedule: '* * * * * *' } }, backfillLookbackMinutes: 0, options: simOptions(sim, 'kraken') },
    ]);
    gw = buildGateway(config);
    await gw.start();
    await sleep(9_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['ticker']);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('stores a ticker once per change, not once per poll', () => {
    const polled = sim.emitted.tickers('BTC/USDT', 'rest');
    const changes = polled.filter((t, i) => i === 0 || simContent(t) !== simContent(polled[i - 1]!));
    const stored = got.ticker.filter((t) => t.symbol === 'BTC/USDT');
    console.log(`kraken tickers polled every second, no trades: ${polled.length} polls, ${changes.length} changes, ${stored.length} stored`);
    expect(polled.length - changes.length).toBeGreaterThanOrEqual(3); // polls that brought nothing new happened
    expect(stored.map(storedContent)).toEqual(changes.map(simContent));
  });
});

describe('gateway → Kafka against the Kraken dialect, the websocket refused while REST answers', () => {
  const SYMBOL = 'BTC/USDT';
  const r = feedRefusedWhileRestAnswers({ dialect: 'kraken', name: 'krfall', markets: [{ symbol: SYMBOL }], seed: 23, tradesPerSecond: 40 });

  it('falls back to polling naming the websocket URL and 403, and returns to the websocket', () => {
    expect(r.switches.map((s) => s.to)).toEqual(['poll', 'ws']);
    expect(r.switches[0]!.status).toBe(403);
    expect(r.switches[0]!.url).toContain('/kraken/v2');
  });

  it('every trade once, contiguous, polled by time while the websocket was refused', () => {
    const ids = r.engineIds(SYMBOL).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
    expect(r.missing(SYMBOL)).toEqual([]);
    expect(r.during(SYMBOL)).toBeGreaterThan(40 * 3);
  });
});
