/**
 * A websocket refused (HTTP 403) while REST answers: the sim drops every websocket and refuses
 * new ones for a while. Each `mode: ws` stream falls back to polling over REST (logged once with
 * the websocket's URL and status), keeps producing meanwhile (trades with refill: every trade,
 * once; candles from REST: each closed bucket once, equal to the sim's), and streams again once
 * the websocket is accepted. Before the fix the streams only
 * retried the websocket: nothing reached Kafka while it was refused, and no line named the URL.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../config/schema.ts';
import type { GatewayEventMap } from '../gateways/events.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOL = 'BTC/USDT';
const REFUSE_MS = 15_000;

type Fallback = GatewayEventMap['stream.fallback'] & { at: number };

describe('a websocket refused while REST answers', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwfall');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  const switches: Fallback[] = [];
  let refusedAt = 0;
  let acceptedAt = 0;

  beforeAll(async () => {
    // 10x clock: 1m candles close every 6 s, so buckets close while polling and after.
    sim = buildSim({ seed: 13, symbols: [SYMBOL], tradesPerSecond: 2, speed: 10, historyDays: 1 });
    await sim.start();
    const config = parseConfig(
      {
        kafka: { brokers: [...brokers], topicPrefix: prefix, partitions: 2 },
        gateway: { wsFallback: { afterMs: 0, pollIntervalMs: 1_000, probeInitialMs: 2_000, probeMaxMs: 4_000 } },
        exchanges: [{ id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] } }, backfillLookbackMinutes: 3, options: simOptions(sim) }],
      },
      { env: {} },
    );
    gw = buildGateway(config);
    gw.events.on('stream.fallback', (e) => switches.push({ ...e, at: Date.now() }));
    await gw.start();
    await sleep(3_000);
    refusedAt = Date.now();
    sim.refuseWebsocket(REFUSE_MS, 403);
    sim.dropConnections('abrupt');
    await sleep(REFUSE_MS);
    acceptedAt = Date.now();
    await until(() => switches.filter((s) => s.to === 'ws').length >= 3, 20_000, 'both streams back on the websocket');
    await sleep(3_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'ticker', 'candle', 'gap']);
    for (const s of switches) {
      const t = s.to === 'poll' ? `${s.at - refusedAt} ms after the refusal began` : `${s.at - acceptedAt} ms after the websocket was accepted again`;
      console.log(`ws fallback: ${s.channel} to ${s.to} ${t} (${s.url ?? '?'} ${s.status ?? ''})`);
    }
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('each stream falls back once, naming the websocket URL and its HTTP status, and returns once', () => {
    for (const channel of ['trades', 'ticker', 'ohlcv'] as const) {
      const mine = switches.filter((s) => s.channel === channel);
      expect(mine.map((s) => s.to)).toEqual(['poll', 'ws']);
      expect(mine[0]!.status).toBe(403);
      expect(mine[0]!.url).toMatch(new RegExp(`^${sim.ccxtOptions().urls.api.ws.spot}`));
      expect(mine[0]!.reason).toContain('HTTP 403');
      expect(mine[0]!.at).toBeLessThan(acceptedAt);
      expect(mine[1]!.at).toBeGreaterThanOrEqual(acceptedAt);
    }
  });

  const during = (receivedAtUs: number) => receivedAtUs / 1000 > refusedAt + 3_000 && receivedAtUs / 1000 < acceptedAt;

  it('trades, tickers and candles keep reaching Kafka while the websocket is refused', () => {
    expect(got.trade.filter((t) => during(t.received_at)).length).toBeGreaterThan(20 * 5);
    expect(got.ticker.filter((t) => during(t.received_at)).length).toBeGreaterThan(3);
  });

  it('every trade the sim emitted is in Kafka exactly once, across both switches', () => {
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    const want = sim.emitted.trades(SYMBOL, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!);
    expect(ids.length).toBe(want.length);
  });

  it('closed candles: each bucket once, contiguous, equal to the sim\'s, across both switches', () => {
    const closed = got.candle.filter((c) => c.closed).sort((a, b) => a.ts - b.ts);
    const ts = closed.map((c) => c.ts / 1000);
    expect(new Set(ts).size).toBe(ts.length);
    for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBe(60_000);
    expect(closed.filter((c) => during(c.received_at)).length).toBeGreaterThanOrEqual(1);
    const simCandles = new Map(sim.emitted.candles(SYMBOL, '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
    for (const c of closed) {
      const s = simCandles.get(c.ts / 1000)!;
      expect([c.open, c.high, c.low, c.close, c.volume]).toEqual([s.open, s.high, s.low, s.close, s.volume]);
    }
  });

  it('gap records: the outage before the first poll only, refilled in full, naming URL and status; none for the way back', () => {
    const trades = got.gap.filter((g) => g.channel === 'trades');
    const opened = trades.filter((g) => g.to_ts === null);
    const closed = trades.filter((g) => g.to_ts !== null);
    expect(opened).toHaveLength(1);
    expect(closed).toHaveLength(1);
    expect(closed[0]!.refilled).toBeGreaterThan(0);
    expect(closed[0]!.reason).not.toMatch(/not refilled|incomplete|missing/);
    expect(closed[0]!.reason).toContain(sim.ccxtOptions().urls.api.ws.spot);
    for (const g of got.gap) expect(g.ts / 1000).toBeLessThan(acceptedAt);
  });
});

/**
 * The same on an exchange whose REST trades page backwards from the newest (OKX: history-trades
 * by id), busy enough that one poll interval holds more than a hundred pages: each poll refills
 * from the last trade produced before producing its page, so every trade is kept, once. (A poll
 * that took the newest pages up to a cap lost the older ones silently.)
 */
describe('a websocket refused while REST answers, on a busy exchange paging backwards (OKX)', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwfallokx');
  let sim: Sim;
  let got: Decoded;
  let polled = 0;

  beforeAll(async () => {
    sim = buildSim({ seed: 17, symbols: [SYMBOL], tradesPerSecond: 5, historyDays: 0, dialects: ['okx'] });
    await sim.start();
    const config = parseConfig(
      {
        kafka: { brokers: [...brokers], topicPrefix: prefix, partitions: 2 },
        gateway: { wsFallback: { afterMs: 0, pollIntervalMs: 4_000, probeInitialMs: 60_000 } },
        exchanges: [{ id: 'okx', name: 'okxfall', symbols: [SYMBOL], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim, 'okx') }],
      },
      { env: {} },
    );
    const gw = buildGateway(config);
    gw.events.on('stream.messages', (e) => void (e.channel === 'trades' && polled++));
    try {
      await gw.start();
      await sleep(2_000);
      sim.applyFault({ kind: 'refuse', target: 'ws', ms: 60_000, status: 403, dialect: 'okx' });
      sim.dropConnections('abrupt');
      await until(() => polled > 0, 10_000, 'the first trade poll');
      // 5,000 trades a second for 2 polls: ~200 pages of 100 per poll interval.
      sim.setTradeRate(5_000);
      await sleep(8_500);
      sim.setTradeRate(5);
      await sleep(6_000);
    } finally {
      await gw.close();
    }
    got = await readTopics(brokers, prefix, ['trade', 'gap']);
  }, 120_000);

  afterAll(async () => {
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('keeps every trade, once, while polling', () => {
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    const want = sim.emitted.trades(SYMBOL, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!);
    expect(want.length).toBeGreaterThan(30_000);
    expect(ids.length).toBe(want.length);
    for (const g of got.gap.filter((x) => x.to_ts !== null)) expect(g.reason).not.toMatch(/may be missing|not refilled|incomplete/);
  });
});
