/**
 * Finds or starts the database a command uses:
 * 1. DATABASE_URL / database.url: any PostgreSQL or TimescaleDB server (probed, fails fast);
 * 2. else an embedded TimescaleDB server already running for the data folder (`tickflow infra up`);
 * 3. else the embedded TimescaleDB started in this process on the data folder.
 * The embedded database serves one connection: its pool has size 1, and a lock file keeps a
 * second process from opening the same data folder.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolveDir, type SharedConfig } from '../core/config.ts';
import { createPool, unreachable, type Pool } from '../core/db.ts';
import { logger } from '../core/log.ts';
import { startEmbeddedDb, type EmbeddedDb } from './embedded-db.ts';
import { probeDatabase } from './probe-db.ts';
import { isAlive } from './process.ts';

const log = logger('database');

export interface OpenDatabase {
  readonly url: string;
  readonly pool: Pool;
  readonly kind: 'server' | 'embedded';
  close(): Promise<void>;
}

export interface EmbeddedServerRecord {
  readonly pid: number;
  readonly url: string;
  readonly dataDir: string;
}


const recordFile = (dataDir: string) => `${dataDir}.server.json`;

/** The embedded server that `tickflow infra up` left running for this data folder, if any. */
export function embeddedServerStatus(dataDir: string): EmbeddedServerRecord | undefined {
  const f = recordFile(dataDir);
  if (!existsSync(f)) return undefined;
  const rec = JSON.parse(readFileSync(f, 'utf8')) as EmbeddedServerRecord;
  if (isAlive(rec.pid)) return rec;
  rmSync(f, { force: true });
  return undefined;
}

/** Starts the embedded TimescaleDB on the configured data folder (embedded-db.ts locks it). */
export async function startEmbeddedOnDataDir(config: Pick<SharedConfig, 'database'>, opts: { port?: number; record?: boolean } = {}): Promise<EmbeddedDb> {
  const dataDir = resolveDir(config.database.dataDir);
  const db = await startEmbeddedDb({ dataDir, port: opts.port ?? config.database.embeddedPort, wasmCompiler: config.database.embeddedWasmCompiler });
  if (opts.record) writeFileSync(recordFile(dataDir), JSON.stringify({ pid: process.pid, url: db.url, dataDir } satisfies EmbeddedServerRecord));
  return {
    ...db,
    stop: async () => {
      await db.stop();
      if (opts.record) rmSync(recordFile(dataDir), { force: true });
    },
  };
}

export async function openDatabase(config: Pick<SharedConfig, 'database'>, opts: { applicationName?: string } = {}): Promise<OpenDatabase> {
  const applicationName = opts.applicationName ?? 'tickflow';
  const url = config.database.url;
  if (url) {
    await probeDatabase(url, config.database.connectTimeoutMs);
    const pool = createPool(url, { max: config.database.poolMax, connectTimeoutMs: config.database.connectTimeoutMs, applicationName });
    return { url, pool, kind: 'server', close: () => pool.end() };
  }
  const dataDir = resolveDir(config.database.dataDir);
  const running = embeddedServerStatus(dataDir);
  if (running) {
    log.info({ url: running.url, pid: running.pid }, 'using the running embedded TimescaleDB');
    const pool = createPool(running.url, { max: 1, applicationName });
    try {
      await pool.query('select 1');
    } catch (e) {
      await pool.end();
      throw unreachable(running.url, e);
    }
    return { url: running.url, pool, kind: 'embedded', close: () => pool.end() };
  }
  const db = await startEmbeddedOnDataDir(config);
  log.info({ dataDir, url: db.url }, 'embedded TimescaleDB started');
  const pool = createPool(db.url, { max: 1, applicationName });
  return {
    url: db.url,
    pool,
    kind: 'embedded',
    close: async () => {
      await pool.end();
      await db.stop();
    },
  };
}
