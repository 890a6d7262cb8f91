import pg from 'pg';
import { TickflowError, messageOf } from './errors.ts';
import { logger } from './log.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

const log = logger('db');

// bigint (count(*), sums of int8) as JS numbers: every value tickflow stores fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

export interface PoolOptions {
  /** Connections; the embedded TimescaleDB takes exactly one (see DESIGN.md). */
  readonly max: number;
  readonly connectTimeoutMs?: number;
  readonly applicationName?: string;
}

/** Masks the password of a connection URL for messages and logs. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

export function createPool(url: string, opts: PoolOptions): Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: 0,
    application_name: opts.applicationName ?? 'tickflow',
    keepAlive: true,
  });
  // A connection dying (server restart, pg_terminate_backend, a reset socket) must not crash the
  // process. pg-pool listens for 'error' only on idle clients: a checked-out client whose
  // connection drops emits 'error' too (even with a query in flight, which is also rejected), and
  // with no listener that is an unhandled 'error' event that ends the process. So every client
  // gets a listener of its own for life; the query in flight (if any) rejects and its caller
  // retries, and a client that errored is discarded when released (see withTransaction).
  pool.on('error', (err) => log.warn({ err: messageOf(err) }, 'idle database connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err: messageOf(err) }, 'database connection lost'));
  });
  return pool;
}

/** Runs fn in one transaction on one client; rolls back on error. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (e) {
    await client.query('rollback').catch(() => (broken = true));
    throw e;
  } finally {
    // A connection that could not even roll back is dead: discarded, not returned to the pool.
    client.release(broken);
  }
}

/** Translates a connection failure into a DATABASE_UNREACHABLE error naming DATABASE_URL. */
export function unreachable(url: string, e: unknown): TickflowError {
  return new TickflowError('DATABASE_UNREACHABLE', `DATABASE_URL=${maskUrl(url)} is unreachable: ${messageOf(e)}`, { retriable: true, cause: e });
}
