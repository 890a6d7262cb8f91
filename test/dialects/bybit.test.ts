/**
 * The gateway end to end against the sim's Bybit dialect: the real `ccxt.bybit` / `ccxt.pro.bybit`
 * (spot BTC/USDT, ETH/USDT and the linear perpetual BTC/USDT:USDT) into the real Kafka, while the
 * sim drops every websocket every few seconds (each drop once every trade stream is back from the
 * last and delivering, so each drop is one outage whatever the load) and once keeps the trade
 * streams down for 3 s.
 *
 * Bybit's REST cannot reach back (`recent-trade` returns only the latest 60 spot / 1000 linear
 * trades, whatever `since`), so after an outage longer than those cover the gateway cannot refill
 * everything. What must hold: every trade stored is one the sim emitted, once and equal; and every
 * trade missing lies inside a trade gap record that says trades may be missing there (and, where
 * it gives a count, no more are missing than it says). Closed candles equal the sim's; tickers
 * equal what the sim pushed; books are sane. Figures are printed.
 *
 * And the websockets refused (HTTP 403) for 8 s while REST answers: trades fall back to polling
 * `recent-trade` and return to the websockets. The linear market's REST reaches back 1000 trades:
 * every trade once. Spot's returns the latest 60 only: whatever is missing lies inside gap records
 * that say trades may be missing; at 20 trades a second a 1 s poll of 60 keeps up, so nothing is.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../../gateways/index.ts';
import { RECORD_KINDS } from '../../schemas/index.ts';
import { engineIdOfSpot, tradeIdOf, type Category } from '../../sim/dialects/bybit/wire.ts';
import { buildSim, type Sim, type SimTrade } from '../../sim/index.ts';
import { marketSpec } from '../../sim/market.ts';
import { expectClosedCandlesLikeSim, feedRefusedWhileRestAnswers } from '../harness/dialects.ts';
import { gatewayConfig, simOptions, sleep, tradeStreams, uniquePrefix } from '../harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from '../harness/topics.ts';

/** [unified symbol in tickflow, the engine symbol behind it, Bybit category] */
const MARKETS: ReadonlyArray<readonly [string, string, Category]> = [
  ['BTC/USDT', 'BTC/USDT', 'spot'],
  ['ETH/USDT', 'ETH/USDT', 'spot'],
  ['BTC/USDT:USDT', 'BTC/USDT', 'linear'],
];
const DROPS = 4;
const DROP_EVERY_MS = 3_000;
const OUTAGE_MS = 3_000;

type GapRec = Decoded['gap'][number];

/** What a closed trade gap says about trades it could not bring back: unknown (undefined), none (0) or at most n. */
function mayBeMissing(g: GapRec): number | 'unknown' | 0 {
  const extra = (g as unknown as Record<string, unknown>).missing;
  if (typeof extra === 'number') return extra;
  const counted = /(\d+) trades? (?:not refilled|may be missing|missing)/.exec(g.reason);
  if (counted) return Number(counted[1]);
  return /not refilled|may be missing|missing|cannot reach|could not reach|incomplete/i.test(g.reason) ? 'unknown' : 0;
}

