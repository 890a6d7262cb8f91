/**
 * Refills that cannot reach back to the last trade produced, as on exchanges whose `fetchTrades`
 * ignores `since` (Coinbase Exchange, Bybit): the sim's Binance REST answers only its latest few
 * trades whatever `fromId`/`startTime` say (quirk `ignoreSince`). The trade stream drops for a
 * while; the refill gets the latest trades only, and the closing gap record says how many trades
 * may be missing: exactly the hole left in Kafka (Binance ids are consecutive). Real sim, real
 * ccxt, real Kafka. The generic refill (exchanges/default.ts, by `since`) is checked against the
 * same sim through the real ccxt class.
 */
import ccxt from 'ccxt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { adapterFor, type RefillEnd } from '../gateways/exchanges/index.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const PAUSE_MS = 3_000;
const LATEST = 5;

describe('a refill whose REST answers only the latest trades', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwreach');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  const resumed = new Map<string, { refilled: number; note?: string }>();

  beforeAll(async () => {
    sim = buildSim({ seed: 23, symbols: SYMBOLS, tradesPerSecond: 10, historyDays: 0 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      if (e.channel === 'trades') resumed.set(e.symbol, { refilled: e.refilled, ...(e.note ? { note: e.note } : {}) });
    });
    await gw.start();
    await sleep(2_500);
    sim.applyFault({ kind: 'quirk', quirk: 'ignoreSince', latest: LATEST, ms: 120_000 });
    sim.pauseStream('trades', PAUSE_MS);
    await until(() => SYMBOLS.every((s) => resumed.has(s)), 40_000, 'both trade streams to resume');
    await sleep(2_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'gap']);
  }, 90_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('closes the gap with what was refilled and how many trades may be missing: exactly the hole in Kafka', () => {
    for (const symbol of SYMBOLS) {
      const ids = got.trade.filter((t) => t.symbol === symbol).map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const hole = ids.at(-1)! - ids[0]! + 1 - ids.length;
      expect(hole).toBeGreaterThan(10); // ~3 s of 10 trades a second, minus the latest 5
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades').sort((a, b) => a.ts - b.ts);
      expect(gaps).toHaveLength(2);
      const close = gaps[1]!;
      expect(close.to_ts).not.toBeNull();
      expect(close.refilled).toBeGreaterThan(0);
      expect(close.refilled).toBeLessThanOrEqual(LATEST);
      expect(close.reason).toMatch(/refill could not reach back to the last trade produced \(publicGetAggTrades answered from id \d+ when asked from \d+\)/);
      const counted = Number(/(\d+) trades (?:may be missing|not refilled)/.exec(close.reason)?.[1]);
      expect(counted).toBe(hole);
      expect(resumed.get(symbol)!.note).toBe(close.reason.replace(/^trades: [^;]*; /, ''));
      // Everything the sim emitted in the range is in Kafka or counted as missing.
      const want = sim.emitted.trades(symbol, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!);
      expect(want.length).toBe(ids.length + counted);
    }
  });

  it('the generic refill (by since) through ccxt against the same REST: not reached while it ignores since, reached once it honours it', async () => {
    const ex = new ccxt.binance({ ...simOptions(sim) });
    await ex.loadMarkets();
    sim.clearFaults();
    const recent = await ex.fetchTrades('BTC/USDT', undefined, 60, { fetchTradesMethod: 'publicGetAggTrades' });
    const cursor = recent[0]!; // 60 trades back: further than the latest 5
    sim.applyFault({ kind: 'quirk', quirk: 'ignoreSince', latest: LATEST, ms: 60_000 });
    const drain = async (): Promise<{ first: number; end: RefillEnd | void }> => {
      const gen = adapterFor('kraken').refillTrades(ex, 'BTC/USDT', { id: String(cursor.id), ts: cursor.timestamp! }, { maxPages: 10 });
      let first = Infinity;
      for (;;) {
        const step = await gen.next();
        if (step.done) return { first, end: step.value };
        for (const t of step.value) first = Math.min(first, Number(t.id));
      }
    };
    const ignored = await drain();
    expect(ignored.first).toBeGreaterThan(Number(cursor.id) + 50);
    expect(ignored.first).toBeLessThan(Infinity);
    expect(ignored.end).toMatchObject({ reachedCursor: false });
    sim.clearFaults();
    const honoured = await drain();
    expect(honoured.first).toBe(Number(cursor.id));
    expect(honoured.end).toEqual({ reachedCursor: true });
  });
});

describe('trade polls whose REST answers only the latest trades', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwreachpoll');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;

  beforeAll(async () => {
    sim = buildSim({ seed: 31, symbols: ['BTC/USDT'], tradesPerSecond: 20, historyDays: 0 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: { mode: 'poll', schedule: '*/2 * * * * *' } }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    await gw.start();
    await sleep(4_500);
    sim.applyFault({ kind: 'quirk', quirk: 'ignoreSince', latest: LATEST, ms: 5_000 });
    await sleep(9_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'gap']);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('a poll that cannot reach back opens a gap saying how many trades may be missing; the next poll that reaches back closes it', () => {
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    const hole = ids.at(-1)! - ids[0]! + 1 - ids.length;
    expect(hole).toBeGreaterThan(20); // 2 s of 20 trades a second per poll, minus the latest 5
    const gaps = got.gap.filter((g) => g.channel === 'trades').sort((a, b) => a.ts - b.ts);
    expect(gaps.length).toBeGreaterThanOrEqual(2);
    expect(gaps[0]!.to_ts).toBeNull();
    expect(gaps[0]!.reason).toMatch(/refill could not reach back to the last trade produced \(publicGetAggTrades answered from id \d+ when asked from \d+\): \d+ trades may be missing/);
    expect(gaps.at(-1)!.to_ts).not.toBeNull();
    expect(gaps.at(-1)!.from_ts).toBe(gaps[0]!.from_ts);
  });
});
