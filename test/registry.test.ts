/**
 * Schema-registry mode against a real Confluent-compatible registry (Apicurio Registry 3.x, run
 * by infra/registry.ts), the real Kafka broker, the real ccxt against the sim and the real sink:
 * the gateway and `tickflow backfill` produce in the Confluent wire format with the registry's
 * ids, the sink writes what the exchange emitted, the registered schemas are the full .avsc, a
 * new optional field passes the registry's BACKWARD check, an unreachable registry is waited for
 * and a refusing one stops the command with one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import avro from 'avsc';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AvroCodec, ConfluentRegistry, registrySchema } from '../core/avro.ts';
import { createKafka, ensureTopics } from '../core/kafka.ts';
import { buildGateway, type GatewayReport } from '../gateways/index.ts';
import { freePort } from '../infra/process.ts';
import { CCOMPAT_PATH, startRegistry, type RegistryServer } from '../infra/registry.ts';
import { RECORD_KINDS, TYPES, schemaJson, topicFor, type Candle, type RecordKind, type Trade } from '../schemas/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { buildSink } from '../sink/index.ts';
import { openTestDb, type TestDb } from './harness/db.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { makeTrades, produce, produceRaw, readTopic, sinkTestConfig, testKafka, waitFor } from './harness/sink.ts';
import { startTcpProxy, type TcpProxy } from './harness/tcp-proxy.ts';
import { deleteTopics } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const SYMBOL = 'BTC/USDT';
const JSON_TYPE = { 'content-type': 'application/vnd.schemaregistry.v1+json' };

type AvscRecord = { name: string; namespace?: string; doc?: string; fields: { name: string; type: unknown; default?: unknown; doc?: string }[] };

async function registryJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, headers: JSON_TYPE });
  return { status: res.status, body: (await res.json()) as T };
}

async function highWatermarks(brokers: readonly string[], topic: string): Promise<number> {
  const admin = createKafka({ brokers, clientId: 'registry-test', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }).admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) return 0; // not created yet
    return (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Every value of a topic, raw (framing and schema id visible). */
async function rawValues(brokers: readonly string[], topic: string): Promise<Buffer[]> {
  const n = await highWatermarks(brokers, topic);
  const kafka = createKafka({ brokers, clientId: 'registry-test', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const got = await readTopic(kafka, topic, n);
  expect(got).toHaveLength(n);
  return got.map((m) => m.value!);
}

interface Cli {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
}

function tickflow(args: string[], env: Record<string, string>): Cli {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'fatal', ...env } });
  const cli: Cli = { child, stdout: '', stderr: '', exited: new Promise((r) => child.on('close', r)) };
  child.stdout!.on('data', (d) => (cli.stdout += d));
  child.stderr!.on('data', (d) => (cli.stderr += d));
  return cli;
}

function configFile(doc: unknown): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-registry-')), 'tickflow.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

