/**
 * Kafka outages seen from the gateway, against a broker of this file's own (stopped and started
 * again on the same port and data; a TCP proxy cannot cut a running producer: kafkajs talks to
 * the address the broker advertises once it has bootstrapped).
 *
 * (a) Kafka unreachable when the gateway starts, first ever start and a restart alike: the
 *     streams wait (logged, naming the brokers) and, once Kafka answers, every trade the exchange
 *     emitted since the gateway started is in Kafka exactly once, refilled over REST, the wait a
 *     gap record per stream.
 * (b) A running gateway whose broker goes down, with a small `maxBufferedRecords`: the buffer
 *     overflows, the oldest trades go, and once the broker is back the `kafka` gap record counts
 *     exactly the trades missing from Kafka and spans exactly their times: every trade the
 *     gateway received is in Kafka or counted in that gap.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { buildSim, type Sim, type SimTrade } from '../sim/index.ts';
import type { Gap } from '../schemas/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { readTopics, type Decoded } from './harness/topics.ts';

const SYMBOL = 'BTC/USDT';
/** How long the gateway runs against an unreachable Kafka before the broker starts. */
const WAIT_MS = 6_000;
const MAX_BUFFERED = 300;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A logger whose JSON lines the test can read. */
function capturedLog(): { log: pino.Logger; lines: Array<{ level: number; msg: string } & Record<string, unknown>> } {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, out), lines };
}

const lastId = (sim: Sim): number => sim.emitted.trades(SYMBOL).at(-1)?.id ?? 0;

/** The same trade as the exchange emitted it. */
function sameAsEmitted(got: Decoded['trade'], emitted: readonly SimTrade[]): void {
  const byId = new Map(emitted.map((t) => [t.id, t]));
  for (const t of got) {
    const e = byId.get(Number(t.id));
    expect(e, `trade ${t.id} was emitted`).toBeDefined();
    expect([t.ts, t.price, t.amount, t.side]).toEqual([e!.timestamp * 1000, e!.price, e!.amount, e!.side]);
  }
}

