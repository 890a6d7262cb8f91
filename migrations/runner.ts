/**
 * Forward-only SQL migrations.
 *
 * Files are `NNN_name.sql` (every database), or `NNN_name.timescaledb.sql` and
 * `NNN_name.plain.sql` (one per flavour, the same version number: the runner picks the one that
 * fits the server, so table and view names stay the same either way). Applied versions are
 * recorded in `tickflow_migrations` with a checksum; a re-run applies nothing, and an applied file
 * that changed afterwards is an error (forward-only: add a new file instead).
 *
 * A file runs in one transaction unless its first line is `-- tickflow:no-transaction`; then its
 * statements run one by one outside any transaction (TimescaleDB forbids some inside one, e.g.
 * creating a continuous aggregate with data, or CALL of a refresh).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool, PoolClient } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';

export const FLAVOURS = ['timescaledb', 'plain'] as const;
export type Flavour = (typeof FLAVOURS)[number];

export const MIGRATIONS_DIR = path.dirname(fileURLToPath(import.meta.url));
const NO_TX = /^--\s*tickflow:no-transaction\b/;
const FILE = /^(\d{3,})_([a-z0-9_]+?)(?:\.(timescaledb|plain))?\.sql$/;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly file: string;
  readonly sql: string;
  readonly checksum: string;
  readonly transactional: boolean;
}

export interface MigrateResult {
  readonly flavour: Flavour;
  readonly applied: readonly string[];
  readonly skipped: number;
}

const log = logger('migrate');

/** The migrations for one flavour, in version order. */
export function listMigrations(flavour: Flavour, dir = MIGRATIONS_DIR): Migration[] {
  const byVersion = new Map<number, { generic?: string; specific?: string; name: string }>();
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.sql')) continue;
    const m = FILE.exec(f);
    if (!m) throw new TickflowError('MIGRATION_FAILED', `migration file ${f} is not named NNN_name[.timescaledb|.plain].sql`);
    const version = Number(m[1]);
    const slot = byVersion.get(version) ?? { name: m[2]! };
    if (slot.name !== m[2]) throw new TickflowError('MIGRATION_FAILED', `migration version ${m[1]} is used by two names: ${slot.name} and ${m[2]}`);
    if (m[3] === undefined) slot.generic = f;
    else if (m[3] === flavour) slot.specific = f;
    byVersion.set(version, slot);
  }
  return [...byVersion.entries()]
    .sort((a, b) => a[0] - b[0])
    .flatMap(([version, slot]) => {
      if (slot.generic && slot.specific) throw new TickflowError('MIGRATION_FAILED', `migration ${version} has both a generic and a ${flavour} file`);
      const file = slot.specific ?? slot.generic;
      if (!file) return []; // only the other flavour has this version
      const sql = readFileSync(path.join(dir, file), 'utf8');
      return [{ version, name: slot.name, file, sql, checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16), transactional: !NO_TX.test(sql) }];
    });
}

/**
 * Splits a script into statements at top-level semicolons, keeping quoted strings, quoted
 * identifiers, dollar-quoted bodies and comments intact.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === "'" || c === '"') {
      i++;
      while (i < n) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '$') {
      const tag = /^\$[A-Za-z_]*\$/.exec(sql.slice(i, i + 64));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? n : end + tag[0].length;
      } else i++;
    } else if (c === ';') {
      out.push(sql.slice(start, i));
      start = ++i;
    } else i++;
  }
  out.push(sql.slice(start));
  return out.map((s) => s.trim()).filter((s) => s.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim().length > 0);
}

/** timescaledb when the server offers the extension, else plain PostgreSQL. */
export async function detectFlavour(db: Pool | PoolClient): Promise<Flavour> {
  const r = await db.query("select 1 from pg_available_extensions where name = 'timescaledb'");
  return r.rowCount ? 'timescaledb' : 'plain';
}

// Serializes concurrent runners (two processes starting at once) on servers with several connections.
const LOCK_KEY = 7_301_995_417;

export async function migrate(pool: Pool, opts: { flavour?: Flavour; dir?: string } = {}): Promise<MigrateResult> {
  const client = await pool.connect();
  try {
    const flavour = opts.flavour ?? (await detectFlavour(client));
    await client.query('select pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`create table if not exists tickflow_migrations (
        version int primary key,
        name text not null,
        flavour text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`);
      const done = new Map((await client.query<{ version: number; name: string; checksum: string; flavour: string }>('select version, name, checksum, flavour from tickflow_migrations')).rows.map((r) => [r.version, r]));
      const applied: string[] = [];
      let skipped = 0;
      for (const m of listMigrations(flavour, opts.dir)) {
        const prior = done.get(m.version);
        if (prior) {
          if (prior.checksum !== m.checksum) {
            throw new TickflowError('MIGRATION_FAILED', `migration ${m.file} changed after it was applied (checksum ${prior.checksum} → ${m.checksum}); migrations are forward-only: add a new file`);
          }
          skipped++;
          continue;
        }
        await applyOne(client, m, flavour);
        applied.push(m.file);
      }
      if (applied.length) log.info({ flavour, applied }, 'migrations applied');
      return { flavour, applied, skipped };
    } finally {
      await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

async function applyOne(client: PoolClient, m: Migration, flavour: Flavour): Promise<void> {
  const record = () => client.query('insert into tickflow_migrations (version, name, flavour, checksum) values ($1, $2, $3, $4)', [m.version, m.name, flavour, m.checksum]);
  let current = '';
  try {
    if (m.transactional) {
      await client.query('begin');
      for (const stmt of splitStatements(m.sql)) {
        current = stmt;
        await client.query(stmt);
      }
      await record();
      await client.query('commit');
    } else {
      // Outside a transaction each statement commits by itself; statements must be idempotent
      // (if not exists / or replace) so a run interrupted half-way can simply run again.
      for (const stmt of splitStatements(m.sql)) {
        current = stmt;
        await client.query(stmt);
      }
      await record();
    }
  } catch (e) {
    if (m.transactional) await client.query('rollback').catch(() => undefined);
    throw new TickflowError('MIGRATION_FAILED', `migration ${m.file} failed at: ${current.slice(0, 200)}\n  ${messageOf(e)}`, { cause: e });
  }
}
