/**
 * An exchange that is down when the gateway starts: the sim answers every REST call with 503
 * for the first seconds, so `loadMarkets` fails. The gateway reports it as a warning, keeps
 * asking, and once the exchange answers the entry is running and its trades reach Kafka
 * (ccxt 4.5 hands back the first, rejected `loadMarkets()` promise to every later call; before
 * the fix the entry never left `starting`).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway, type GatewayReport } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const REFUSE_MS = 15_000;
const KINDS = ['trade', 'instrument', 'gap'] as const;

describe('an exchange down at start-up', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwdown');
  let sim: Sim;
  let gw: Gateway;
  let startReport: GatewayReport;
  let answeringAt = 0;
  let readyAt = 0;
  let got: Decoded;

  beforeAll(async () => {
    sim = buildSim({ seed: 21, symbols: ['BTC/USDT'], tradesPerSecond: 10, historyDays: 0 });
    await sim.start();
    sim.refuseService(REFUSE_MS, 503);
    answeringAt = Date.now() + REFUSE_MS;
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('exchange.ready', () => (readyAt = Date.now()));
    startReport = await gw.start();
    await until(() => readyAt > 0, REFUSE_MS + 30_000, 'the entry to run once the exchange answers');
    console.log(`exchange down at start: answering after ${REFUSE_MS} ms, running ${readyAt - answeringAt} ms later`);
    await sleep(3_000);
    await gw.close();
    got = await readTopics(brokers, prefix, KINDS);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'instrument', 'gap', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('reports the unreachable exchange as a warning while it waits', () => {
    expect(startReport.workers[0]!.status).toBe('starting');
    expect(startReport.problems.some((p) => p.severity === 'warning' && p.code === 'EXCHANGE_NETWORK' && /cannot load markets yet/.test(p.message))).toBe(true);
  });

  it('runs once the exchange answers, and its instruments and trades reach Kafka', () => {
    expect(readyAt).toBeGreaterThanOrEqual(answeringAt);
    expect(gw.report().workers[0]!.status).toBe('stopped');
    expect(got.instrument.map((i) => i.symbol)).toEqual(['BTC/USDT']);
    expect(got.trade.length).toBeGreaterThan(10);
    // What Kafka has is what the sim emitted from there on, contiguous and each once.
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
  });
});
