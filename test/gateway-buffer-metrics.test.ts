/**
 * The buffer gauges tell the truth during a broker outage: the gateway runs against a Kafka
 * broker of this file's own, which is stopped while trades keep arriving and started again on
 * the same port and data (a TCP proxy in front of the shared broker cannot cut a running
 * producer: kafkajs talks to the address the broker advertises). `/metrics` (the gateway's metrics
 * server) shows `tickflow_gateway_buffered_records` rising above 0 during the outage and back at
 * 0 once Kafka took everything, and every trade received reaches Kafka (the buffer did not
 * overflow). Before the fix the gauge was only set after a batch was taken from a connected
 * producer, so it read 0 through the whole outage.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveMetrics } from '../core/metrics-server.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { readTopics, type Decoded } from './harness/topics.ts';


describe('buffer metrics during a broker outage', () => {
  const prefix = uniquePrefix('gwbufm');
  let dataDir: string;
  let broker: KafkaBroker | undefined;
  let brokers: string[];
  let sim: Sim;
  let gw: Gateway;
  let outageMs = 0;
  let receivedInOutage = 0;
  let metrics: Awaited<ReturnType<typeof serveMetrics>>;
  let got: Decoded;
  const samples = { before: -1, outage: [] as number[], drained: -1, dropped: -1 };

  const scrape = async (name: string): Promise<number> => {
    const text = await (await fetch(`${metrics.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('exchange="sim"'));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : Number.NaN;
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'tickflow-gw-buffer-'));
    broker = await startKafka({ dataDir, heapMb: 384 });
    brokers = broker.brokers;
    const port = Number(brokers[0]!.split(':')[1]);
    sim = buildSim({ seed: 13, symbols: ['BTC/USDT'], tradesPerSecond: 200, historyDays: 0 });
    await sim.start();
    metrics = await serveMetrics('127.0.0.1', 0);
    const config = gatewayConfig(brokers, prefix, [
      { id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.messages', (e) => {
      if (!broker) receivedInOutage += e.count;
    });
    const report = await gw.start();
    expect(report.workers[0]!.status).toBe('running');
    await until(() => gw.publisher.acked > 200, 20_000, 'trades to reach Kafka');
    await sleep(1_100);
    samples.before = await scrape('tickflow_gateway_buffered_records');
    const down = broker.stop();
    broker = undefined;
    const outageAt = Date.now();
    await down;
    for (let i = 0; i < 3; i++) {
      await sleep(1_000);
      samples.outage.push(await scrape('tickflow_gateway_buffered_records'));
    }
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    outageMs = Date.now() - outageAt;
    await until(() => gw.publisher.isConnected && gw.publisher.buffered < 50, 30_000, 'Kafka to take the buffer');
    // Nothing new arrives while the trade stream is paused: what was buffered drains to Kafka.
    sim.pauseStream('trades', 4_000);
    await sleep(2_500);
    samples.drained = await scrape('tickflow_gateway_buffered_records');
    samples.dropped = await scrape('tickflow_gateway_dropped_records');
    await sleep(3_000);
    console.log(`buffered_records on /metrics: before ${samples.before}, during a ${outageMs} ms outage (${receivedInOutage} trades received) ${samples.outage.join(', ')}, after ${samples.drained}`);
    await gw.close();
    got = await readTopics(brokers, prefix, ['trade']);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await metrics?.close();
    await sim?.close();
    await broker?.stop().catch(() => undefined);
    if (dataDir) {
      await stopKafkaAt(dataDir).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('shows the records held while Kafka is down, and 0 once it took them', () => {
    // 200 trades a second kept arriving: the gauge grows through the outage.
    expect(receivedInOutage).toBeGreaterThan(200);
    expect(samples.outage[0]!).toBeGreaterThan(0);
    expect(samples.outage.at(-1)!).toBeGreaterThan(samples.outage[0]!);
    expect(samples.outage.at(-1)!).toBeGreaterThan(200);
    expect(samples.drained).toBe(0);
    expect(samples.dropped).toBe(0);
  });

  it('every trade received reached Kafka, each once', () => {
    const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
    expect(ids.length).toBeGreaterThan(receivedInOutage);
  });
});