describe('Kafka outages: the gateway waits at start, a running one counts what it drops', () => {
  let dataDir: string;
  let port: number;
  let broker: KafkaBroker | undefined;
  let brokers: string[];
  const figures: string[] = [];

  const brokerUp = async (): Promise<number> => {
    const t = Date.now();
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    brokers = broker.brokers;
    return Date.now() - t;
  };
  const brokerDown = async (): Promise<void> => {
    const b = broker;
    broker = undefined;
    await b?.stop();
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'tickflow-gw-kafka-outage-'));
    port = await freePort();
    brokers = [`127.0.0.1:${port}`];
  });

  afterAll(async () => {
    console.log(figures.join('\n'));
    await broker?.stop().catch(() => undefined);
    if (dataDir) {
      await stopKafkaAt(dataDir).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  describe('(a) started while Kafka is unreachable: the streams wait, then every trade since start is refilled', () => {
    const prefix = uniquePrefix('gwwait');
    let sim: Sim;
    let gw: Gateway | undefined;
    const { log, lines } = capturedLog();
    const runs: Array<{ firstId: number; idBeforeUp: number; idAtUp: number; ackedWhileDown: number; recoverMs: number; waitLogs: typeof lines }> = [];
    let got: Decoded;

    /** One gateway run: started with the broker down, the broker started after WAIT_MS, closed once Kafka has caught up. */
    const run = async (): Promise<void> => {
      const config = gatewayConfig([`127.0.0.1:${port}`], prefix, [
        { id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {}, ticker: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
      ]);
      const from = lines.length;
      gw = buildGateway(config, { log });
      let caughtUpAt = 0;
      let upAtTsUs = Infinity;
      gw.events.on('produce.ack', (e) => {
        if (!caughtUpAt && e.records.some((r) => r.kind === 'trade' && r.ts >= upAtTsUs)) caughtUpAt = Date.now();
      });
      const report = await gw.start();
      expect(report.workers[0]!.status).toBe('running');
      const idAtStart = lastId(sim);
      await sleep(WAIT_MS);
      const ackedWhileDown = gw.publisher.acked;
      const waitLogs = lines.slice(from).filter((l) => l.level === 40 && /wait/.test(l.msg));
      // The last trade before the broker starts: the gateway cannot reach Kafka before this one
      // (it may well do so before brokerUp() returns, which waits for the broker's own readiness).
      const idBeforeUp = lastId(sim);
      const startMs = await brokerUp();
      const upAt = Date.now();
      const idAtUp = lastId(sim);
      // The first trade the exchange emitted after the gateway had started.
      const firstId = sim.emitted.trades(SYMBOL).find((t) => t.id > idAtStart)!.id;
      upAtTsUs = sim.emitted.trades(SYMBOL).at(-1)!.timestamp * 1000;
      await until(() => caughtUpAt > 0, 60_000, 'Kafka to hold the trades emitted while it was down');
      runs.push({ firstId, idBeforeUp, idAtUp, ackedWhileDown, recoverMs: caughtUpAt - upAt, waitLogs });
      const positionsLog = lines.slice(from).find((l) => /positions of the last run/.test(l.msg));
      figures.push(`(a) run ${runs.length}: Kafka down ${WAIT_MS} ms after start (+${startMs} ms broker start), ${idAtUp - firstId + 1} trades emitted meanwhile; Kafka held them ${caughtUpAt - upAt} ms after the broker was up; wait log: ${waitLogs[0]?.msg}; ${positionsLog?.msg} ${Number(positionsLog?.time) - upAt} ms after the broker was up`);
      await sleep(1_000);
      await gw.close();
      gw = undefined;
    };

    beforeAll(async () => {
      sim = buildSim({ seed: 21, symbols: [SYMBOL], tradesPerSecond: 100, historyDays: 0 });
      await sim.start();
      // First ever start: no topics, no position anywhere.
      await run();
      // A restart: the position of the first run is in Kafka, which is down again when the gateway starts.
      await brokerDown();
      await run();
      got = await readTopics(brokers, prefix, ['trade', 'gap']);
    }, 240_000);

    afterAll(async () => {
      await gw?.close();
      await sim?.close();
    });

    it('waits, saying so and naming the brokers, while nothing reaches Kafka', () => {
      for (const r of runs) {
        expect(r.ackedWhileDown).toBe(0);
        expect(r.waitLogs.length).toBeGreaterThan(0);
        expect(r.waitLogs.some((l) => JSON.stringify(l).includes(`127.0.0.1:${port}`))).toBe(true);
      }
    });

    it('has every trade the exchange emitted since the first start in Kafka, each once', () => {
      const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids[0]).toBeLessThanOrEqual(runs[0]!.firstId);
      expect(ids.at(-1)).toBeGreaterThanOrEqual(runs[1]!.idAtUp);
      expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length); // no hole
      sameAsEmitted(got.trade, sim.emitted.trades(SYMBOL));
    });

    it('records each wait as a gap per stream, closed, the trades refilled counted', () => {
      const closed = (channel: string) => got.gap.filter((g: Gap) => g.channel === channel && g.to_ts !== null);
      const trades = closed('trades');
      const tickers = closed('ticker');
      expect(trades).toHaveLength(2);
      expect(tickers).toHaveLength(2);
      const emitted = sim.emitted.trades(SYMBOL);
      const tsOf = (id: number) => emitted.find((t) => t.id === id)!.timestamp * 1000;
      runs.forEach((r, i) => {
        const g = trades[i]!;
        // The gap starts no later than the first trade the gateway should have seen and covers the wait.
        expect(g.from_ts).toBeLessThanOrEqual(tsOf(r.firstId));
        expect(g.to_ts!).toBeGreaterThanOrEqual(tsOf(r.idBeforeUp));
        expect(g.refilled).toBeGreaterThanOrEqual(r.idBeforeUp - r.firstId + 1);
        expect(tickers[i]!.reason).toMatch(/cannot be refilled/);
      });
      expect(trades[0]!.reason).toMatch(/Kafka unreachable when the gateway started/);
      expect(trades[1]!.reason).toMatch(/gateway restarted/);
    });
  });

  describe('(b) a running gateway whose broker goes down: the overflow is one kafka gap, counted exactly', () => {
    const prefix = uniquePrefix('gwovf');
    let sim: Sim;
    let gw: Gateway | undefined;
    let got: Decoded;
    let dropped = 0;
    let outageMs = 0;
    let recoverMs = 0;

    beforeAll(async () => {
      if (!broker) await brokerUp();
      sim = buildSim({ seed: 13, symbols: [SYMBOL], tradesPerSecond: 200, historyDays: 0 });
      await sim.start();
      const config = gatewayConfig(brokers, prefix, [
        { id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {} }, backfillLookbackMinutes: 0, maxBufferedRecords: MAX_BUFFERED, options: simOptions(sim) },
      ]);
      gw = buildGateway(config);
      gw.events.on('buffer.size', (e) => (dropped = e.dropped));
      const report = await gw.start();
      expect(report.workers[0]!.status).toBe('running');
      await until(() => gw!.publisher.acked > 200, 30_000, 'trades to reach Kafka');
      const downAt = Date.now();
      await brokerDown();
      await until(() => dropped > 1_000, 30_000, 'the buffer to overflow');
      expect(gw.publisher.buffered).toBeLessThanOrEqual(MAX_BUFFERED + 2_000); // the outbox, plus the batch in flight
      await brokerUp();
      const upAt = Date.now();
      outageMs = upAt - downAt;
      const ackedAtUp = gw.publisher.acked;
      await until(() => gw!.publisher.isConnected && gw!.publisher.acked > ackedAtUp + MAX_BUFFERED && gw!.publisher.buffered < 50, 60_000, 'Kafka to take the buffer');
      recoverMs = Date.now() - upAt;
      await sleep(500);
      await gw.close();
      gw = undefined;
      got = await readTopics(brokers, prefix, ['trade', 'gap', 'instrument']);
    }, 180_000);

    afterAll(async () => {
      await gw?.close();
      await sim?.close();
    });

    it('publishes the dropped trades as one kafka gap whose count and time range are exactly the trades missing from Kafka', () => {
      const gaps = got.gap.filter((g) => g.channel === 'kafka');
      expect(gaps).toHaveLength(1);
      const gap = gaps[0]!;
      expect([gap.exchange, gap.symbol]).toEqual(['sim', SYMBOL]);
      const m = /dropped (\d+) records \((\d+) trade\)/.exec(gap.reason);
      expect(m, gap.reason).not.toBeNull();
      const counted = Number(m![1]);
      expect(Number(m![2])).toBe(counted);
      expect(counted).toBe(dropped);

      // Kafka holds each trade once; between its first and last trade, what it lacks is the loss.
      const ids = got.trade.map((t) => Number(t.id)).sort((a, b) => a - b);
      expect(new Set(ids).size).toBe(ids.length);
      sameAsEmitted(got.trade, sim.emitted.trades(SYMBOL));
      const inKafka = new Set(ids);
      const missing = sim.emitted.trades(SYMBOL, { fromId: ids[0]!, }).filter((t) => t.id <= ids.at(-1)! && !inKafka.has(t.id));
      figures.push(`(b) broker down ${outageMs} ms at 200 trades/s, maxBufferedRecords ${MAX_BUFFERED}: ${dropped} dropped, gap counts ${counted}, ${missing.length} missing from Kafka; buffer drained ${recoverMs} ms after the broker was up`);
      expect(missing.length).toBe(counted);
      // The oldest went: one run of consecutive trades.
      expect(missing.at(-1)!.id - missing[0]!.id + 1).toBe(missing.length);
      expect(gap.from_ts).toBe(missing[0]!.timestamp * 1000);
      expect(gap.to_ts).toBe(missing.at(-1)!.timestamp * 1000);
    });

    it('never drops status records: the instrument made it through the outage', () => {
      expect(got.instrument.map((i) => i.symbol)).toEqual([SYMBOL]);
    });
  });
});
