/**
 * `tickflow sink` as a separate process, for the tests about the process itself (killed,
 * restarted, its database or broker failing under it): a config file of the test's own, the
 * brokers and database given by environment as a deployment would, the output kept.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { createPool, type Pool } from '../../core/db.ts';
import { partitionOffsets, type Kafka } from '../../core/kafka.ts';
import { sleep } from '../../core/retry.ts';
import { migrate } from '../../migrations/runner.ts';
import { topicFor } from '../../schemas/index.ts';
import { codecFor, makeTrades, produce, produceRaw } from './sink.ts';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'tickflow.js');

export interface SinkProcess {
  readonly child: ChildProcess;
  readonly log: string[];
  readonly exited: Promise<void>;
  /** Wall-clock time of the spawn. */
  readonly startedAt: number;
  output(): string;
  alive(): boolean;
}

export function spawnSink(configFile: string, databaseUrl: string, env: Record<string, string> = {}): SinkProcess {
  const startedAt = Date.now();
  const child = spawn(process.execPath, [BIN, 'sink', '--config', configFile], {
    env: { ...process.env, DATABASE_URL: databaseUrl, KAFKA_BROKERS: inject('kafkaBrokers').join(','), LOG_LEVEL: 'warn', LOG_FORMAT: 'json', KAFKAJS_NO_PARTITIONER_WARNING: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, log, exited, startedAt, output: () => log.join(''), alive: () => child.exitCode === null && child.signalCode === null };
}

export async function killSink(p: SinkProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!p.alive()) return;
  p.child.kill(signal);
  await p.exited;
}

/** A config file for `tickflow sink`: one trades connector on the test's own topic prefix. */
export function sinkConfigFile(prefix: string, opts: { partitions?: number; apiPort?: number; connector?: string } = {}): { file: string; name: string } {
  const name = `${prefix}-trades`;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-sinkproc-')), 'tickflow.yaml');
  writeFileSync(
    file,
    [
      'kafka:',
      `  topicPrefix: ${prefix}`,
      `  clientId: ${prefix}`,
      `  partitions: ${opts.partitions ?? 3}`,
      'database:',
      '  connectTimeoutMs: 2000',
      'sink:',
      `  apiPort: ${opts.apiPort ?? 0}`,
      '  connectors:',
      `    - { name: ${name}, table: trades, insertMode: insert, batchMaxRows: 400, lingerMs: 20${opts.connector ? `, ${opts.connector}` : ''} }`,
      '',
    ].join('\n'),
  );
  return { file, name };
}

/**
 * Migrates the database and adds a BEFORE INSERT trigger counting every committed insert
 * attempt per key (it fires even for rows `on conflict do nothing` skips), so a batch written
 * twice shows although the primary key keeps the table free of duplicates.
 */
export async function prepareCountedDatabase(url: string): Promise<Pool> {
  const pool = createPool(url, { max: 3 });
  await migrate(pool);
  await pool.query(`create table trade_attempts (exchange text, symbol text, ts timestamptz, id text, n int not null, primary key (exchange, symbol, ts, id))`);
  await pool.query(`create function count_attempt() returns trigger language plpgsql as $$
    begin
      insert into trade_attempts values (new.exchange, new.symbol, new.ts, new.id, 1)
      on conflict (exchange, symbol, ts, id) do update set n = trade_attempts.n + 1;
      return new;
    end $$`);
  await pool.query('create trigger trades_attempts before insert on trades for each row execute function count_attempt()');
  return pool;
}

/**
 * Produces `total` trades in bursts of `burst` every `everyMs`; `sent()` says how many so far.
 * With `spreadOver` partitions, trade i goes to partition i mod spreadOver (the few test keys
 * hash to some partitions only), so every partition keeps receiving records.
 */
export function produceOverTime(kafka: Kafka, prefix: string, total: number, burst: number, everyMs: number, spreadOver?: number): { done: Promise<void>; sent: () => number } {
  const codec = codecFor(prefix);
  const trades = makeTrades(total, { idPrefix: `${prefix}-` });
  let sent = 0;
  const topic = topicFor(prefix, 'trade');
  const done = (async () => {
    for (let i = 0; i < total; i += burst) {
      const slice = trades.slice(i, i + burst);
      if (spreadOver) await produceRaw(kafka, topic, slice.map((t, j) => ({ key: `${t.exchange}:${t.symbol}`, value: codec.encode('trade', t), partition: (i + j) % spreadOver })));
      else await produce(kafka, codec, topic, 'trade', slice);
      sent = Math.min(total, i + burst);
      await sleep(everyMs);
    }
  })();
  return { done, sent: () => sent };
}

export async function countRows(pool: Pool): Promise<number> {
  return (await pool.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;
}

/** What a user checks after faults: every produced trade once in the table, each inserted once, offsets at the end. */
export async function exactlyOnceReport(pool: Pool, kafka: Kafka, prefix: string, name: string, total: number) {
  const ids = (await pool.query<{ id: string }>('select id from trades order by id')).rows.map((r) => r.id);
  const expected = new Set(makeTrades(total, { idPrefix: `${prefix}-` }).map((t) => t.id));
  const stored = new Set(ids);
  const attempts = (await pool.query<{ keys: number; max: number; sum: number }>('select count(*)::int as keys, coalesce(max(n), 0)::int as max, coalesce(sum(n), 0)::int as sum from trade_attempts')).rows[0]!;
  const offsets = (await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from sink_offsets where connector = $1 order by partition', [name])).rows;
  const admin = kafka.admin();
  await admin.connect();
  const high = await partitionOffsets(admin, topicFor(prefix, 'trade'));
  await admin.disconnect();
  return {
    rows: ids.length,
    lost: [...expected].filter((id) => !stored.has(id)).length,
    unexpected: ids.filter((id) => !expected.has(id)).length,
    insertAttempts: attempts.sum,
    doubled: attempts.sum - attempts.keys,
    offsetsAtEnd: [...high].filter(([, o]) => o.high > 0).every(([p, o]) => offsets.find((s) => s.partition === p)?.next_offset === o.high),
  };
}
