/**
 * Outages under a running `tickflow broadcast` process (a child process, as a user runs it; no
 * supervisor restarts it, so it must ride them out):
 *
 * (a) its Kafka broker (this file's own, stopped ~15 s and started again on the same port and data)
 *     while the broadcaster works through a backlog for a slow receiver, records produced before
 *     and after;
 * (b) its PostgreSQL server (this file's own, stopped ~15 s with its data kept, started again)
 *     while records keep arriving in Kafka.
 *
 * Afterwards the process is still running, and every trade an independent filter over what was
 * produced selects reached the node:http receiver (nothing missing); a record received twice
 * carries the same event id and the same record; the `crosses above` registration fired exactly
 * on the crossings (its state survives); (b) the log names the database as what failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createPool, type Pool } from '../core/db.ts';
import { createKafka, ensureTopics, type Kafka } from '../core/kafka.ts';
import { startKafka, stopKafkaAt, type KafkaBroker } from '../infra/kafka.ts';
import { freePort } from '../infra/process.ts';
import { startPostgresServer, type PostgresServer } from '../infra/postgres-server.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { addBroadcaster, addRegistration, crossingsAbove, startReceiver, waitCaughtUp, type Receiver } from './harness/broadcast.ts';
import { createServerDatabase } from './harness/db.ts';
import { sleep, until } from './harness/gateway.ts';
import { codecFor, makeTrades, produce, uniquePrefix } from './harness/sink.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const OUTAGE_MS = 15_000;
const CHUNK = 50;
const LEVEL = 150;
/** The independent filters: what each registration must receive. */
const big = (t: Trade) => t.exchange === 'binance' && t.amount > 0.4;
const btc = (t: Trade) => t.exchange === 'binance' && t.symbol === 'BTC/USDT';

interface Proc {
  readonly child: ChildProcess;
  readonly log: string[];
  readonly exited: Promise<number | null>;
}

