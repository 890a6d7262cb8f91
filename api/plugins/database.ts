/**
 * The API's database: a pool given by the caller (tests, a process running several parts) or
 * opened here from the config (closed with the app). Every query is a named prepared statement
 * with a client-side timeout, so a request gets its answer even when the database cannot cancel
 * a statement (the embedded one); pools opened here also carry a server-side statement_timeout.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ConfigForApi } from '../config.ts';
import type { Pool } from '../../core/db.ts';
import { openDatabase } from '../../infra/database.ts';
import { migrate } from '../../migrations/runner.ts';
import { translateDbError } from '../errors.ts';
import { metrics } from '../telemetry.ts';
import { KnownInstruments } from '../known.ts';

export interface ApiDatabase {
  readonly pool: Pool;
  /** Runs one statement, prepared under a name derived from its text. */
  query<R extends object>(label: string, text: string, values: readonly unknown[]): Promise<R[]>;
  /** True when the database answers within a short bound. */
  ping(timeoutMs: number): Promise<boolean>;
}

declare module 'fastify' {
  interface FastifyInstance {
    db: ApiDatabase;
    /** Which exchanges and instruments exist (404s naming what is known). */
    known: KnownInstruments;
  }
}

const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `tickflow_api_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return name;
}

export interface DatabasePluginOptions {
  readonly config: ConfigForApi;
  readonly pool?: Pool | undefined;
}

async function database(app: FastifyInstance, opts: DatabasePluginOptions): Promise<void> {
  const timeoutMs = opts.config.api.statementTimeoutMs;
  let pool = opts.pool;
  if (!pool) {
    const db = await openDatabase(opts.config, { applicationName: 'tickflow-api' });
    pool = db.pool;
    // The API reads the tables the migrations make: on a fresh database, make them.
    await migrate(pool);
    const setTimeoutSql = `set statement_timeout = ${timeoutMs}`;
    // New connections get the timeout first (pg runs a client's queries in order); the one the
    // embedded path already opened gets it now.
    pool.on('connect', (client) => void client.query(setTimeoutSql).catch(() => undefined));
    await pool.query(setTimeoutSql);
    app.addHook('onClose', async () => db.close());
  }
  const p = pool;
  // The client-side bound sits a little above the server's, so a server that can cancel does.
  const readTimeoutMs = timeoutMs + 1_000;
  const api: ApiDatabase = {
    pool: p,
    async query<R extends object>(label: string, text: string, values: readonly unknown[]) {
      const end = metrics.queryDuration.startTimer({ query: label });
      try {
        const r = await p.query<R>({ name: statementName(text), text, values: values as unknown[], query_timeout: readTimeoutMs } as never);
        return r.rows;
      } catch (e) {
        throw translateDbError(e, timeoutMs);
      } finally {
        end();
      }
    },
    async ping(ms) {
      try {
        await p.query({ text: 'select 1', query_timeout: ms } as never);
        return true;
      } catch {
        return false;
      }
    },
  };
  app.decorate('db', api);
  app.decorate('known', new KnownInstruments(api));
}

export const databasePlugin = fp(database, { name: 'tickflow-database', fastify: '5.x' });
