/**
 * The broadcast runtime end to end, on the real broker and database: the sim's trades through
 * the real gateway (ccxt) into Kafka, consumed by `buildBroadcast` and delivered to local HTTP
 * receivers and Kafka topics. Each registration's deliveries are compared with an independent
 * filter over what the sim emitted (in the id range the gateway put in the topic): exactly the
 * matching records, each once, with their fields; `crosses above` fires once per crossing of the
 * emitted prices; a receiver failing for a while gets everything after retries; one failing past
 * the retry budget leaves its deliveries in the dead-letter topic (counted as failed, with the last
 * error); the Kafka broadcasters' topics hold exactly the matching records (JSON and Avro); the
 * HMAC signature verifies with the shared secret. On both databases.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { buildBroadcast, type BroadcastPart } from '../broadcast/index.ts';
import { AvroCodec } from '../core/avro.ts';
import { createKafka } from '../core/kafka.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { buildSim, type Sim, type SimTrade } from '../sim/index.ts';
import { addBroadcaster, addRegistration, crossLevels, crossesAbovePredicate, crossingsAbove, broadcastTestConfig, startReceiver, waitCaughtUp, type Receiver, type Received } from './harness/broadcast.ts';
import { describeEachDb } from './harness/db.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { readTopic } from './harness/sink.ts';
import { readTopics } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const SECRET = 'whsec-test-1';
const LEVEL = 3000;
const LEVELS = crossLevels(LEVEL, 2.5);
const RUN_MS = 8_000;

/** The registrations, and the same filters written independently over the sim's trades. */
const REGS = [
  { name: 'btc-all', broadcaster: 'hook', kind: 'trade', exchange: 'sim', symbol: 'BTC/USDT', predicate: null, want: (t: SimTrade) => t.symbol === 'BTC/USDT' },
  { name: 'big', broadcaster: 'hook', kind: 'trade', exchange: 's?m', symbol: 'BTC/*', predicate: 'amount > 0.02 and price > 1000', want: (t: SimTrade) => t.symbol === 'BTC/USDT' && t.amount > 0.02 },
  { name: 'eth-sells', broadcaster: 'flaky', kind: 'trade', exchange: '*', symbol: '*/USDT', predicate: "side = 'sell' and symbol = 'ETH/USDT'", want: (t: SimTrade) => t.symbol === 'ETH/USDT' && t.side === 'sell' },
  { name: 'btc-dead', broadcaster: 'dead', kind: 'trade', exchange: 'sim', symbol: 'BTC/USDT', predicate: 'amount > 0.01', want: (t: SimTrade) => t.symbol === 'BTC/USDT' && t.amount > 0.01 },
  { name: 'btc-buys', broadcaster: 'tokafka', kind: 'trade', exchange: 'sim', symbol: 'BTC/USDT', predicate: "side = 'buy'", want: (t: SimTrade) => t.symbol === 'BTC/USDT' && t.side === 'buy' },
  { name: 'eth-big', broadcaster: 'toavro', kind: 'trade', exchange: 'sim', symbol: 'ETH/*', predicate: 'amount >= 0.3', want: (t: SimTrade) => t.symbol === 'ETH/USDT' && t.amount >= 0.3 },
  { name: 'paused', broadcaster: 'hook', kind: 'trade', exchange: '*', symbol: '*', predicate: null, paused: true, want: () => false },
] as const;