function spawnBroadcast(configFile: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [BIN, 'broadcast', '--config', configFile], {
    env: { ...process.env, ...env, LOG_LEVEL: 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, log, exited };
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

function writeConfig(prefix: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-bcoutage-')), 'tickflow.yaml');
  writeFileSync(
    file,
    ['kafka:', `  topicPrefix: ${prefix}`, `  clientId: ${prefix}`, '  partitions: 2', 'broadcast:', `  groupId: ${prefix}-broadcast`, '  reloadMs: 500', '  metricsPort: 0', `  batchMaxRecords: ${CHUNK}`, ''].join('\n'),
  );
  return file;
}

async function register(pool: Pool, hook: Receiver): Promise<void> {
  await addBroadcaster(pool, 'hook', 'http', { url: hook.url, timeoutMs: 5_000 });
  await addRegistration(pool, { name: 'big', broadcaster: 'hook', kind: 'trade', exchange: 'binance', symbol: '*', predicate: 'amount > 0.4' });
  await addRegistration(pool, { name: 'btc-cross', broadcaster: 'hook', kind: 'trade', exchange: 'binance', symbol: 'BTC/USDT', predicate: `price crosses above ${LEVEL}` });
}

/** The user outcome shared by both outages. */
function expectDelivered(hook: Receiver, trades: readonly Trade[]): void {
  const ids = (reg: string) => [...new Set(hook.got.filter((g) => g.body.registration === reg).map((g) => String(g.body.record.id)))].sort();
  // Nothing missing, nothing extra, against the independent filter.
  const want = trades.filter(big).map((t) => t.id).sort();
  expect(want.length).toBeGreaterThan(500);
  expect(ids('big')).toEqual(want);
  // `crosses above` fired exactly on the crossings: its state was kept through the outage.
  const crossings = crossingsAbove(trades.filter(btc), [LEVEL]).map((t) => t.id).sort();
  expect(crossings.length).toBeGreaterThan(10);
  expect(ids('btc-cross')).toEqual(crossings);
  // A repeat carries the same event id, and an event id always the same record.
  const recordOf = new Map<string, string>();
  const idOf = new Map<string, string>();
  for (const g of hook.got) {
    const key = `${g.body.registration}/${String(g.body.record.id)}`;
    expect(recordOf.get(g.id) ?? key, g.id).toBe(key);
    expect(idOf.get(key) ?? g.id, key).toBe(g.id);
    recordOf.set(g.id, key);
    idOf.set(key, g.id);
  }
}

/** The distinct log lines of a stretch of a process's output (time stamp cut), for the figures. */
function distinctLines(chunks: readonly string[]): string[] {
  return [...new Set(chunks.join('').split('\n').filter((l) => l.trim()).map((l) => l.replace(/^\d\d:\d\d:\d\d\S*\s+/, '').slice(0, 240)))];
}

describe('(a) the Kafka broker stopped ~15 s under a running `tickflow broadcast`', () => {
  const prefix = uniquePrefix('bcko');
  const topic = topicFor(prefix, 'trade');
  let dataDir: string | undefined;
  let broker: KafkaBroker | undefined;
  let kafka: Kafka;
  let pool: Pool | undefined;
  let hook: Receiver | undefined;
  let proc: Proc | undefined;
  const trades = makeTrades(4_000, { idPrefix: `${prefix}-` });
  const figures: Record<string, number> = {};

  afterAll(async () => {
    console.log('(a)', JSON.stringify(figures));
    await stopProc(proc, 'SIGKILL');
    await hook?.close();
    await pool?.end();
    await broker?.stop().catch(() => undefined);
    if (dataDir) {
      await stopKafkaAt(dataDir).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('keeps running, and after the broker is back every matching record is delivered', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'tickflow-bc-kafka-outage-'));
    const port = await freePort();
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    kafka = createKafka({ brokers: broker.brokers, clientId: 'bc-outage', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
    const url = await createServerDatabase('bcko');
    pool = createPool(url, { max: 2 });
    await migrate(pool);
    await ensureTopics(kafka, { topicPrefix: prefix, partitions: 2, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
    // A slow receiver: the backlog is still being delivered when the broker goes.
    hook = await startReceiver(async () => {
      await sleep(10);
      return 200;
    });
    await register(pool, hook);
    const codec = codecFor(prefix);
    const before = trades.slice(0, 2_500);
    await produce(kafka, codec, topic, 'trade', before);
    proc = spawnBroadcast(writeConfig(prefix), { DATABASE_URL: url, KAFKA_BROKERS: broker.brokers.join(',') });
    await until(() => proc!.log.join('').includes('broadcast: running'), 60_000, 'the broadcast process to run');
    await until(() => hook!.got.length >= 100, 60_000, 'deliveries before the outage');

    const logFrom = proc.log.length;
    const b = broker;
    broker = undefined;
    await b.stop();
    figures.receivedAtStop = hook.got.length;
    await sleep(OUTAGE_MS);
    figures.receivedWhileDown = hook.got.length - figures.receivedAtStop;
    const downLog = proc.log.slice(logFrom).join('');
    console.log('(a) logged while the broker was down:\n', distinctLines(proc.log.slice(logFrom)).join('\n '));
    // Logged naming Kafka as what failed.
    expect(downLog, downLog).toMatch(/stage=consumer[^\n]*Kafka \([^\n]*(ECONNREFUSED|Connection error)/i);
    expect(proc.child.exitCode, proc.log.join('')).toBeNull();
    broker = await startKafka({ dataDir, port, heapMb: 384 });
    const upAt = Date.now();
    await produce(kafka, codec, topic, 'trade', trades.slice(before.length));
    await waitCaughtUp(pool, kafka, `${prefix}-broadcast`, topic, 180_000);
    figures.caughtUpMsAfterRestart = Date.now() - upAt;
    await sleep(1_000);

    expect(proc.child.exitCode, proc.log.join('')).toBeNull();
    expect(proc.child.signalCode).toBeNull();
    figures.received = hook.got.length;
    expectDelivered(hook, trades);
    await stopProc(proc, 'SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 420_000);
});

describe('(b) the PostgreSQL server stopped ~15 s under a running `tickflow broadcast`', () => {
  const prefix = uniquePrefix('bcdo');
  const topic = topicFor(prefix, 'trade');
  const kafka = createKafka({ brokers: inject('kafkaBrokers'), clientId: 'bc-db-outage', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  let server: PostgresServer | undefined;
  let pool: Pool | undefined;
  let hook: Receiver | undefined;
  let proc: Proc | undefined;
  const trades = makeTrades(4_000, { idPrefix: `${prefix}-` });
  const figures: Record<string, number> = {};

  afterAll(async () => {
    console.log('(b)', JSON.stringify(figures));
    await stopProc(proc, 'SIGKILL');
    await hook?.close();
    await pool?.end().catch(() => undefined);
    await server?.stop();
  });

  it('keeps running, names the database in its log while it is down, and delivers every matching record', async () => {
    server = await startPostgresServer();
    pool = createPool(server.url, { max: 1 });
    await migrate(pool);
    await ensureTopics(kafka, { topicPrefix: prefix, partitions: 2, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
    hook = await startReceiver(async () => {
      await sleep(5);
      return 200;
    });
    await register(pool, hook);
    // The test's reader is closed during the outage (the broadcaster's pool is what is tested).
    await pool.end();
    pool = undefined;
    const codec = codecFor(prefix);
    proc = spawnBroadcast(writeConfig(prefix), { DATABASE_URL: server.url, KAFKA_BROKERS: inject('kafkaBrokers').join(',') });
    await until(() => proc!.log.join('').includes('broadcast: running'), 60_000, 'the broadcast process to run');

    // Records keep arriving in Kafka throughout: 200 every 500 ms.
    let sent = 0;
    const producing = (async () => {
      for (; sent < trades.length; sent += 200) {
        await produce(kafka, codec, topic, 'trade', trades.slice(sent, sent + 200));
        await sleep(500);
      }
    })();
    await until(() => hook!.got.length >= 100, 60_000, 'deliveries before the outage');
    const logFrom = proc.log.length;
    await server.stop({ keepData: true });
    figures.sentAtStop = sent;
    figures.receivedAtStop = hook.got.length;
    await sleep(OUTAGE_MS);
    figures.receivedWhileDown = hook.got.length - figures.receivedAtStop;
    figures.sentWhileDown = sent - figures.sentAtStop;
    const downLog = proc.log.slice(logFrom).join('');
    console.log('(b) logged while the database was down:\n', distinctLines(proc.log.slice(logFrom)).join('\n '));
    expect(proc.child.exitCode, proc.log.join('')).toBeNull();
    await server.start();
    await producing;
    pool = createPool(server.url, { max: 1 });
    await waitCaughtUp(pool, kafka, `${prefix}-broadcast`, topic, 180_000);
    await sleep(1_000);

    expect(proc.child.exitCode, proc.log.join('')).toBeNull();
    expect(figures.sentWhileDown).toBeGreaterThan(1_000);
    // While it was down: the commit's retries logged, naming the database as what failed (not only an errno).
    expect(downLog, downLog).toMatch(/stage=commit[^\n]*the database \([^\n]*(ECONNREFUSED|terminat|shut)/i);
    figures.received = hook.got.length;
    expectDelivered(hook, trades);
    // The counts survived with the positions: every matched delivery counted at least once.
    const stats = (await pool.query<{ registration: string; delivered: string }>('select registration, delivered from broadcast_stats')).rows;
    const delivered = new Map(stats.map((s) => [s.registration, Number(s.delivered)]));
    expect(delivered.get('big')).toBeGreaterThanOrEqual(trades.filter(big).length);
    await stopProc(proc, 'SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 420_000);
});