describe('gateway → Kafka against the Bybit dialect (spot + linear), websocket dropped every few seconds', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwbybit');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  const downMs = new Map<string, number[]>(MARKETS.map(([s]) => [s, []]));

  beforeAll(async () => {
    // 60x virtual clock: a 1m candle closes every real second, a ticker per real second;
    // 0.5 trades per virtual second = 30 per real second per symbol.
    sim = buildSim({ seed: 11, symbols: ['BTC/USDT', 'ETH/USDT'], tradesPerSecond: 0.5, speed: 60, historyDays: 1, tickerPushIntervalMs: 60_000 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      {
        id: 'bybit',
        name: 'bybit',
        symbols: MARKETS.map(([s]) => s),
        channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] }, book: { depth: 5, intervalMs: 500 } },
        backfillLookbackMinutes: 20,
        options: simOptions(sim, 'bybit'),
      },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      if (e.channel === 'trades') downMs.get(e.symbol)?.push(e.downMs);
    });
    const trades = tradeStreams(gw.events, MARKETS.map(([s]) => s));
    await gw.start();
    await sleep(4_000);
    for (let i = 0; i < DROPS; i++) {
      await trades.live();
      sim.applyFault({ kind: 'drop', how: 'abrupt', dialect: 'bybit' });
      trades.dropped();
      await sleep(DROP_EVERY_MS);
    }
    await trades.live();
    // Longer than Bybit's spot recent-trade reaches back (60 trades = 2 s here).
    sim.applyFault({ kind: 'pause', channel: 'trades', ms: OUTAGE_MS, dialect: 'bybit' });
    await sleep(OUTAGE_MS + 15_000);
    await gw.close();
    got = await readTopics(brokers, prefix, RECORD_KINDS);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  /** The sim's trades behind `unified`, by the id Bybit printed for them. */
  function emittedById(engineSymbol: string, category: Category): Map<string, SimTrade> {
    const spec = marketSpec(engineSymbol);
    return new Map(sim.emitted.trades(engineSymbol).map((t) => [tradeIdOf(category, spec, t.id), t]));
  }

  it('trades: stored once, equal to the sim; whatever is missing lies inside gap records that say so', () => {
    const failures: string[] = [];
    for (const [unified, engineSymbol, category] of MARKETS) {
      const mine = got.trade.filter((t) => t.symbol === unified);
      const byId = emittedById(engineSymbol, category);
      const ids = mine.map((t) => t.id);
      const duplicates = ids.length - new Set(ids).size;
      const engineIds = [...new Set(ids)].map((id) => byId.get(id)?.id).filter((x): x is number => x !== undefined);
      expect(engineIds.length).toBe(new Set(ids).size); // every stored id is one the sim printed
      for (const t of mine) {
        const s = byId.get(t.id)!;
        expect({ ts: t.ts, price: t.price, amount: t.amount, side: t.side, exchange: t.exchange }).toEqual({ ts: s.timestamp * 1000, price: s.price, amount: s.amount, side: s.side, exchange: 'bybit' });
      }
      const first = Math.min(...engineIds);
      const last = Math.max(...engineIds);
      const stored = new Set(engineIds);
      const missing = sim.emitted.trades(engineSymbol, { fromId: first }).filter((t) => t.id <= last && !stored.has(t.id));
      const gaps = got.gap.filter((g) => g.symbol === unified && g.channel === 'trades' && g.to_ts !== null);
      // Missing trades per gap that covers them; a missing trade no gap covers is unaccounted for.
      const perGap = new Map<GapRec, number>();
      let unaccounted = 0;
      for (const m of missing) {
        const us = m.timestamp * 1000;
        const g = gaps.find((x) => x.from_ts <= us && us <= x.to_ts!);
        if (g) perGap.set(g, (perGap.get(g) ?? 0) + 1);
        else unaccounted++;
      }
      const claims = gaps.map(mayBeMissing);
      const recover = downMs.get(unified)!;
      console.log(
        `bybit ${category} ${unified}: emitted ${last - first + 1} (ids ${first}..${last}), stored ${stored.size}, duplicates ${duplicates}, missing ${missing.length}` +
          ` (outside any gap ${unaccounted}); gap records ${gaps.length} (say missing: ${claims.join(', ')}; refilled ${gaps.map((g) => g.refilled).join(', ')});` +
          ` time to recover ${recover.join(', ')} ms`,
      );
      expect(duplicates).toBe(0);
      expect(stored.size).toBeGreaterThan(300);
      if (unaccounted > 0) failures.push(`${unified}: ${unaccounted} trades missing outside any gap record`);
      for (const [g, n] of perGap) {
        const said = mayBeMissing(g);
        if (said === 0 || (typeof said === 'number' && said < n)) failures.push(`${unified}: ${n} trades missing in a gap whose record says ${said === 0 ? 'nothing is' : `${said} are`} (${g.reason}; refilled ${g.refilled})`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('the websocket drops were gaps, opened and closed', () => {
    for (const [unified] of MARKETS) {
      const gaps = got.gap.filter((g) => g.symbol === unified && g.channel === 'trades');
      expect(gaps.filter((g) => g.to_ts === null).length).toBeGreaterThanOrEqual(DROPS);
      expect(gaps.filter((g) => g.to_ts !== null).length).toBe(gaps.filter((g) => g.to_ts === null).length);
    }
  });

  it('candles: each closed bucket once and equal to the sim (spot and linear)', () => {
    for (const [unified, engineSymbol] of MARKETS) {
      const ts = expectClosedCandlesLikeSim(got.candle, sim, unified, engineSymbol);
      expect(ts.length).toBeGreaterThan(20);
    }
  });

  it('tickers: each stored websocket ticker equals the one the sim pushed at that time (spot without book fields)', () => {
    for (const [unified, engineSymbol, category] of MARKETS) {
      const mine = got.ticker.filter((t) => t.symbol === unified);
      expect(mine.length).toBeGreaterThanOrEqual(5);
      const want = new Map(sim.emitted.tickers(engineSymbol, 'ws').map((t) => [t.timestamp * 1000, t]));
      for (const t of mine) {
        const w = want.get(t.ts)!;
        expect(w).toBeDefined();
        expect({ last: t.last, o: t.open_24h, h: t.high_24h, l: t.low_24h, bv: t.base_volume_24h, qv: t.quote_volume_24h }).toEqual({ last: w.last, o: w.open, h: w.high, l: w.low, bv: w.baseVolume, qv: w.quoteVolume });
        if (category === 'linear') expect({ bid: t.bid, ask: t.ask }).toEqual({ bid: w.bid, ask: w.ask });
        else expect(t.bid).toBeNull();
      }
      expect(new Set(mine.map((t) => t.ts)).size).toBe(mine.length);
    }
  });

  it('books: top 5 levels, bid below ask; instruments for spot and the perpetual', () => {
    for (const [unified] of MARKETS) {
      const books = got.book.filter((b) => b.symbol === unified);
      expect(books.length).toBeGreaterThanOrEqual(10);
      for (const b of books) {
        expect(b.bids).toHaveLength(5);
        expect(b.asks).toHaveLength(5);
        expect(b.bids[0]!.price).toBeLessThan(b.asks[0]!.price);
      }
    }
    expect(got.instrument.map((i) => [i.symbol, i.exchange_symbol, i.type])).toEqual(
      expect.arrayContaining([
        ['BTC/USDT', 'BTCUSDT', 'spot'],
        ['BTC/USDT:USDT', 'BTCUSDT', 'swap'],
      ]),
    );
  });
});

describe('gateway → Kafka against the Bybit dialect (spot + linear), the websockets refused while REST answers', () => {
  const RATE = 20; // a 1 s poll of spot's latest 60 keeps up
  let linearIds: Map<string, number> | undefined;
  const r = feedRefusedWhileRestAnswers({
    dialect: 'bybit',
    name: 'byfall',
    markets: [
      { symbol: 'BTC/USDT', engineSymbol: 'BTC/USDT', engineId: engineIdOfSpot },
      {
        symbol: 'BTC/USDT:USDT',
        engineSymbol: 'BTC/USDT',
        engineId: (id) => {
          const spec = marketSpec('BTC/USDT');
          linearIds ??= new Map(r.sim.emitted.trades('BTC/USDT').map((t) => [tradeIdOf('linear', spec, t.id), t.id]));
          return linearIds.get(id);
        },
      },
    ],
    seed: 29,
    tradesPerSecond: RATE,
  });

  it('each market falls back to polling naming its websocket URL and 403, and returns to the websocket', () => {
    for (const [symbol, path] of [
      ['BTC/USDT', '/bybit/v5/public/spot'],
      ['BTC/USDT:USDT', '/bybit/v5/public/linear'],
    ] as const) {
      const mine = r.switches.filter((s) => s.symbol === symbol);
      expect(mine.map((s) => s.to)).toEqual(['poll', 'ws']);
      expect(mine[0]!.status).toBe(403);
      expect(mine[0]!.url).toContain(path);
    }
  });

  it('linear (REST reaches back 1000 trades): every trade once, none missing', () => {
    const ids = r.engineIds('BTC/USDT:USDT');
    expect(ids.every((id) => Number.isInteger(id))).toBe(true); // every stored id is one the sim printed
    expect(new Set(ids).size).toBe(ids.length);
    expect(r.missing('BTC/USDT:USDT')).toEqual([]);
    expect(r.during('BTC/USDT:USDT')).toBeGreaterThan(RATE * 3);
  });

  it('spot (REST returns the latest 60): whatever is missing lies inside gaps saying so; at this rate, every trade once', () => {
    const ids = r.engineIds('BTC/USDT');
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const gaps = r.got.gap.filter((g) => g.symbol === 'BTC/USDT' && g.channel === 'trades' && g.to_ts !== null);
    const unaccounted = r.missing('BTC/USDT').filter((m) => !gaps.some((g) => g.from_ts <= m.timestamp * 1000 && m.timestamp * 1000 <= g.to_ts! && mayBeMissing(g) !== 0));
    expect(unaccounted).toEqual([]);
    expect(r.missing('BTC/USDT')).toEqual([]);
    expect(r.during('BTC/USDT')).toBeGreaterThan(RATE * 3);
  });
});
