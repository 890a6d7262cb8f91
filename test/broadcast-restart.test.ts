/**
 * `tickflow broadcast` killed with SIGKILL mid-run and started again, on the PostgreSQL server
 * (the database outlives the killed client): the sim's trades through the gateway into Kafka, the
 * broadcaster a separate process delivering to a slow local receiver. Afterwards every matching
 * record was received (nothing skipped), and what was received twice is exactly what the killed
 * process was delivering in its last, uncommitted chunk: each repeat has the same event id, an
 * offset at or past the partition's stored position at the kill and within one chunk of it.
 * The `crosses above` state is committed with the offsets, so it fires once per crossing across
 * the restart too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafka, ensureTopics } from '../core/kafka.ts';
import { createPool, type Pool } from '../core/db.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { migrate } from '../migrations/runner.ts';
import { topicFor, type Trade } from '../schemas/index.ts';
import { buildSim, type Sim, type SimTrade } from '../sim/index.ts';
import { addBroadcaster, addRegistration, crossLevels, crossesAbovePredicate, crossingsAbove, startReceiver, waitCaughtUp, type Receiver } from './harness/broadcast.ts';
import { createServerDatabase } from './harness/db.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { readTopics } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const LEVEL = 3000;
const LEVELS = crossLevels(LEVEL, 2.5);
const CHUNK = 20;

interface Proc {
  readonly child: ChildProcess;
  readonly log: string[];
  readonly exited: Promise<void>;
}

function spawnBroadcast(configFile: string, databaseUrl: string): Proc {
  const child = spawn(process.execPath, [BIN, 'broadcast', '--config', configFile], {
    env: { ...process.env, DATABASE_URL: databaseUrl, KAFKA_BROKERS: inject('kafkaBrokers').join(','), LOG_LEVEL: 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, log, exited };
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

describe('tickflow broadcast killed (SIGKILL) mid-run and restarted', () => {
  const brokers = inject('kafkaBrokers');
  const kafka = createKafka({ brokers, clientId: 'bc-restart', connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
  const prefix = uniquePrefix('bcr');
  const groupId = `${prefix}-broadcast`;
  let pool: Pool;
  let sim: Sim;
  let gw: Gateway | undefined;
  let hook: Receiver;
  let first: Proc | undefined;
  let second: Proc | undefined;
  /** The stored positions right after the kill. */
  let atKill = new Map<number, number>();
  let receivedAtKill = 0;
  const emitted = new Map<string, SimTrade[]>();

  beforeAll(async () => {
    const url = await createServerDatabase('bcrestart');
    pool = createPool(url, { max: 3 });
    await migrate(pool);
    await ensureTopics(kafka, { topicPrefix: prefix, partitions: 2, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
    // A slow receiver: each delivery takes 20 ms, so the kill lands while a chunk is being delivered.
    hook = await startReceiver(async () => {
      await sleep(20);
      return 200;
    });
    await addBroadcaster(pool, 'hook', 'http', { url: hook.url, timeoutMs: 5_000 });
    await addRegistration(pool, { name: 'all', broadcaster: 'hook', kind: 'trade', exchange: 'sim', symbol: '*' });
    await addRegistration(pool, { name: 'eth-cross', broadcaster: 'hook', kind: 'trade', exchange: 'sim', symbol: 'ETH/USDT', predicate: crossesAbovePredicate(LEVELS) });
    const configFile = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-bcrestart-')), 'tickflow.yaml');
    writeFileSync(
      configFile,
      ['kafka:', `  topicPrefix: ${prefix}`, `  clientId: ${prefix}`, '  partitions: 2', 'broadcast:', `  groupId: ${groupId}`, '  reloadMs: 200', '  metricsPort: 0', `  batchMaxRecords: ${CHUNK}`, ''].join('\n'),
    );

    sim = buildSim({ seed: 5, symbols: SYMBOLS, tradesPerSecond: 30, startPrice: { 'BTC/USDT': 60_000, 'ETH/USDT': LEVEL }, volatility: 5e-4, historyDays: 1 });
    await sim.start();
    first = spawnBroadcast(configFile, url);
    await until(() => first!.log.join('').includes('broadcast: running'), 60_000, 'the first broadcast process to run');
    gw = buildGateway(gatewayConfig(brokers, prefix, [{ id: 'binance', name: 'sim', symbols: SYMBOLS, channels: { trades: {} }, options: simOptions(sim) }]));
    await gw.start();
    await until(() => hook.got.length >= 150, 60_000, 'deliveries before the kill');
    await stopProc(first, 'SIGKILL');
    receivedAtKill = hook.got.length;
    const rows = (await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from broadcast_offsets where group_id = $1 and topic = $2', [groupId, topicFor(prefix, 'trade')])).rows;
    atKill = new Map(rows.map((r) => [r.partition, r.next_offset]));
    await sleep(1_500);
    second = spawnBroadcast(configFile, url);
    await sleep(4_000);
    await gw.close();
    gw = undefined;
    const inTopic: Trade[] = (await readTopics(brokers, prefix, ['trade'])).trade;
    for (const symbol of SYMBOLS) {
      const ids = inTopic.filter((t) => t.symbol === symbol).map((t) => Number(t.id));
      emitted.set(symbol, sim.emitted.trades(symbol, { fromId: Math.min(...ids) }).filter((t) => t.id <= Math.max(...ids)));
    }
    await waitCaughtUp(pool, kafka, groupId, topicFor(prefix, 'trade'), 120_000);
    await stopProc(second, 'SIGTERM');
  }, 240_000);

  afterAll(async () => {
    await gw?.close();
    await stopProc(first, 'SIGKILL');
    await stopProc(second, 'SIGKILL');
    await hook?.close();
    await sim?.close();
    await pool?.end();
  });

  const parse = (id: string) => {
    const m = /^(.+):(\d+):(\d+):([^:]+)$/.exec(id)!;
    return { partition: Number(m[2]), offset: Number(m[3]), registration: m[4]! };
  };

  it('was killed mid-run, after some deliveries and before the end', () => {
    expect(receivedAtKill).toBeGreaterThanOrEqual(150);
    expect(hook.got.length).toBeGreaterThan(receivedAtKill);
    expect(atKill.size).toBeGreaterThan(0);
  });

  it('nothing is missing: every trade of the run reached the receiver', () => {
    const want = SYMBOLS.flatMap((s) => emitted.get(s)!).map((t) => String(t.id)).sort();
    const got = [...new Set(hook.got.filter((g) => g.body.registration === 'all').map((g) => String(g.body.record.id)))].sort();
    expect(want.length).toBeGreaterThan(300);
    expect(got).toEqual(want);
  });

  it('repeats are only the chunk the killed process had not committed, with the same event ids', () => {
    const counts = new Map<string, number>();
    for (const g of hook.got) counts.set(g.id, (counts.get(g.id) ?? 0) + 1);
    // Each id at most twice (once per process), and only ids of the chunk in flight at the kill:
    // offsets from the partition's stored position, less than one chunk past it.
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(2);
    const repeated = [...counts].filter(([, n]) => n === 2).map(([id]) => id);
    for (const id of repeated) {
      const { partition, offset } = parse(id);
      const stored = atKill.get(partition)!;
      expect(offset, id).toBeGreaterThanOrEqual(stored);
      expect(offset, id).toBeLessThan(stored + CHUNK);
    }
    // What the killed process committed is never delivered again.
    for (const g of hook.got.slice(receivedAtKill)) {
      const { partition, offset } = parse(g.id);
      if (offset < (atKill.get(partition) ?? 0)) expect.fail(`${g.id} was committed before the kill and delivered again`);
    }
  });

  it('`crosses above` fires once per crossing across the restart (its state is committed with the offsets)', () => {
    const eth = emitted.get('ETH/USDT')!;
    const crossings = crossingsAbove(eth, LEVELS).map((t) => String(t.id));
    expect(crossings.length).toBeGreaterThan(0);
    const got = [...new Set(hook.got.filter((g) => g.body.registration === 'eth-cross').map((g) => g.id))].map((id) => String(hook.got.find((g) => g.id === id)!.body.record.id));
    expect(got.sort()).toEqual(crossings.sort());
  });
});
