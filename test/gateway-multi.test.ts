/**
 * Many instruments per gateway process, on the real ccxt against the sim and the real broker:
 * `symbols: "*\/USDT"` resolved from the exchange's markets, one multi-symbol subscription per
 * channel (Binance and OKX dialects), every trade of every instrument in Kafka exactly once
 * across a dropped connection that carried all of them (each instrument its own gap, refilled),
 * and a markets re-check that starts a new listing and ends a delisted market with a gap record.
 */
import type { Market } from 'ccxt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createExchange } from '../gateways/ccxt.ts';
import { buildGateway, type Gateway, type GatewayDeps } from '../gateways/index.ts';
import { buildSim, type DialectName, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, tradeStreams, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const N = 60;
const USDT = Array.from({ length: N }, (_, i) => `T${String(i).padStart(2, '0')}/USDT`);
/** Not selected by the pattern. */
const OTHER = 'T00/BTC';
const KINDS = ['trade', 'ticker', 'gap', 'instrument'] as const;

function tradesOnceLikeSim(got: Decoded, sim: Sim, exchange: string, symbol: string): void {
  const ids = got.trade.filter((t) => t.exchange === exchange && t.symbol === symbol).map((t) => Number(t.id));
  expect(new Set(ids).size, `${symbol}: duplicates`).toBe(ids.length);
  expect(ids.length, `${symbol}: no trades`).toBeGreaterThan(0);
  const sorted = [...ids].sort((a, b) => a - b);
  const want = sim.emitted.trades(symbol, { fromId: sorted[0]! }).filter((t) => t.id <= sorted.at(-1)!).map((t) => t.id);
  expect(sorted, `${symbol}: trades missing between the first and the last in Kafka`).toEqual(want);
}

describe.each<[DialectName, string]>([
  ['binance', 'binance'],
  ['okx', 'okx'],
])('%s: %i instruments on multi-symbol subscriptions', (dialect, id) => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix(`gwmulti${dialect}`);
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  let connections: number;
  let subscriptions: Record<string, number>;

  beforeAll(async () => {
    sim = buildSim({ seed: 11, symbols: [...USDT, OTHER], tradesPerSecond: 1, historyDays: 0, dialects: [dialect] });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id, name: 'sim', symbols: ['*/USDT'], channels: { trades: {}, ticker: {} }, backfillLookbackMinutes: 0, options: simOptions(sim, dialect) },
    ]);
    gw = buildGateway(config);
    const streams = tradeStreams(gw.events, USDT);
    const report = await gw.start();
    expect(report.problems).toEqual([]);
    await streams.live(60_000);
    connections = sim.stats().ws.connections!;
    subscriptions = gw.workers[0]!.subscriptions();
    // One drop of the connections that carry every instrument: each one's own gap, refilled.
    sim.dropConnections('abrupt');
    streams.dropped();
    await streams.live(60_000);
    await sleep(2_000);
    await gw.close();
    got = await readTopics(brokers, prefix, [...KINDS]);
  }, 180_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('resolves "*/USDT" to the listed USDT pairs only, and publishes them as instruments', () => {
    expect(gw.report().workers[0]!.symbols.toSorted()).toEqual(USDT);
    expect(new Set(got.instrument.map((i) => i.symbol))).toEqual(new Set(USDT));
  });

  it('carries all of them on one subscription, one connection, per channel', () => {
    console.log(`${dialect}: ${N} instruments × trades + ticker: ${connections} websocket connection(s), subscriptions ${JSON.stringify(subscriptions)}`);
    expect(subscriptions).toEqual({ trades: 1, ticker: 1 });
    // Binance: a connection per subscription; OKX: one connection for every public channel.
    expect(connections).toBeLessThanOrEqual(2);
  });

  it('every trade of every instrument in Kafka exactly once, the dropped connection refilled per instrument', () => {
    for (const s of USDT) tradesOnceLikeSim(got, sim, 'sim', s);
    for (const s of USDT) {
      const gaps = got.gap.filter((g) => g.symbol === s && g.channel === 'trades');
      const closed = gaps.filter((g) => g.to_ts !== null);
      expect(gaps.filter((g) => g.to_ts === null), `${s}: one open gap for the drop`).toHaveLength(1);
      expect(closed, `${s}: one closed gap for the drop`).toHaveLength(1);
      expect(closed[0]!.reason).not.toMatch(/not refilled|incomplete|missing/);
    }
  });

  it('every instrument has tickers', () => {
    const withTickers = new Set(got.ticker.map((t) => t.symbol));
    for (const s of USDT) expect(withTickers.has(s), `${s}: no ticker`).toBe(true);
  });
});

