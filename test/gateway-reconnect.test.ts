/**
 * Reconnect backoff: the sim drops every websocket every 5 s. With the gateway's defaults (no
 * `ws.backoff` in the entry) each trade stream is back well within those 5 s every time, so every
 * drop is its own gap, opened and closed, and the trades stay complete in Kafka. With ccxt's own
 * defaults (1 s doubling to 60 s while dials come less than 30 s apart) the fourth drop already
 * kept a stream down 8 s, past the next drop. Durations are printed, not asserted.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const DROPS = 7;
const EVERY_MS = 5_000;

describe('a stream dropped every few seconds', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwrecon');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  const downMs = new Map<string, number[]>(SYMBOLS.map((s) => [s, []]));

  beforeAll(async () => {
    sim = buildSim({ seed: 5, symbols: SYMBOLS, tradesPerSecond: 8, historyDays: 0 });
    await sim.start();
    // The sim's URLs only: the ccxt reconnect backoff is the gateway's default.
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, backfillLookbackMinutes: 0, options: { ...sim.ccxtOptions(), enableRateLimit: false } },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.resumed', (e) => {
      if (e.channel === 'trades') downMs.get(e.symbol)!.push(e.downMs);
    });
    await gw.start();
    await sleep(3_000);
    for (let i = 0; i < DROPS; i++) {
      sim.dropConnections('abrupt');
      await sleep(EVERY_MS);
    }
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'gap']);
    for (const s of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === s && g.channel === 'trades' && g.to_ts !== null);
      const exchangeMs = gaps.map((g) => Math.round((g.to_ts! - g.from_ts) / 1000));
      console.log(`reconnect every ${EVERY_MS} ms, ${s}: down ${downMs.get(s)!.join(', ')} ms (gateway clock); last trade before to first after ${exchangeMs.join(', ')} ms (gap records)`);
    }
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('each drop is one gap, closed before the next drop', () => {
    for (const symbol of SYMBOLS) {
      const gaps = got.gap.filter((g) => g.symbol === symbol && g.channel === 'trades');
      const opened = gaps.filter((g) => g.to_ts === null);
      const closed = gaps.filter((g) => g.to_ts !== null);
      expect(opened).toHaveLength(DROPS);
      expect(closed).toHaveLength(DROPS);
      expect(new Set(closed.map((g) => g.from_ts))).toEqual(new Set(opened.map((g) => g.from_ts)));
      for (const g of closed) expect(g.reason).not.toMatch(/not refilled|incomplete|missing/);
    }
  });

  it('every trade the sim emitted is in Kafka exactly once', () => {
    for (const symbol of SYMBOLS) {
      const ids = got.trade.filter((t) => t.symbol === symbol).map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      const want = sim.emitted.trades(symbol, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!);
      expect(ids.length).toBe(want.length);
      expect(ids.length).toBeGreaterThan(8 * (DROPS * EVERY_MS * 0.8) / 1000);
    }
  });
});
