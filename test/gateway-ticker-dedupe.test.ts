/**
 * Tickers polled from an exchange whose tickers carry no time (Kraken, Bybit; here the sim's
 * Binance REST with quirk `tickerWithoutTime`): a poll that answers the same content is not a new
 * ticker. Each content is stored once, stamped with the time it was first received; once the
 * exchange gives a time again (ccxt's `timestamp`, Binance's `closeTime`), the ticker carries it.
 * Real sim, real ccxt, real Kafka.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim, type SimTicker } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOL = 'BTC/USDT';

const content = (t: Pick<SimTicker, 'bid' | 'bidVolume' | 'ask' | 'askVolume' | 'last' | 'open' | 'high' | 'low' | 'baseVolume' | 'quoteVolume'>) =>
  [t.bid, t.bidVolume, t.ask, t.askVolume, t.last, t.open, t.high, t.low, t.baseVolume, t.quoteVolume].join('|');

describe('tickers polled from an exchange that gives them no time', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwticker');
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  /** REST tickers served before the exchange time came back. */
  let servedWithoutTime = 0;

  beforeAll(async () => {
    // Trades stop: only the book's resting sizes change now and then, so polls often see the same ticker.
    sim = buildSim({ seed: 29, symbols: [SYMBOL], tradesPerSecond: 5, historyDays: 0 });
    await sim.start();
    await sleep(1_000);
    sim.setTradeRate(0);
    sim.applyFault({ kind: 'quirk', quirk: 'tickerWithoutTime', ms: 600_000 });
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { ticker: { mode: 'poll', schedule: '* * * * * *' } }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    await gw.start();
    await sleep(8_500);
    servedWithoutTime = sim.emitted.tickers(SYMBOL, 'rest').length;
    sim.clearFaults();
    sim.setTradeRate(5);
    await sleep(4_000);
    await gw.close();
    got = await readTopics(brokers, prefix, ['ticker']);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('stores each content once: no repeat on every poll', () => {
    const served = sim.emitted.tickers(SYMBOL, 'rest');
    // Runs of the same content, as the polls saw them.
    const runs: { first: SimTicker; index: number }[] = [];
    served.forEach((t, index) => {
      if (runs.length === 0 || content(runs.at(-1)!.first) !== content(t)) runs.push({ first: t, index });
    });
    expect(served.length).toBeGreaterThan(6);
    expect(runs.length).toBeLessThan(served.length); // polls did repeat a content
    const stored = got.ticker.filter((t) => t.symbol === SYMBOL).sort((a, b) => a.received_at - b.received_at);
    expect(stored.map((t) => [t.bid, t.bid_size, t.ask, t.ask_size, t.last, t.open_24h, t.high_24h, t.low_24h, t.base_volume_24h, t.quote_volume_24h].join('|'))).toEqual(
      runs.map((r) => content(r.first)),
    );
    // The time: first-seen receive time without an exchange time, else the exchange's (closeTime).
    stored.forEach((t, i) => {
      if (runs[i]!.index < servedWithoutTime) expect(t.ts).toBe(t.received_at);
      else expect(t.ts).toBe(runs[i]!.first.timestamp * 1000);
    });
    expect(runs.some((r) => r.index >= servedWithoutTime)).toBe(true);
  });
});
