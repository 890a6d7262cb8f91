/**
 * `--shard i/n` (gateway.shard {index, count}): two gateways built in this process share a sim
 * entry's instruments without coordinating: each runs its own share (slot % n), together all of
 * them, and every trade of the window reaches Kafka once.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { slotOf } from '../gateways/shard.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT'];

describe('static shards: --shard 0/2 and 1/2', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwshardstatic');
  let sim: Sim | undefined;
  const gws: Gateway[] = [];
  afterAll(async () => {
    for (const g of gws) await g.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('each process runs slot % 2 of the instruments; together every one, each trade once', async () => {
    sim = buildSim({ seed: 3, symbols: SYMBOLS, tradesPerSecond: 20, historyDays: 0 });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [{ id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) }]);
    for (const index of [0, 1]) gws.push(buildGateway(config, { brokers, shard: { index, count: 2 } }));
    await Promise.all(gws.map((g) => g.start()));
    const running = (g: Gateway) => [...(g.instrumentSets().get('sim')?.current() ?? [])];
    await until(() => running(gws[0]!).length + running(gws[1]!).length === SYMBOLS.length, 30_000, 'both shards running');
    for (const [index, g] of gws.entries()) expect(running(g).sort()).toEqual(SYMBOLS.filter((s) => slotOf('sim', s, 64) % 2 === index).sort());
    await sleep(5_000);
    for (const g of gws.splice(0)) await g.close();
    const got = await readTopics(brokers, prefix, ['trade']);
    for (const symbol of SYMBOLS) {
      const ids = got.trade.filter((t) => t.symbol === symbol).map((t) => Number(t.id));
      expect(ids.length, symbol).toBeGreaterThan(0);
      expect(new Set(ids).size, `${symbol} twice`).toBe(ids.length);
    }
  }, 90_000);
});