describe('schema-registry mode against Apicurio Registry', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('reg');
  const prefixes = [prefix];
  let registry: RegistryServer;
  let sim: Sim;
  let db: TestDb | undefined;
  const subject = (p: string, kind: RecordKind) => `${topicFor(p, kind)}-value`;

  beforeAll(async () => {
    // The first run on a machine fetches the registry through Maven (~160 MB).
    [registry, sim] = await Promise.all([
      startRegistry(),
      (async () => {
        const s = buildSim({ seed: 23, symbols: [SYMBOL], tradesPerSecond: 20, historyDays: 1 });
        await s.start();
        return s;
      })(),
    ]);
    console.log(`Apicurio Registry ${registry.version} answered ${(registry.startupMs / 1000).toFixed(1)} s after its start, at ${registry.url}`);
  }, 20 * 60_000);

  afterAll(async () => {
    await db?.close();
    await sim?.close();
    await registry?.stop();
    for (const p of prefixes) await deleteTopics(brokers, p, RECORD_KINDS).catch(() => undefined);
  });

  it('the gateway produces trades in the Confluent wire format; the sink writes exactly what the exchange emitted', async () => {
    const entry = { id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) };
    const gw = buildGateway(gatewayConfig(brokers, prefix, [entry], { schemaRegistryUrl: registry.url }));
    let report: GatewayReport;
    try {
      report = await gw.start();
      await sleep(4_000);
    } finally {
      await gw.close();
    }
    expect(report.problems).toEqual([]);

    // Every value carries the id the registry gave the trade schema.
    const latest = await registryJson<{ id: number }>(`${registry.url}/subjects/${subject(prefix, 'trade')}/versions/latest`);
    expect(latest.status).toBe(200);
    const values = await rawValues(brokers, topicFor(prefix, 'trade'));
    expect(values.length).toBeGreaterThan(40);
    expect(values.every((v) => v[0] === 0 && v.readUInt32BE(1) === latest.body.id)).toBe(true);

    // Decoded by a process that knows only the registry: the sim's trades, contiguous, equal.
    const reader = new AvroCodec({ topicPrefix: prefix, registry: new ConfluentRegistry(registry.url) });
    const trades = (await Promise.all(values.map((v) => reader.decode(v)))).map((d) => d.value as Trade);
    const ids = trades.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
    const emitted = sim.emitted.trades(SYMBOL, { fromId: ids[0]! }).filter((t) => t.id <= ids.at(-1)!);
    const byId = new Map(trades.map((t) => [Number(t.id), t]));
    expect(emitted.map((t) => byId.get(t.id)).map((t) => ({ id: t?.id, ts: t?.ts, price: t?.price, amount: t?.amount, side: t?.side }))).toEqual(
      emitted.map((t) => ({ id: String(t.id), ts: t.timestamp * 1000, price: t.price, amount: t.amount, side: t.side })),
    );

    // The sink (its decoding thread asks the registry for the id) writes the same trades.
    db = await openTestDb('postgres');
    const name = `${prefix}-trades`;
    const sink = buildSink(sinkTestConfig(prefix, { kafka: { schemaRegistryUrl: registry.url }, sink: { connectors: [{ name, table: 'trades' }] } }), { pool: db.pool, listen: false, schedule: false });
    await sink.start();
    try {
      await waitFor('the sink to write every trade', async () => {
        const r = await db!.pool.query<{ n: string }>('select count(*) as n from trades');
        return Number(r.rows[0]!.n) >= trades.length;
      });
    } finally {
      await sink.close();
    }
    const rows = await db.pool.query<Trade>(
      `select exchange, symbol, (extract(epoch from ts) * 1000000)::int8 as ts, (extract(epoch from received_at) * 1000000)::int8 as received_at, id, side, price, amount from trades order by id::int8`,
    );
    expect(rows.rows).toEqual([...trades].sort((a, b) => Number(a.id) - Number(b.id)).map((t) => ({ ...t })));
    console.log(`gateway: ${values.length} trades in the Confluent wire format (schema id ${latest.body.id}); sink: ${rows.rows.length} rows, equal to the ${emitted.length} the sim emitted in that range`);
  }, 120_000);

  it('registers the full .avsc: logical types, defaults and docs reach the registry', async () => {
    for (const kind of RECORD_KINDS) {
      const r = await registryJson<{ schema: string }>(`${registry.url}/subjects/${subject(prefix, kind)}/versions/latest`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body.schema)).toEqual(schemaJson(kind));
    }
    const trade = JSON.parse((await registryJson<{ schema: string }>(`${registry.url}/subjects/${subject(prefix, 'trade')}/versions/latest`)).body.schema) as AvscRecord;
    expect(trade.fields.find((f) => f.name === 'ts')!.type).toEqual({ type: 'long', logicalType: 'timestamp-micros' });
    expect(trade.fields.find((f) => f.name === 'price')!.doc).toBeTruthy();
    const ticker = JSON.parse((await registryJson<{ schema: string }>(`${registry.url}/subjects/${subject(prefix, 'ticker')}/versions/latest`)).body.schema) as AvscRecord;
    expect(ticker.fields.find((f) => f.name === 'bid')).toMatchObject({ type: ['null', 'double'], default: null });
  });

  it('a new optional field passes the BACKWARD check, registers, and its records are read by the current sink codec', async () => {
    const s = subject(prefix, 'trade');
    const put = await registryJson<{ compatibility: string }>(`${registry.url}/config/${s}`, { method: 'PUT', body: JSON.stringify({ compatibility: 'BACKWARD' }) });
    expect(put.body.compatibility).toBe('BACKWARD');
    const v1 = schemaJson('trade') as unknown as AvscRecord;
    const v2 = { ...v1, fields: [...v1.fields, { name: 'venue', type: ['null', 'string'], default: null, doc: 'Matching engine, when the exchange has several.' }] };
    const check = (schema: unknown) =>
      registryJson<{ is_compatible: boolean }>(`${registry.url}/compatibility/subjects/${s}/versions/latest`, { method: 'POST', body: JSON.stringify({ schema: registrySchema(schema as avro.Schema) }) });
    expect((await check(v2)).body.is_compatible).toBe(true);
    // The rule is enforced: the same field without a default is refused.
    const noDefault = { ...v1, fields: [...v1.fields, { name: 'venue', type: 'string' }] };
    expect((await check(noDefault)).body.is_compatible).toBe(false);

    // A newer writer registers v2 and produces with it; this version's codec resolves it.
    const registered = await registryJson<{ id: number }>(`${registry.url}/subjects/${s}/versions`, { method: 'POST', body: JSON.stringify({ schema: registrySchema(v2 as avro.Schema) }) });
    expect(registered.status).toBe(200);
    const versions = await registryJson<number[]>(`${registry.url}/subjects/${s}/versions`);
    expect(versions.body).toEqual([1, 2]);
    const trade: Trade = { exchange: 'sim', symbol: SYMBOL, ts: 1_700_000_000_000_000, received_at: 1_700_000_000_000_100, id: '42', side: 'sell', price: 101.5, amount: 0.25 };
    const header = Buffer.alloc(5);
    header.writeUInt32BE(registered.body.id, 1);
    const value = Buffer.concat([header, avro.Type.forSchema(v2 as avro.Schema).toBuffer({ ...trade, venue: 'main' })]);
    const reader = new AvroCodec({ topicPrefix: prefix, registry: new ConfluentRegistry(registry.url) });
    const d = await reader.decode(value);
    expect({ kind: d.kind, framing: d.framing, value: { ...d.value } }).toEqual({ kind: 'trade', framing: 'confluent', value: trade });
  });

  it('`tickflow backfill` produces candles in the Confluent wire format', async () => {
    const p = uniquePrefix('regbf');
    prefixes.push(p);
    const file = configFile({ exchanges: [{ id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { ohlcv: { mode: 'poll', timeframes: ['1m'] } }, options: simOptions(sim) }] });
    const from = Math.floor(sim.now() / 60_000) * 60_000 - 30 * 60_000;
    const to = from + 20 * 60_000;
    const cli = tickflow(['backfill', 'sim', SYMBOL, '1m', '--from', new Date(from).toISOString(), '--to', new Date(to).toISOString(), '--config', file], {
      KAFKA_BROKERS: brokers.join(','),
      KAFKA_TOPIC_PREFIX: p,
      SCHEMA_REGISTRY_URL: registry.url,
    });
    expect(await cli.exited, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('backfill: 20 closed candles');

    const id = (await registryJson<{ id: number }>(`${registry.url}/subjects/${subject(p, 'candle')}/versions/latest`)).body.id;
    const values = await rawValues(brokers, topicFor(p, 'candle'));
    expect(values.every((v) => v[0] === 0 && v.readUInt32BE(1) === id)).toBe(true);
    const reader = new AvroCodec({ topicPrefix: p, registry: new ConfluentRegistry(registry.url) });
    const got = (await Promise.all(values.map((v) => reader.decode(v)))).map((d) => d.value as Candle).sort((a, b) => a.ts - b.ts);
    const want = sim.emitted.candles(SYMBOL, '1m', { includeHistory: true }).filter((c) => c.timestamp >= from && c.timestamp < to);
    expect(want).toHaveLength(20);
    expect(got.map((c) => ({ ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, closed: c.closed }))).toEqual(
      want.map((c) => ({ ts: c.timestamp * 1000, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, closed: true })),
    );
  }, 90_000);

  it('`tickflow gateway` waits for an unreachable registry, naming it, and produces once it answers', async () => {
    const p = uniquePrefix('regwait');
    prefixes.push(p);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/apis/ccompat/v7`;
    const metricsPort = await freePort();
    const file = configFile({ exchanges: [{ id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) }], gateway: { metricsPort } });
    const cli = tickflow(['gateway', '--config', file], { KAFKA_BROKERS: brokers.join(','), KAFKA_TOPIC_PREFIX: p, SCHEMA_REGISTRY_URL: url, LOG_LEVEL: 'warn' });
    let late: RegistryServer | undefined;
    try {
      await waitFor('the gateway to say it waits for the registry', () => cli.stderr.includes(`SCHEMA_REGISTRY_URL=${url} is unreachable`) && cli.stderr.includes('waits for it'), 30_000, 100);
      expect(cli.child.exitCode).toBe(null);
      // Monitoring answers while the gateway waits, not only once it runs.
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('tickflow_gateway_buffered_records');
      late = await startRegistry({ port });
      await waitFor('trades in the topic', async () => (await highWatermarks(brokers, topicFor(p, 'trade'))) > 0, 60_000, 500);
      expect(cli.stdout).toContain('gateway: sim running');
      cli.child.kill('SIGINT');
      expect(await cli.exited).toBe(0);
      const values = await rawValues(brokers, topicFor(p, 'trade'));
      const d = await new AvroCodec({ topicPrefix: p, registry: new ConfluentRegistry(url) }).decode(values[0]!);
      expect(d).toMatchObject({ kind: 'trade', framing: 'confluent', value: { exchange: 'sim', symbol: SYMBOL } });
    } finally {
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
      await late?.stop();
    }
  }, 120_000);

  it('a registry that refuses stops `tickflow gateway` and `tickflow backfill` with one line and exit 1', async () => {
    const p = uniquePrefix('regno');
    prefixes.push(p);
    const file = configFile({ exchanges: [{ id: 'binance', name: 'sim', symbols: [SYMBOL], channels: { trades: {}, ohlcv: { mode: 'poll', timeframes: ['1m'] } }, backfillLookbackMinutes: 0, options: simOptions(sim) }], gateway: { metricsPort: 0 } });
    const env = { KAFKA_BROKERS: brokers.join(','), KAFKA_TOPIC_PREFIX: p };

    // Not the Confluent API's path: 404.
    const wrong = `http://127.0.0.1:${registry.port}/apis/registry/v7`;
    const gw = tickflow(['gateway', '--config', file], { ...env, SCHEMA_REGISTRY_URL: wrong });
    expect(await gw.exited).toBe(1);
    expect(gw.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^tickflow: schema registry SCHEMA_REGISTRY_URL=${wrong}: POST \\S+ answered 404`))]);

    // An incompatible schema under BACKWARD: the candle subject already holds one whose open is a string.
    const candleSubject = subject(p, 'candle');
    const old = schemaJson('candle') as unknown as AvscRecord;
    const clash = { ...old, fields: old.fields.map((f) => (f.name === 'open' ? { ...f, type: 'string' } : f)) };
    expect((await registryJson(`${registry.url}/subjects/${candleSubject}/versions`, { method: 'POST', body: JSON.stringify({ schema: JSON.stringify(clash) }) })).status).toBe(200);
    await registryJson(`${registry.url}/config/${candleSubject}`, { method: 'PUT', body: JSON.stringify({ compatibility: 'BACKWARD' }) });
    const from = Math.floor(sim.now() / 60_000) * 60_000 - 10 * 60_000;
    const bf = tickflow(['backfill', 'sim', SYMBOL, '1m', '--from', new Date(from).toISOString(), '--config', file], { ...env, SCHEMA_REGISTRY_URL: registry.url });
    expect(await bf.exited).toBe(1);
    expect(bf.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^tickflow: schema registry SCHEMA_REGISTRY_URL=${registry.url}: POST \\S+${candleSubject}/versions answered 409`))]);
    expect(await highWatermarks(brokers, topicFor(p, 'candle'))).toBe(0);
  }, 90_000);
});

