/**
 * Databases for tests. Each test file says which kinds it needs:
 * - `embedded`: the embedded TimescaleDB (PGlite + TimescaleDB over pglite-socket), a throwaway
 *   in-memory instance started in the test's own process; one connection (pool max 1).
 * - `postgres`: Debian's PostgreSQL server started by the global setup (several connections,
 *   outlives killed clients); each test file gets a database of its own.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, inject } from 'vitest';
import { createPool, type Pool } from '../../core/db.ts';
import { startEmbeddedDb } from '../../infra/embedded-db.ts';

export const DB_KINDS = ['embedded', 'postgres'] as const;
export type DbKind = (typeof DB_KINDS)[number];

export interface TestDb {
  readonly kind: DbKind;
  readonly url: string;
  readonly pool: Pool;
  close(): Promise<void>;
}

/** A fresh database on the shared PostgreSQL server; returns its URL. */
export async function createServerDatabase(prefix = 'test'): Promise<string> {
  const serverUrl = inject('postgresUrl');
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function openTestDb(kind: DbKind, opts: { poolMax?: number } = {}): Promise<TestDb> {
  if (kind === 'embedded') {
    const db = await startEmbeddedDb();
    const pool = createPool(db.url, { max: 1 });
    return {
      kind,
      url: db.url,
      pool,
      close: async () => {
        await pool.end();
        await db.stop();
      },
    };
  }
  const url = await createServerDatabase();
  const pool = createPool(url, { max: opts.poolMax ?? 5 });
  return { kind, url, pool, close: () => pool.end() };
}

/**
 * Runs the same suite on each named database kind: `describeEachDb(['embedded', 'postgres'],
 * (db) => { it('...', async () => { await db().pool.query(...) }) })`.
 */
export function describeEachDb(kinds: readonly DbKind[], body: (db: () => TestDb) => void): void {
  for (const kind of kinds) {
    describe(`on ${kind === 'embedded' ? 'the embedded TimescaleDB' : 'the PostgreSQL server'}`, () => {
      let current: TestDb | undefined;
      beforeAll(async () => {
        current = await openTestDb(kind);
      });
      afterAll(async () => {
        await current?.close();
      });
      body(() => {
        if (!current) throw new Error(`test database (${kind}) is not open`);
        return current;
      });
    });
  }
}
