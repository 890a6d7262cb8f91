/**
 * All SQL on the broadcast tables (migrations/009_broadcast.sql): broadcasters and registrations
 * (CRUD, pause/resume, source 'api' or 'config'), their delivery counters for status, the
 * config-entry sync at start, and the change stamp the runtime polls to reload. The runtime's
 * own writes (positions, predicate state, counters) belong here too (bcrun).
 *
 * Functions take a pool or a client in a transaction; specs are validated by the caller
 * (broadcast/model.ts), this module only stores and reads them.
 */
import type { Pool, PoolClient } from '../core/db.ts';
import { withTransaction } from '../core/db.ts';
import { ValidationError, type BroadcasterSpec, type RegistrationRow, type RegistrationSpec } from './model.ts';

export type Db = Pool | PoolClient;
export const SOURCES = ['api', 'config'] as const;
export type Source = (typeof SOURCES)[number];

export interface BroadcasterRecord {
  readonly name: string;
  readonly kind: BroadcasterSpec['kind'];
  /** As stored: the secret included (redact before showing: model.ts redactBroadcaster). */
  readonly config: BroadcasterSpec['config'];
  readonly paused: boolean;
  readonly source: Source;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface RegistrationRecord extends RegistrationRow {
  readonly broadcasterPaused: boolean;
  readonly source: Source;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface DeliveryStatus {
  readonly name: string;
  readonly paused: boolean;
  readonly delivered: number;
  readonly failed: number;
  readonly lastError: string | null;
  readonly lastErrorAt: string | null;
  readonly lastDeliveredAt: string | null;
}

const iso = (v: unknown): string | null => (v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString());

interface BroadcasterSql {
  name: string;
  kind: BroadcasterSpec['kind'];
  config: BroadcasterSpec['config'];
  paused: boolean;
  source: Source;
  created_at: Date;
  updated_at: Date;
}
interface RegistrationSql {
  name: string;
  broadcaster: string;
  kind: string;
  exchange: string;
  symbol: string;
  predicate: string | null;
  paused: boolean;
  broadcaster_paused: boolean;
  source: Source;
  created_at: Date;
  updated_at: Date;
}

const broadcasterOf = (r: BroadcasterSql): BroadcasterRecord => ({
  name: r.name,
  kind: r.kind,
  config: r.config,
  paused: r.paused,
  source: r.source,
  createdAt: iso(r.created_at)!,
  updatedAt: iso(r.updated_at)!,
});
const registrationOf = (r: RegistrationSql): RegistrationRecord => ({
  name: r.name,
  broadcaster: r.broadcaster,
  kind: r.kind,
  exchange: r.exchange,
  symbol: r.symbol,
  predicate: r.predicate,
  paused: r.paused,
  broadcasterPaused: r.broadcaster_paused,
  source: r.source,
  createdAt: iso(r.created_at)!,
  updatedAt: iso(r.updated_at)!,
});

const SELECT_BROADCASTERS = 'select name, kind, config, paused, source, created_at, updated_at from broadcasters';
const SELECT_REGISTRATIONS =
  'select r.name, r.broadcaster, r.kind, r.exchange, r.symbol, r.predicate, r.paused, b.paused as broadcaster_paused, r.source, r.created_at, r.updated_at from registrations r join broadcasters b on b.name = r.broadcaster';

const isFkViolation = (e: unknown): boolean => (e as { code?: unknown } | null)?.code === '23503';

// ---- broadcasters ----------------------------------------------------------------------------

export async function listBroadcasters(db: Db): Promise<BroadcasterRecord[]> {
  const r = await db.query<BroadcasterSql>(`${SELECT_BROADCASTERS} order by name`);
  return r.rows.map(broadcasterOf);
}

export async function getBroadcaster(db: Db, name: string): Promise<BroadcasterRecord | undefined> {
  const r = await db.query<BroadcasterSql>(`${SELECT_BROADCASTERS} where name = $1`, [name]);
  return r.rows[0] && broadcasterOf(r.rows[0]);
}

/** Creates a broadcaster; undefined when the name is taken. */
export async function insertBroadcaster(db: Db, spec: BroadcasterSpec, source: Source = 'api'): Promise<BroadcasterRecord | undefined> {
  const r = await db.query<BroadcasterSql>(
    `insert into broadcasters (name, kind, config, paused, source) values ($1, $2, $3::jsonb, $4, $5)
     on conflict (name) do nothing returning name, kind, config, paused, source, created_at, updated_at`,
    [spec.name, spec.kind, JSON.stringify(spec.config), spec.paused ?? false, source],
  );
  return r.rows[0] && broadcasterOf(r.rows[0]);
}

/**
 * Creates or replaces a broadcaster (its pause kept unless the spec sets one); `created` says
 * which. Nothing changes, updated_at included, when the stored one is the same.
 */
export async function putBroadcaster(db: Db, spec: BroadcasterSpec, source: Source = 'api'): Promise<{ broadcaster: BroadcasterRecord; created: boolean }> {
  const r = await db.query<BroadcasterSql & { created: boolean }>(
    `insert into broadcasters as b (name, kind, config, paused, source) values ($1, $2, $3::jsonb, coalesce($4, false), $5)
     on conflict (name) do update set kind = excluded.kind, config = excluded.config, paused = coalesce($4, b.paused), source = excluded.source, updated_at = now()
       where (b.kind, b.config, b.paused, b.source) is distinct from (excluded.kind, excluded.config, coalesce($4, b.paused), excluded.source)
     returning name, kind, config, paused, source, created_at, updated_at, (xmax = 0) as created`,
    [spec.name, spec.kind, JSON.stringify(spec.config), spec.paused ?? null, source],
  );
  if (r.rows[0]) return { broadcaster: broadcasterOf(r.rows[0]), created: r.rows[0].created };
  // Unchanged (the update's where was false): the stored row is the answer.
  return { broadcaster: (await getBroadcaster(db, spec.name))!, created: false };
}

/** Deletes a broadcaster: 'missing', 'deleted', or the registrations that still use it (nothing deleted). */
export async function deleteBroadcaster(db: Db, name: string): Promise<'missing' | 'deleted' | { readonly registrations: string[] }> {
  const users = async () => (await db.query<{ name: string }>('select name from registrations where broadcaster = $1 order by name', [name])).rows.map((r) => r.name);
  const using = await users();
  if (using.length > 0) return { registrations: using };
  try {
    const r = await db.query('delete from broadcasters where name = $1', [name]);
    return (r.rowCount ?? 0) > 0 ? 'deleted' : 'missing';
  } catch (e) {
    // A registration created between the check and the delete (on delete restrict).
    if (isFkViolation(e)) return { registrations: await users() };
    throw e;
  }
}

/** Pauses or resumes; false when there is no such broadcaster. */
export async function setBroadcasterPaused(db: Db, name: string, paused: boolean): Promise<boolean> {
  const r = await db.query('update broadcasters set paused = $2, updated_at = now() where name = $1', [name, paused]);
  return (r.rowCount ?? 0) > 0;
}

// ---- registrations ---------------------------------------------------------------------------

export async function listRegistrations(db: Db, filter: { broadcaster?: string } = {}): Promise<RegistrationRecord[]> {
  const r =
    filter.broadcaster === undefined
      ? await db.query<RegistrationSql>(`${SELECT_REGISTRATIONS} order by r.name`)
      : await db.query<RegistrationSql>(`${SELECT_REGISTRATIONS} where r.broadcaster = $1 order by r.name`, [filter.broadcaster]);
  return r.rows.map(registrationOf);
}

export async function getRegistration(db: Db, name: string): Promise<RegistrationRecord | undefined> {
  const r = await db.query<RegistrationSql>(`${SELECT_REGISTRATIONS} where r.name = $1`, [name]);
  return r.rows[0] && registrationOf(r.rows[0]);
}

function unknownBroadcaster(spec: RegistrationSpec, e: unknown): ValidationError {
  return new ValidationError('broadcaster', `registration: broadcaster: no broadcaster named "${spec.broadcaster}" (create it first)`, { cause: e });
}

/** Creates a registration; undefined when the name is taken; ValidationError (field broadcaster) when its broadcaster does not exist. */
export async function insertRegistration(db: Db, spec: RegistrationSpec, source: Source = 'api'): Promise<RegistrationRecord | undefined> {
  try {
    const r = await db.query<{ name: string }>(
      `insert into registrations (name, broadcaster, kind, exchange, symbol, predicate, paused, source) values ($1, $2, $3, $4, $5, $6, $7, $8)
       on conflict (name) do nothing returning name`,
      [spec.name, spec.broadcaster, spec.kind, spec.exchange, spec.symbol, spec.predicate, spec.paused ?? false, source],
    );
    return r.rows[0] && getRegistration(db, spec.name);
  } catch (e) {
    if (isFkViolation(e)) throw unknownBroadcaster(spec, e);
    throw e;
  }
}

/** Creates or replaces a registration (its pause kept unless the spec sets one). Unchanged: updated_at stays. */
export async function putRegistration(db: Db, spec: RegistrationSpec, source: Source = 'api'): Promise<{ registration: RegistrationRecord; created: boolean }> {
  let created = false;
  try {
    const r = await db.query<{ created: boolean }>(
      `insert into registrations as g (name, broadcaster, kind, exchange, symbol, predicate, paused, source) values ($1, $2, $3, $4, $5, $6, coalesce($7, false), $8)
       on conflict (name) do update set broadcaster = excluded.broadcaster, kind = excluded.kind, exchange = excluded.exchange, symbol = excluded.symbol,
         predicate = excluded.predicate, paused = coalesce($7, g.paused), source = excluded.source, updated_at = now()
         where (g.broadcaster, g.kind, g.exchange, g.symbol, g.predicate, g.paused, g.source)
           is distinct from (excluded.broadcaster, excluded.kind, excluded.exchange, excluded.symbol, excluded.predicate, coalesce($7, g.paused), excluded.source)
       returning (xmax = 0) as created`,
      [spec.name, spec.broadcaster, spec.kind, spec.exchange, spec.symbol, spec.predicate, spec.paused ?? null, source],
    );
    created = r.rows[0]?.created ?? false;
  } catch (e) {
    if (isFkViolation(e)) throw unknownBroadcaster(spec, e);
    throw e;
  }
  return { registration: (await getRegistration(db, spec.name))!, created };
}

/** Deletes a registration (its state and counters with it); false when there was none. */
export async function deleteRegistration(db: Db, name: string): Promise<boolean> {
  const r = await db.query('delete from registrations where name = $1', [name]);
  return (r.rowCount ?? 0) > 0;
}

export async function setRegistrationPaused(db: Db, name: string, paused: boolean): Promise<boolean> {
  const r = await db.query('update registrations set paused = $2, updated_at = now() where name = $1', [name, paused]);
  return (r.rowCount ?? 0) > 0;
}

// ---- status ----------------------------------------------------------------------------------

interface StatusSql {
  name: string;
  paused: boolean;
  delivered: number | null;
  failed: number | null;
  last_error: string | null;
  last_error_at: Date | null;
  last_delivered_at: Date | null;
}
const statusOf = (r: StatusSql): DeliveryStatus => ({
  name: r.name,
  paused: r.paused,
  delivered: Number(r.delivered ?? 0),
  failed: Number(r.failed ?? 0),
  lastError: r.last_error,
  lastErrorAt: iso(r.last_error_at),
  lastDeliveredAt: iso(r.last_delivered_at),
});

/** A registration's counters (zeros before its first delivery); undefined when there is no such registration. */
export async function registrationStatus(db: Db, name: string): Promise<DeliveryStatus | undefined> {
  const r = await db.query<StatusSql>(
    `select g.name, g.paused, s.delivered, s.failed, s.last_error, s.last_error_at, s.last_delivered_at
     from registrations g left join broadcast_stats s on s.registration = g.name where g.name = $1`,
    [name],
  );
  return r.rows[0] && statusOf(r.rows[0]);
}

/** A broadcaster's counters: the sums over its registrations, the latest error and delivery among them. */
export async function broadcasterStatus(db: Db, name: string): Promise<DeliveryStatus | undefined> {
  const r = await db.query<StatusSql>(
    `select b.name, b.paused, sum(s.delivered) as delivered, sum(s.failed) as failed,
       (select s2.last_error from registrations g2 join broadcast_stats s2 on s2.registration = g2.name
         where g2.broadcaster = b.name and s2.last_error_at is not null order by s2.last_error_at desc limit 1) as last_error,
       max(s.last_error_at) as last_error_at, max(s.last_delivered_at) as last_delivered_at
     from broadcasters b left join registrations g on g.broadcaster = b.name left join broadcast_stats s on s.registration = g.name
     where b.name = $1 group by b.name, b.paused`,
    [name],
  );
  return r.rows[0] && statusOf(r.rows[0]);
}

// ---- reload and config sync ------------------------------------------------------------------

/** Changes when any broadcaster or registration is created, changed or deleted (the runtime polls it, broadcast.reloadMs). */
export async function changeStamp(db: Db): Promise<string> {
  const r = await db.query<{ stamp: string }>(
    `select concat_ws('/', (select max(updated_at) from broadcasters)::text, (select count(*) from broadcasters)::text,
       (select max(updated_at) from registrations)::text, (select count(*) from registrations)::text) as stamp`,
  );
  return r.rows[0]!.stamp;
}

export interface SyncResult {
  /** Config entries created or changed. */
  readonly written: readonly string[];
  /** Entries of source 'config' no longer in the config, deleted. */
  readonly removed: readonly string[];
  /** Broadcasters of source 'config' no longer in the config but still used by registrations of the API: kept. */
  readonly kept: readonly string[];
}

/**
 * Makes the database hold the config file's entries (source 'config'), in one transaction:
 * each is upserted (an entry of the API with the same name becomes the config's; a pause set over
 * the API survives unless the entry sets `paused`), and entries of source 'config' that the file
 * no longer lists are deleted, so the file stays the truth for what it declares. A removed
 * broadcaster that API registrations still use is kept (and reported).
 */
export async function syncConfigEntries(pool: Pool, entries: { readonly broadcasters: readonly BroadcasterSpec[]; readonly registrations: readonly RegistrationSpec[] }): Promise<SyncResult> {
  return withTransaction(pool, async (c) => {
    const written: string[] = [];
    const removed: string[] = [];
    const kept: string[] = [];
    for (const b of entries.broadcasters) {
      const before = await getBroadcaster(c, b.name);
      const { broadcaster } = await putBroadcaster(c, b, 'config');
      if (!before || before.updatedAt !== broadcaster.updatedAt) written.push(`broadcaster ${b.name}`);
    }
    for (const g of entries.registrations) {
      const before = await getRegistration(c, g.name);
      const { registration } = await putRegistration(c, g, 'config');
      if (!before || before.updatedAt !== registration.updatedAt) written.push(`registration ${g.name}`);
    }
    const regNames = entries.registrations.map((g) => g.name);
    const gone = await c.query<{ name: string }>(`delete from registrations where source = 'config' and not (name = any($1::text[])) returning name`, [regNames]);
    removed.push(...gone.rows.map((r) => `registration ${r.name}`));
    const bNames = entries.broadcasters.map((b) => b.name);
    const stale = await c.query<{ name: string; used: boolean }>(
      `select b.name, exists (select 1 from registrations g where g.broadcaster = b.name) as used from broadcasters b where b.source = 'config' and not (b.name = any($1::text[])) order by b.name`,
      [bNames],
    );
    const unused = stale.rows.filter((r) => !r.used).map((r) => r.name);
    if (unused.length > 0) await c.query('delete from broadcasters where name = any($1::text[])', [unused]);
    removed.push(...unused.map((n) => `broadcaster ${n}`));
    kept.push(...stale.rows.filter((r) => r.used).map((r) => r.name));
    return { written, removed, kept };
  });
}
