/**
 * A dropped stream is data: the sim drops the trade stream and refuses it for several seconds
 * while trades go on. The gateway publishes a gap record when the outage starts (to_ts null)
 * and one when it ends (to_ts set, refilled = trades recovered over REST), and after the refill
 * every trade the sim emitted is in Kafka exactly once. Candles after a gap are filled from
 * REST, so each closed bucket is still there once and equal.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { registry } from '../core/metrics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const PAUSE_MS = 4_000;

describe('a dropped trade stream, refilled', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwgap');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  let pausedAt = 0;
  const resumed: { symbol: string; refilled: number }[] = [];

  beforeAll(async () => {
    // 10x clock: 1m candles close every 6 s, so the pause swallows a bucket boundary.
    sim = buildSim({ seed: 3, symbols: SYMBOLS, tradesPerSecond: 8, speed: 10, historyDays: 1 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {}, ohlcv: { timeframes: ['1m'] } }, backfillLookbackMinutes: 5, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      if (e.channel === 'trades') resumed.push({ symbol: e.symbol, refilled: e.refilled });
    });
    await gw.start();
    await sleep(3_000);
    pausedAt = sim.now();
    sim.pauseStream('trades', PAUSE_MS);
    sim.pauseStream('kline', PAUSE_MS);
    await sleep(PAUSE_MS + 6_000);
    await gw.close();
    got = await readTopics(brokers, prefix, RECORD_KINDS);
  }, 90_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('publishes an open and a closing gap record per symbol', () => {
    for (const symbol of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades');
      expect(gaps).toHaveLength(2);
      const [open, close] = gaps.sort((a, b) => a.ts - b.ts) as [(typeof gaps)[0], (typeof gaps)[0]];
      expect(open).toMatchObject({ exchange: 'sim', to_ts: null, refilled: 0, key: `sim:${symbol}` });
      expect(open.reason).toMatch(/^trades: watchTrades\(.+\): binance NetworkError \(ws:\/\/\S+\)/);
      expect(close.from_ts).toBe(open.from_ts);
      expect(close.to_ts).toBeGreaterThan(close.from_ts);
      // From the last trade before the drop to the first one after it, by the exchange's clock.
      expect(close.from_ts / 1000).toBeLessThanOrEqual(pausedAt + 1_000);
      expect((close.to_ts! - close.from_ts) / 1000).toBeGreaterThanOrEqual(PAUSE_MS * 10 * 0.8);
      // 8 trades per virtual second for at least PAUSE_MS * 10 virtual ms.
      expect(close.refilled).toBeGreaterThan(8 * PAUSE_MS * 10 * 0.7 / 1000);
      expect(resumed.find((r) => r.symbol === symbol)?.refilled).toBe(close.refilled);
    }
  });

  it('every trade the sim emitted is in Kafka exactly once, fields equal', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      const ids = mine.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const first = ids[0]!;
      const last = ids.at(-1)!;
      expect(last - first + 1).toBe(ids.length);
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      expect(want.length).toBe(ids.length);
      const byId = new Map(mine.map((t) => [Number(t.id), t]));
      for (const t of want) {
        const k = byId.get(t.id)!;
        expect([k.ts, k.price, k.amount, k.side]).toEqual([t.timestamp * 1000, t.price, t.amount, t.side]);
      }
      // The outage is inside the range produced.
      expect(want.some((t) => t.timestamp > pausedAt + 1_000 && t.timestamp < pausedAt + PAUSE_MS * 10 - 1_000)).toBe(true);
    }
  });

  it('candle buckets missed during the outage are filled: each closed bucket once, equal, contiguous', () => {
    for (const symbol of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'ohlcv');
      expect(gaps.length).toBe(2);
      expect(gaps.find((g) => g.to_ts !== null)!.refilled).toBeGreaterThanOrEqual(1);
      const closed = got.candle.filter((c) => c.symbol === symbol && c.closed).sort((a, b) => a.ts - b.ts);
      const ts = closed.map((c) => c.ts / 1000);
      expect(new Set(ts).size).toBe(ts.length);
      for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBe(60_000);
      // Closed buckets reach past the outage: the one forming at the drop was closed from REST.
      expect(ts.at(-1)! + 60_000).toBeGreaterThan(pausedAt + PAUSE_MS * 10);
      expect(ts[0]!).toBeLessThan(pausedAt - 60_000);
      const simCandles = new Map(sim.emitted.candles(symbol, '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
      for (const c of closed) {
        const s = simCandles.get(c.ts / 1000)!;
        expect([c.open, c.high, c.low, c.close, c.volume]).toEqual([s.open, s.high, s.low, s.close, s.volume]);
      }
    }
  });

  it('metrics count messages, reconnects, gaps and refilled trades per exchange and channel, and the produce latency', async () => {
    const get = async (name: string) => (await registry.getSingleMetric(name)!.get()).values;
    const val = async (name: string, labels: Record<string, string>) =>
      (await get(name)).filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
    expect(await val('tickflow_gateway_messages_total', { exchange: 'sim', channel: 'trades' })).toBeGreaterThan(100);
    expect(await val('tickflow_gateway_messages_total', { exchange: 'sim', channel: 'ohlcv' })).toBeGreaterThan(10);
    expect(await val('tickflow_gateway_gaps_total', { exchange: 'sim', channel: 'trades' })).toBe(2); // one per symbol
    expect(await val('tickflow_gateway_reconnects_total', { exchange: 'sim', channel: 'trades' })).toBeGreaterThanOrEqual(2);
    const refilled = got.gap.filter((g) => g.channel === 'trades' && g.to_ts !== null).reduce((n, g) => n + g.refilled, 0);
    expect(await val('tickflow_gateway_refilled_records_total', { exchange: 'sim', channel: 'trades' })).toBe(refilled);
    const latency = await get('tickflow_gateway_produce_latency_seconds');
    expect(latency.find((v) => (v as { metricName?: string }).metricName === 'tickflow_gateway_produce_latency_seconds_count')!.value).toBeGreaterThan(got.trade.length - 1);
    expect((await get('tickflow_gateway_buffered_records')).some((v) => v.labels.exchange === 'sim')).toBe(true);
  });
});
