/**
 * The two databases through the one `pg` code path: the embedded TimescaleDB (PGlite with the
 * TimescaleDB extension over pglite-socket) and Debian's PostgreSQL server.
 */
import { describe, expect, it } from 'vitest';
import { migrate } from '../migrations/runner.ts';
import { describeEachDb } from './harness/db.ts';

/** 3 hours of one reading per minute: value = minute index. */
const minutes = Array.from({ length: 180 }, (_, i) => i);
const start = Date.parse('2026-01-05T10:00:00Z');
const expectedHourly = [0, 1, 2].map((h) => ({
  bucket: new Date(start + h * 3_600_000).toISOString(),
  n: 60,
  total: minutes.slice(h * 60, h * 60 + 60).reduce((a, b) => a + b, 0),
}));

async function fill(db: ReturnType<Parameters<Parameters<typeof describeEachDb>[1]>[0]>, table: string): Promise<void> {
  await db.pool.query(
    `insert into ${table} (ts, value) select * from unnest($1::timestamptz[], $2::float8[])`,
    [minutes.map((m) => new Date(start + m * 60_000).toISOString()), minutes],
  );
}

describe('embedded TimescaleDB', () => {
  describeEachDb(['embedded'], (db) => {
    it('creates a hypertable and answers a time_bucket query right', async () => {
      const { pool } = db();
      await migrate(pool);
      await pool.query('create table readings (ts timestamptz not null, value double precision not null)');
      await pool.query("select create_hypertable('readings', by_range('ts', interval '1 day'))");
      await fill(db(), 'readings');
      const ht = await pool.query("select hypertable_name from timescaledb_information.hypertables where hypertable_name = 'readings'");
      expect(ht.rowCount).toBe(1);
      const r = await pool.query("select time_bucket('1 hour', ts) as bucket, count(*) as n, sum(value) as total from readings group by 1 order by 1");
      expect(r.rows.map((x) => ({ bucket: (x.bucket as Date).toISOString(), n: x.n, total: x.total }))).toEqual(expectedHourly);
    });
  });
});

describe('plain PostgreSQL server', () => {
  describeEachDb(['postgres'], (db) => {
    it('gets a compatible time_bucket from the migrations and the same answer', async () => {
      const { pool } = db();
      const r0 = await migrate(pool);
      expect(r0.flavour).toBe('plain');
      await pool.query('create table readings (ts timestamptz not null, value double precision not null)');
      await fill(db(), 'readings');
      const r = await pool.query("select time_bucket('1 hour', ts) as bucket, count(*) as n, sum(value) as total from readings group by 1 order by 1");
      expect(r.rows.map((x) => ({ bucket: (x.bucket as Date).toISOString(), n: x.n, total: x.total }))).toEqual(expectedHourly);
    });

    it('serves several connections at once', async () => {
      const { pool } = db();
      const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      try {
        await Promise.all(clients.map((c) => c.query('begin')));
        const pids = await Promise.all(clients.map((c) => c.query('select pg_backend_pid() as pid')));
        expect(new Set(pids.map((p) => p.rows[0].pid)).size).toBe(3);
        await Promise.all(clients.map((c) => c.query('commit')));
      } finally {
        clients.forEach((c) => c.release());
      }
    });
  });
});

describe('migrations', () => {
  describeEachDb(['embedded', 'postgres'], (db) => {
    /** Every object the migrations can create, with its definition, as one comparable snapshot. */
    async function snapshot(): Promise<unknown[]> {
      const { rows } = await db().pool.query(`
        select 'relation' as what, c.relname as name, c.relkind::text as detail from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname not like '\\_timescaledb%' and n.nspname not like 'timescaledb%'
        union all
        select 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', md5(pg_get_functiondef(p.oid)) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname = 'public' and p.prokind <> 'a'
        union all
        select 'extension', extname, extversion from pg_extension
        union all
        select 'migration', version::text, name || ':' || checksum from tickflow_migrations
        order by 1, 2`);
      return rows;
    }

    it('running them twice changes nothing', async () => {
      const first = await migrate(db().pool);
      expect(first.applied.length).toBeGreaterThan(0);
      const before = await snapshot();
      const second = await migrate(db().pool);
      expect(second.applied).toEqual([]);
      expect(second.skipped).toBe(first.applied.length);
      expect(await snapshot()).toEqual(before);
      if (db().kind === 'embedded') expect(before).toContainEqual(expect.objectContaining({ what: 'extension', name: 'timescaledb' }));
    });
  });
});
