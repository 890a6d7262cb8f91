/**
 * Crash test on the PostgreSQL server: `tickflow sink` processes are SIGKILLed at random points
 * while records flow, and restarted; every record ends up in the table exactly once. A BEFORE
 * INSERT trigger counts every committed insert attempt per key (it fires even for rows that
 * `on conflict do nothing` then skips), so a batch written twice would show, even though the
 * primary key keeps the table itself free of duplicates: the offsets stored with each batch
 * must make replays after a crash no-ops, not just harmless.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Pool } from '../core/db.ts';
import { ensureTopics, partitionOffsets } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { topicFor } from '../schemas/index.ts';
import { createServerDatabase } from './harness/db.ts';
import { prepareCountedDatabase } from './harness/sink-process.ts';
import { codecFor, makeTrades, produce, testKafka, uniquePrefix, waitFor } from './harness/sink.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const kafka = testKafka();

interface Proc {
  readonly child: ChildProcess;
  readonly log: string[];
  readonly exited: Promise<void>;
}

function spawnSink(configFile: string, databaseUrl: string): Proc {
  const child = spawn(process.execPath, [BIN, 'sink', '--config', configFile], {
    env: { ...process.env, DATABASE_URL: databaseUrl, KAFKA_BROKERS: inject('kafkaBrokers').join(','), LOG_LEVEL: 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, log, exited };
}

async function kill(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

async function setup(tag: string, partitions: number): Promise<{ prefix: string; pool: Pool; url: string; configFile: string; name: string }> {
  const prefix = uniquePrefix(tag);
  const url = await createServerDatabase('crash');
  const pool = await prepareCountedDatabase(url);
  await ensureTopics(kafka, { topicPrefix: prefix, partitions, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
  const name = `${prefix}-trades`;
  const configFile = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-crash-')), 'tickflow.yaml');
  writeFileSync(
    configFile,
    [
      'kafka:',
      `  topicPrefix: ${prefix}`,
      `  clientId: ${prefix}`,
      `  partitions: ${partitions}`,
      'sink:',
      '  apiPort: 0',
      '  connectors:',
      `    - { name: ${name}, table: trades, insertMode: insert, batchMaxRows: 400, lingerMs: 20, sessionTimeoutMs: 6000 }`,
      '',
    ].join('\n'),
  );
  return { prefix, pool, url, configFile, name };
}

/** Produces `total` trades in bursts while the test kills sinks; resolves when all are sent. */
async function produceOverTime(prefix: string, total: number, burst: number, everyMs: number): Promise<void> {
  const codec = codecFor(prefix);
  const trades = makeTrades(total, { idPrefix: `${prefix}-` });
  for (let i = 0; i < total; i += burst) {
    await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(i, i + burst));
    await sleep(everyMs);
  }
}

async function count(pool: Pool): Promise<number> {
  return (await pool.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;
}

async function assertExactlyOnce(pool: Pool, prefix: string, name: string, total: number): Promise<void> {
  const ids = (await pool.query<{ id: string }>('select id from trades order by id')).rows.map((r) => r.id);
  expect(ids).toEqual(makeTrades(total, { idPrefix: `${prefix}-` }).map((t) => t.id).sort());
  const attempts = (await pool.query<{ keys: number; max: number; sum: number }>('select count(*)::int as keys, max(n)::int as max, sum(n)::int as sum from trade_attempts')).rows[0]!;
  expect(attempts).toEqual({ keys: total, max: 1, sum: total });
  const stored = (await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from sink_offsets where connector = $1 order by partition', [name])).rows;
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await partitionOffsets(admin, topicFor(prefix, 'trade'));
  await admin.disconnect();
  // Every partition that got records is stored as done up to its end (keys may leave one empty).
  const withRecords = [...offsets].filter(([, o]) => o.high > 0).sort((a, b) => a[0] - b[0]);
  expect(stored.map((s) => [s.partition, Number(s.next_offset)])).toEqual(withRecords.map(([p, o]) => [p, o.high]));
}

describe('crash test: tickflow sink SIGKILLed at random points on the PostgreSQL server', () => {
  const procs: Proc[] = [];
  const pools: Pool[] = [];
  beforeAll(() => undefined);
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) await kill(p);
    for (const p of pools) await p.end();
  });

  it('one instance, killed and restarted while records flow: every record once', async () => {
    const total = 20_000;
    const { prefix, pool, configFile, name, url } = await setup('crash1', 3);
    pools.push(pool);
    const t0 = Date.now();
    const producing = produceOverTime(prefix, total, 400, 500);
    const kills: { afterMs: number; rows: number; at: number }[] = [];
    for (let round = 0; round < 4; round++) {
      const p = spawnSink(configFile, url);
      procs.push(p);
      // Kill once it is writing, at a random point within the next few batches.
      const before = await count(pool);
      await waitFor('the sink to write', async () => (await count(pool)) > before || p.child.exitCode !== null, 30_000, 50).catch(() => undefined);
      expect(p.child.exitCode, p.log.join('')).toBeNull();
      const afterMs = Math.round(200 + Math.random() * 1_500);
      await sleep(afterMs);
      await kill(p);
      kills.push({ afterMs, rows: await count(pool), at: Date.now() - t0 });
    }
    console.log('kills (single instance):', JSON.stringify(kills), 'production ends at', await producing.then(() => Date.now() - t0), 'ms');
    const last = spawnSink(configFile, url);
    procs.push(last);
    await waitFor('every record', async () => (await count(pool)) >= total, 60_000, 250);
    await sleep(500);
    await assertExactlyOnce(pool, prefix, name, total);
    // The kills landed while records were flowing, not after the end.
    expect(kills.filter((k) => k.rows < total).length).toBeGreaterThanOrEqual(3);
    last.child.kill('SIGTERM');
    await last.exited;
  }, 120_000);

  it('two instances sharing the topic, one killed and restarted: every record once', async () => {
    const total = 20_000;
    const { prefix, pool, configFile, name, url } = await setup('crash2', 4);
    pools.push(pool);
    const stable = spawnSink(configFile, url);
    procs.push(stable);
    const t0 = Date.now();
    const producing = produceOverTime(prefix, total, 400, 500);
    const kills: { rows: number; at: number }[] = [];
    for (let round = 0; round < 3; round++) {
      const p = spawnSink(configFile, url);
      procs.push(p);
      // Once it has joined the group (the rebalance gave it partitions), at a random point.
      await waitFor('the sink to start', () => /sink: \d+ connector/.test(p.log.join('')) || p.child.exitCode !== null, 30_000, 50);
      await sleep(Math.round(500 + Math.random() * 2_000));
      expect(p.child.exitCode, p.log.join('')).toBeNull();
      await kill(p);
      kills.push({ rows: await count(pool), at: Date.now() - t0 });
    }
    console.log('kills (two instances):', JSON.stringify(kills), 'production ends at', await producing.then(() => Date.now() - t0), 'ms');
    await waitFor('every record', async () => (await count(pool)) >= total, 60_000, 250);
    await sleep(500);
    expect(stable.child.exitCode, stable.log.join('')).toBeNull();
    await assertExactlyOnce(pool, prefix, name, total);
    expect(kills.filter((k) => k.rows < total).length).toBeGreaterThanOrEqual(2);
    stable.child.kill('SIGTERM');
    await stable.exited;
  }, 120_000);
});