describeEachDb(['postgres', 'embedded'], (db) => {
  const brokers = inject('kafkaBrokers');
  const kafka = createKafka({ brokers, clientId: 'bc-test', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const prefix = uniquePrefix('bc');
  const config = broadcastTestConfig(prefix);
  const groupId = config.broadcast.groupId;
  let sim: Sim;
  let gw: Gateway | undefined;
  let part: BroadcastPart | undefined;
  let hook: Receiver;
  let flaky: Receiver;
  let dead: Receiver;
  /** Per symbol: what the sim emitted in the id range the gateway put into the topic. */
  const emitted = new Map<string, SimTrade[]>();
  let inTopic: Trade[] = [];
  let metrics = '';

  beforeAll(async () => {
    const pool = db().pool;
    await migrate(pool);
    sim = buildSim({ seed: 11, symbols: SYMBOLS, tradesPerSecond: 20, startPrice: { 'BTC/USDT': 60_000, 'ETH/USDT': LEVEL }, volatility: 5e-4, historyDays: 1 });
    await sim.start();
    hook = await startReceiver();
    // Refuses its first 15 requests (a deploy in progress), then takes everything.
    flaky = await startReceiver((n) => (n < 15 ? 503 : 200));
    dead = await startReceiver(() => 500);
    await addBroadcaster(pool, 'hook', 'http', { url: hook.url, secret: SECRET, timeoutMs: 2_000 });
    await addBroadcaster(pool, 'flaky', 'http', { url: flaky.url, retry: { maxAttempts: 30, initialMs: 20, maxMs: 200 } });
    await addBroadcaster(pool, 'dead', 'http', { url: dead.url, retry: { maxAttempts: 2, initialMs: 10, maxMs: 20 } });
    await addBroadcaster(pool, 'tokafka', 'kafka', { topic: `${prefix}.alerts`, format: 'json' });
    await addBroadcaster(pool, 'toavro', 'kafka', { topic: `${prefix}.alerts-avro`, format: 'avro' });
    for (const r of REGS) await addRegistration(pool, r);
    await addRegistration(pool, { name: 'eth-cross', broadcaster: 'hook', kind: 'trade', exchange: 'sim', symbol: 'ETH/USDT', predicate: crossesAbovePredicate(LEVELS) });

    part = buildBroadcast(config, { pool, brokers });
    await part.start();
    gw = buildGateway(gatewayConfig(brokers, prefix, [{ id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, options: simOptions(sim) }]));
    await gw.start();
    await sleep(RUN_MS);
    await gw.close();
    gw = undefined;
    inTopic = (await readTopics(brokers, prefix, ['trade'])).trade;
    for (const symbol of SYMBOLS) {
      const ids = inTopic.filter((t) => t.symbol === symbol).map((t) => Number(t.id));
      const [first, last] = [Math.min(...ids), Math.max(...ids)];
      emitted.set(symbol, sim.emitted.trades(symbol, { fromId: first }).filter((t) => t.id <= last));
    }
    await waitCaughtUp(pool, kafka, groupId, topicFor(prefix, 'trade'));
    metrics = await (await fetch(`${part.url}/metrics`)).text();
  }, 180_000);

  afterAll(async () => {
    await gw?.close();
    await part?.stop();
    await Promise.all([hook?.close(), flaky?.close(), dead?.close(), sim?.close()]);
  });

  const all = () => SYMBOLS.flatMap((s) => emitted.get(s) ?? []);
  const idsOf = (ts: readonly SimTrade[]) => ts.map((t) => String(t.id)).sort();
  const received = (r: Receiver, registration: string) => r.got.filter((g) => g.body.registration === registration);

  it('the gateway put every trade the sim emitted in the run into the topic (what the comparisons stand on)', () => {
    expect(inTopic.length).toBeGreaterThan(100);
    expect(idsOf(all())).toEqual(inTopic.map((t) => t.id).sort());
  });

  it('a registration delivers exactly the matching records, each once, with the record and its event id', () => {
    for (const reg of REGS.filter((r) => r.broadcaster === 'hook' && r.name !== 'paused')) {
      const got = received(hook, reg.name);
      const want = all().filter(reg.want);
      expect(want.length, reg.name).toBeGreaterThan(0);
      expect(got.map((g) => String(g.body.record.id)).sort(), reg.name).toEqual(idsOf(want));
      expect(new Set(got.map((g) => g.id)).size, reg.name).toBe(got.length);
    }
    const byId = new Map(all().map((t) => [String(t.id), t]));
    for (const g of received(hook, 'btc-all')) {
      const t = byId.get(String(g.body.record.id))!;
      expect(g.body).toMatchObject({ registration: 'btc-all', broadcaster: 'hook', kind: 'trade', exchange: 'sim', symbol: 'BTC/USDT', ts: new Date(t.timestamp).toISOString() });
      expect(g.body.record).toMatchObject({ price: t.price, amount: t.amount, side: t.side, ts: new Date(t.timestamp).toISOString() });
      expect(g.id).toBe(g.body.id);
      expect(g.id).toMatch(new RegExp(`^${prefix}\\.trades:\\d+:\\d+:btc-all$`));
      expect(g.headers['content-type']).toBe('application/json');
    }
    // Per instrument, in record order.
    const seq = received(hook, 'btc-all').map((g) => Number(g.body.record.id));
    expect(seq).toEqual([...seq].sort((a, b) => a - b));
  });

  it('signs each delivery: the receiver recomputes the HMAC-SHA256 of "<timestamp>.<body>" with the secret', () => {
    expect(hook.got.length).toBeGreaterThan(0);
    for (const g of hook.got) {
      const ts = String(g.headers['x-tickflow-timestamp']);
      expect(Math.abs(Number(ts) - g.at)).toBeLessThan(60_000);
      expect(g.headers['x-tickflow-signature']).toBe(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${g.raw}`).digest('hex')}`);
    }
    expect(flaky.got.every((g) => g.headers['x-tickflow-signature'] === undefined)).toBe(true);
  });

  it('`crosses above` fires once per crossing of the emitted prices (previous <= level < current)', () => {
    const eth = emitted.get('ETH/USDT')!;
    const crossings = crossingsAbove(eth, LEVELS);
    expect(crossings.length).toBeGreaterThan(0);
    expect(received(hook, 'eth-cross').map((g) => String(g.body.record.id)).sort()).toEqual(idsOf(crossings));
  });

  it('a paused registration delivers nothing', () => {
    expect(received(hook, 'paused')).toEqual([]);
  });

  it('a receiver that fails for a while gets every matching record after retries', async () => {
    expect(flaky.requests).toBeGreaterThan(flaky.got.length);
    const want = all().filter(REGS.find((r) => r.name === 'eth-sells')!.want);
    expect(flaky.got.map((g) => String(g.body.record.id)).sort()).toEqual(idsOf(want));
    const stats = (await db().pool.query('select delivered, failed from broadcast_stats where registration = $1', ['eth-sells'])).rows[0];
    expect(stats).toEqual({ delivered: want.length, failed: 0 });
    expect(metrics).toMatch(/tickflow_broadcast_retries_total\{broadcaster="flaky",app="tickflow"\} (1[5-9]|[2-9]\d|\d{3,})/);
  });

  it('what fails beyond the retry budget is in the dead-letter topic, counted as failed with the last error', async () => {
    const want = all().filter(REGS.find((r) => r.name === 'btc-dead')!.want);
    expect(want.length).toBeGreaterThan(0);
    expect(dead.got).toEqual([]);
    expect(dead.requests).toBe(want.length * 2);
    const letters = (await readTopic(kafka, `${prefix}.broadcast-dlq`, want.length)).map((m) => JSON.parse(m.value!.toString()) as { delivery: Received['body']; broadcaster: string; error: string; attempts: number; failedAt: string });
    expect(letters.map((l) => String(l.delivery.record.id)).sort()).toEqual(idsOf(want));
    for (const l of letters) expect(l).toMatchObject({ broadcaster: 'dead', attempts: 2, error: expect.stringContaining('HTTP 500'), delivery: { registration: 'btc-dead' } });
    const stats = (await db().pool.query('select delivered, failed, last_error from broadcast_stats where registration = $1', ['btc-dead'])).rows[0];
    expect(stats).toMatchObject({ delivered: 0, failed: want.length, last_error: expect.stringContaining('HTTP 500') });
  });

  it("a Kafka broadcaster's topic holds exactly the matching records (JSON, keyed exchange|symbol)", async () => {
    const want = all().filter(REGS.find((r) => r.name === 'btc-buys')!.want);
    const msgs = await readTopic(kafka, `${prefix}.alerts`, want.length);
    await sleep(500);
    expect(msgs.map((m) => String((JSON.parse(m.value!.toString()) as Received['body']).record.id)).sort()).toEqual(idsOf(want));
    expect(msgs.every((m) => m.key === 'sim|BTC/USDT' && m.headers['x-tickflow-event-id']?.endsWith(':btc-buys'))).toBe(true);
  });

  it("an Avro Kafka broadcaster's topic holds exactly the matching records, decodable as tickflow trades", async () => {
    const want = all().filter(REGS.find((r) => r.name === 'eth-big')!.want);
    const msgs = await readTopic(kafka, `${prefix}.alerts-avro`, want.length);
    const codec = new AvroCodec({ topicPrefix: prefix });
    const decoded = await Promise.all(msgs.map(async (m) => (await codec.decode(m.value!)).value as Trade));
    expect(decoded.map((t) => t.id).sort()).toEqual(idsOf(want));
    const byId = new Map(want.map((t) => [String(t.id), t]));
    for (const t of decoded) expect({ price: t.price, amount: t.amount, ts: t.ts }).toEqual({ price: byId.get(t.id)!.price, amount: byId.get(t.id)!.amount, ts: byId.get(t.id)!.timestamp * 1000 });
  });

  it('keeps delivery counts per registration and metrics per broadcaster', async () => {
    const want = all().filter(REGS.find((r) => r.name === 'btc-all')!.want).length;
    const s = (await db().pool.query('select delivered, failed, last_delivered_at from broadcast_stats where registration = $1', ['btc-all'])).rows[0];
    expect(s).toMatchObject({ delivered: want, failed: 0 });
    expect(s.last_delivered_at).toBeInstanceOf(Date);
    expect(metrics).toContain('tickflow_broadcast_delivered_total{broadcaster="hook"');
    expect(metrics).toContain('tickflow_broadcast_failed_total{broadcaster="dead"');
    // The registry is the process's: both databases' runs add to it.
    const latencies = Number(/tickflow_broadcast_delivery_latency_seconds_count\{[^}]*broadcaster="hook"[^}]*\} (\d+)/.exec(metrics)?.[1]);
    expect(latencies).toBeGreaterThanOrEqual(hook.got.length);
    expect(metrics).toContain('tickflow_broadcast_consumer_lag_records{topic=');
  });
});