describe('markets re-check: a new listing starts, a delisted market ends with a gap record', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwlisting');
  const SYMBOLS = ['A1/USDT', 'A2/USDT', 'A3/USDT', 'A4/USDT'];
  const LISTED_LATER = 'A4/USDT';
  const DELISTED = 'A2/USDT';
  let sim: Sim;
  let gw: Gateway;
  let got: Decoded;
  /** The markets the wrapped ccxt instance reports (the sim serves all four throughout). */
  let hidden = new Set([LISTED_LATER]);
  const changes: { listed: readonly string[]; delisted: readonly string[] }[] = [];

  beforeAll(async () => {
    sim = buildSim({ seed: 12, symbols: SYMBOLS, tradesPerSecond: 3, historyDays: 0, dialects: ['binance'] });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: ['*/USDT'], marketsRecheckMs: 1_000, channels: { trades: {}, ticker: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    const create: GatewayDeps['createExchange'] = (entry, defaults) => {
      const ex = createExchange(entry, defaults);
      const fetchMarkets = ex.fetchMarkets.bind(ex);
      ex.fetchMarkets = async (params?: Record<string, unknown>) => ((await fetchMarkets(params)) as Market[]).filter((m) => !hidden.has(m!.symbol));
      return ex;
    };
    gw = buildGateway(config, { createExchange: create });
    gw.events.on('instruments.changed', (e) => void changes.push(e));
    await gw.start();
    expect(gw.report().workers[0]!.symbols).toEqual(['A1/USDT', 'A2/USDT', 'A3/USDT']);
    await sleep(3_000);
    hidden = new Set([DELISTED]); // A4 listed, A2 delisted
    await until(() => changes.some((c) => c.listed.includes(LISTED_LATER)), 10_000, 'the listing picked up');
    await until(() => gw.report().workers[0]!.symbols.length === 3 && !gw.report().workers[0]!.symbols.includes(DELISTED), 10_000, 'the delisting');
    const streams = tradeStreams(gw.events, [LISTED_LATER]);
    await streams.live(30_000);
    await sleep(3_000);
    await gw.close();
    got = await readTopics(brokers, prefix, [...KINDS]);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('the new listing is published and streamed from the re-check on', () => {
    expect(gw.report().workers[0]!.symbols.toSorted()).toEqual(['A1/USDT', 'A3/USDT', 'A4/USDT']);
    expect(got.instrument.map((i) => i.symbol)).toContain(LISTED_LATER);
    tradesOnceLikeSim(got, sim, 'sim', LISTED_LATER);
    expect(got.gap.filter((g) => g.symbol === LISTED_LATER)).toEqual([]);
  });

  it('the delisted market ends with one open-ended gap record per channel naming the delisting, and nothing after it', () => {
    const gaps = got.gap.filter((g) => g.symbol === DELISTED);
    expect(gaps.map((g) => g.channel).toSorted()).toEqual(['ticker', 'trades']);
    for (const g of gaps) {
      expect(g.to_ts).toBeNull();
      expect(g.reason).toMatch(/delisted: A2\/USDT is no longer listed by binance/);
    }
    const endedAt = Math.max(...gaps.map((g) => g.ts));
    expect(got.trade.filter((t) => t.symbol === DELISTED && t.received_at > endedAt)).toEqual([]);
    // Its trades up to the delisting are complete.
    tradesOnceLikeSim(got, sim, 'sim', DELISTED);
  });

  it('the instruments that stayed have no gap', () => {
    for (const s of ['A1/USDT', 'A3/USDT']) {
      expect(got.gap.filter((g) => g.symbol === s)).toEqual([]);
      tradesOnceLikeSim(got, sim, 'sim', s);
    }
  });
});
