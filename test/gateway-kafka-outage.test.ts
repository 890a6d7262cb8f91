/**
 * Kafka unreachable: the gateway starts while its broker address refuses every connection (a
 * proxy in front of the real broker, closed), keeps collecting into its bounded buffer, drops
 * the oldest past `maxBufferedRecords`, and once the proxy opens the loss is in Kafka as a `gap`
 * record (channel kafka) with the time range and the count: every trade the gateway received is
 * either in Kafka or counted in that gap, none silently dropped.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const MAX_BUFFERED = 300;

/** A TCP proxy to the broker that can refuse service (every connection reset) or forward. */
async function kafkaProxy(target: string): Promise<{ port: number; open: boolean; close(): Promise<void> }> {
  const [host, port] = target.split(':') as [string, string];
  const sockets = new Set<Socket>();
  const state = { open: false };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (!state.open) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(port), host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    get open() {
      return state.open;
    },
    set open(v: boolean) {
      state.open = v;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('Kafka unreachable: bounded buffer, loss recorded as a gap', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwout');
  let sim: Sim;
  let gw: Gateway;
  let proxy: Awaited<ReturnType<typeof kafkaProxy>>;
  let got: Decoded;
  let dropped = 0;

  beforeAll(async () => {
    sim = buildSim({ seed: 11, symbols: ['BTC/USDT'], tradesPerSecond: 200, historyDays: 0 });
    await sim.start();
    proxy = await kafkaProxy(brokers[0]!);
    const config = gatewayConfig([`127.0.0.1:${proxy.port}`], prefix, [
      { id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: {} }, backfillLookbackMinutes: 0, maxBufferedRecords: MAX_BUFFERED, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('buffer.drop', (e) => (dropped = e.count));
    const report = await gw.start();
    expect(report.workers[0]!.status).toBe('running'); // streams run without Kafka
    await until(() => dropped > 500, 20_000, 'the buffer to overflow');
    expect(gw.publisher.isConnected).toBe(false);
    expect(gw.publisher.buffered).toBeLessThanOrEqual(MAX_BUFFERED + 1);
    proxy.open = true;
    await until(() => gw.publisher.isConnected && gw.publisher.acked > MAX_BUFFERED, 30_000, 'Kafka to take the buffer');
    await sleep(500);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade', 'gap', 'instrument']);
  }, 90_000);

  afterAll(async () => {
    await gw?.close();
    await proxy?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('publishes the overflow as a kafka gap record, and nothing else is missing', () => {
    const gaps = got.gap.filter((g) => g.channel === 'kafka');
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps.every((g) => g.exchange === 'sim' && g.symbol === 'BTC/USDT' && g.to_ts !== null)).toBe(true);
    const lost = gaps.map((g) => Number(/dropped (\d+) records \((\d+) trade\)/.exec(g.reason)![1]));
    const lostTotal = lost.reduce((a, b) => a + b, 0);
    expect(lostTotal).toBeGreaterThan(500);

    // Kafka holds a contiguous run of trades, each once, equal to the sim's...
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    const k0 = ids[0]!;
    expect(ids.at(-1)! - k0 + 1).toBe(ids.length);
    const emitted = sim.emitted.trades('BTC/USDT');
    const byId = new Map(emitted.map((t) => [t.id, t]));
    for (const t of got.trade) expect([t.ts, t.price, t.amount, t.side]).toEqual([byId.get(Number(t.id))!.timestamp * 1000, byId.get(Number(t.id))!.price, byId.get(Number(t.id))!.amount, byId.get(Number(t.id))!.side]);
    // ...and right before it, exactly the trades the gap counts, all inside its time range.
    const droppedTrades = emitted.filter((t) => t.id >= k0 - lostTotal && t.id < k0);
    expect(droppedTrades).toHaveLength(lostTotal);
    const from = Math.min(...gaps.map((g) => g.from_ts));
    const to = Math.max(...gaps.map((g) => g.to_ts!));
    for (const t of droppedTrades) {
      expect(t.timestamp * 1000).toBeGreaterThanOrEqual(from);
      expect(t.timestamp * 1000).toBeLessThanOrEqual(to);
    }
    expect(from).toBe(droppedTrades[0]!.timestamp * 1000);
    expect(to).toBe(droppedTrades.at(-1)!.timestamp * 1000);
  });

  it('never drops status records: the instrument made it through the outage', () => {
    expect(got.instrument.map((i) => i.symbol)).toEqual(['BTC/USDT']);
  });
});
