/**
 * The websocket and REST go down together, and REST stays down well past the stream's return
 * (longer than the six attempts, ~3-6 s, a refill used to get): the refill keeps trying until
 * REST answers, then the gap is closed with what came back. Every trade the sim emitted reaches
 * Kafka exactly once, and the closing gap record says how many were refilled. Real sim, real
 * ccxt, real Kafka.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const PAUSE_MS = 3_000;
const REFUSE_MS = 16_000;

describe('a refill during a REST outage', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwrefill');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  let outageAt = 0;
  let answeringAt = 0;
  const resumed = new Map<string, { at: number; refilled: number; note?: string }>();
  const retries: { symbol: string; reason: string }[] = [];

  beforeAll(async () => {
    sim = buildSim({ seed: 17, symbols: SYMBOLS, tradesPerSecond: 8, historyDays: 0 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      if (e.channel === 'trades') resumed.set(e.symbol, { at: Date.now(), refilled: e.refilled, ...(e.note ? { note: e.note } : {}) });
    });
    gw.events.on('refill.retry', (e) => retries.push({ symbol: e.symbol, reason: e.reason }));
    await gw.start();
    await sleep(3_000);
    outageAt = sim.now();
    sim.pauseStream('trades', PAUSE_MS);
    sim.refuseService(REFUSE_MS, 503);
    answeringAt = Date.now() + REFUSE_MS;
    await until(() => SYMBOLS.every((s) => resumed.has(s)), REFUSE_MS + 40_000, 'both trade streams to resume');
    for (const s of SYMBOLS) console.log(`refill outage: ${s} gap closed ${resumed.get(s)!.at - answeringAt} ms after REST answered, ${resumed.get(s)!.refilled} refilled`);
    await sleep(2_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'gap']);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('retries the refill while REST refuses, and closes the gap once REST answers', () => {
    for (const symbol of SYMBOLS) {
      expect(retries.filter((r) => r.symbol === symbol).length).toBeGreaterThan(1);
      expect(retries.find((r) => r.symbol === symbol)!.reason).toMatch(/ExchangeNotAvailable/);
      expect(resumed.get(symbol)!.at).toBeGreaterThanOrEqual(answeringAt);
      expect(resumed.get(symbol)!.note).toBeUndefined();
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades').sort((a, b) => a.ts - b.ts);
      expect(gaps).toHaveLength(2);
      const [open, close] = gaps as [(typeof gaps)[0], (typeof gaps)[0]];
      expect(open.to_ts).toBeNull();
      expect(close.from_ts).toBe(open.from_ts);
      // to_ts: the first trade the stream delivered again (after PAUSE_MS); REST answered only
      // after REFUSE_MS and the refill reached up to then.
      expect(close.to_ts! / 1000).toBeGreaterThan(outageAt + PAUSE_MS * 0.8);
      expect(close.refilled).toBeGreaterThan((8 * REFUSE_MS * 0.6) / 1000);
      expect(close.refilled).toBe(resumed.get(symbol)!.refilled);
      expect(close.reason).not.toMatch(/not refilled|incomplete|missing/);
    }
  });

  it('every trade the sim emitted is in Kafka exactly once, across the outage', () => {
    for (const symbol of SYMBOLS) {
      const mine = got.trade.filter((t) => t.symbol === symbol);
      const ids = mine.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const first = ids[0]!;
      const last = ids.at(-1)!;
      const want = sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last);
      expect(ids.length).toBe(want.length);
      expect(last - first + 1).toBe(ids.length);
      const byId = new Map(mine.map((t) => [Number(t.id), t]));
      for (const t of want) expect([byId.get(t.id)?.ts, byId.get(t.id)?.price]).toEqual([t.timestamp * 1000, t.price]);
      // The outage is inside what was produced.
      expect(want.some((t) => t.timestamp < outageAt)).toBe(true);
      expect(want.some((t) => t.timestamp > outageAt + REFUSE_MS + 1_000)).toBe(true);
    }
  });
});