describe('the sink while the schema registry is down', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('regdown');
  let first: RegistryServer | undefined;
  let again: RegistryServer | undefined;
  let proxy: TcpProxy | undefined;
  let db: TestDb | undefined;

  afterAll(async () => {
    await db?.close();
    await proxy?.close();
    await first?.stop();
    await again?.stop();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('pauses and retries records whose schema id it cannot fetch, and writes every one once the registry is back: only an unknown id dead-lettered', async () => {
    // Records produced with the registry's ids; then the registry stops. The sink reaches it
    // through a forwarder on `port`, so the address can come back only once the restarted
    // registry holds its schemas again (as a restored registry would): a sink asking the empty
    // registry in between would get 404 and rightly dead-letter.
    const port = await freePort();
    first = await startRegistry({ port: await freePort() });
    proxy = await startTcpProxy(port, first.port);
    const writer = new AvroCodec({ topicPrefix: prefix, registry: new ConfluentRegistry(first.url) });
    await writer.prepare();
    const ids = RECORD_KINDS.map((k) => writer.schemaId(k));
    const trades = makeTrades(300, { idPrefix: 'rd' });
    const name = `${prefix}-trades`;
    const config = sinkTestConfig(prefix, { kafka: { schemaRegistryUrl: `http://127.0.0.1:${port}${CCOMPAT_PATH}` }, sink: { connectors: [{ name, table: 'trades' }] } });
    await ensureTopics(testKafka(), config.kafka);
    await produce(testKafka(), writer, topicFor(prefix, 'trade'), 'trade', trades);
    // And one record with an id the registry never gave: a bad record, for the dead-letter topic.
    const unknown = Buffer.alloc(5);
    unknown.writeUInt32BE(9999, 1);
    await produceRaw(testKafka(), topicFor(prefix, 'trade'), [{ key: 'bad', value: Buffer.concat([unknown, TYPES.trade.toBuffer(makeTrades(1, { idPrefix: 'bad' })[0]!)]) }]);
    await first.stop();
    first = undefined;
    await proxy.close();
    proxy = undefined;

    // A sink that has never fetched those ids (its own decoding thread, a fresh codec) starts
    // while the registry is down. One decoding attempt waits 1 s here (5 s by default; the codec
    // alone waited 60 s and then dead-lettered the batch).
    db = await openTestDb('postgres');
    const sink = buildSink(config, { pool: db.pool, listen: false, schedule: false, registryWaitMs: 1_000 });
    const retries: number[] = [];
    sink.events.on('retry', (e) => retries.push(e.attempt));
    try {
      await sink.start();
      const dlq = `${prefix}.dlq`; // the default dead-letter topic
      // Status and /healthz say it waits for the registry, over several attempts of the same
      // batch (each of which dead-lettered it before).
      const health = await waitFor(
        'the connector to say it waits for the schema registry',
        async () => {
          const r = await sink.api.inject({ method: 'GET', url: '/healthz' });
          const body = r.json<{ status: string; connectors: Record<string, { state: string; problem: string | null }> }>();
          return retries.some((attempt) => attempt >= 3) && /waiting for the schema registry/.test(body.connectors[name]?.problem ?? '') ? { code: r.statusCode, body } : undefined;
        },
        60_000,
        200,
      );
      expect(health.code).toBe(503);
      expect(health.body.status).toBe('degraded');
      expect(health.body.connectors[name]).toMatchObject({ state: 'RUNNING', problem: expect.stringContaining(`127.0.0.1:${port}`) });
      const status = (await sink.api.inject({ method: 'GET', url: `/connectors/${name}/status` })).json<{ state: string; problem: string; deadLettered: number }>();
      expect(status).toMatchObject({ state: 'RUNNING', problem: expect.stringMatching(/waiting for the schema registry.*unreachable/), deadLettered: 0 });
      expect(Number((await db.pool.query<{ n: string }>('select count(*) as n from trades')).rows[0]!.n)).toBe(0);
      expect(await highWatermarks(brokers, dlq)).toBe(0);

      // The registry comes back. Its storage is in memory: the same schemas, registered in the
      // same order, get the same ids (checked), as a restored registry would; then its address opens.
      again = await startRegistry({ port: await freePort() });
      const rewriter = new AvroCodec({ topicPrefix: prefix, registry: new ConfluentRegistry(again.url) });
      await rewriter.prepare();
      expect(RECORD_KINDS.map((k) => rewriter.schemaId(k))).toEqual(ids);
      proxy = await startTcpProxy(port, again.port);

      await waitFor('every trade in the table', async () => Number((await db!.pool.query<{ n: string }>('select count(*) as n from trades')).rows[0]!.n) >= trades.length, 60_000, 250);
      const rows = await db.pool.query<{ id: string }>('select id from trades order by id');
      expect(rows.rows.map((r) => r.id)).toEqual(trades.map((t) => t.id).sort());
      // Only the record whose id the registry does not know (404, not retriable) was dead-lettered.
      await waitFor('the status to settle', async () => (await sink.api.inject({ method: 'GET', url: `/connectors/${name}/status` })).json<{ messagesProcessed: number }>().messagesProcessed >= trades.length, 30_000, 200);
      const after = (await sink.api.inject({ method: 'GET', url: `/connectors/${name}/status` })).json<{ problem: string | null; deadLettered: number; rowsWritten: number }>();
      expect(after).toMatchObject({ problem: null, deadLettered: 1, rowsWritten: trades.length });
      const letters = await readTopic(testKafka(), dlq, 1);
      expect(letters.map((l) => ({ key: l.key, stage: l.headers['dlq.stage'], reason: l.headers['dlq.reason'] }))).toEqual([{ key: 'bad', stage: 'decode', reason: expect.stringMatching(/schema id 9999: .*answered 404/) }]);
      expect(await highWatermarks(brokers, dlq)).toBe(1);
      console.log(`registry down: ${retries.length} decode retries, nothing dead-lettered meanwhile; ${rows.rows.length}/${trades.length} trades written once it answered, the one unknown id dead-lettered`);
    } finally {
      await sink.close();
    }
  }, 240_000);
});
