/**
 * Idempotency keys of POST /v1/events (table event_keys, migrations/008_events.sql). The first
 * post of a key claims it with its event's id and times; every later post of the key gets that
 * event back, across client retries and API restarts, so it is written once even when `ts` was
 * left to default to now (the sink's insert mode then sees the very same primary key).
 *
 * Keys expire with the events retention (`sink.policies.retention.events`; none: never): a key
 * is expired once both its event's ts and its first post are older than the retention
 * (migrations/010_event_keys_expiry.sql). A post of an expired key claims it anew, for a new
 * event; `expireKeys` deletes expired keys (the events routes run it at start and hourly).
 */
import type { ApiDatabase } from './plugins/database.ts';
import { us } from './sql.ts';

export interface KeyClaim {
  readonly key: string;
  readonly id: string;
  /** µs. */
  readonly ts: number;
  /** µs. */
  readonly received_at: number;
  /** What the post said (type, instrument, ts if given, data), hashed: the same key with another event is refused. */
  readonly fingerprint: string;
}

export interface KeyHolder extends KeyClaim {
  /** This post claimed the key (else an earlier one did). */
  readonly fresh: boolean;
  /** The event is in Kafka already (an earlier post produced it). */
  readonly produced: boolean;
}

const EPOCH = (col: string) => `timestamptz 'epoch' + u.${col} * interval '1 microsecond'`;

const CLAIM_SQL =
  `insert into event_keys (key, id, ts, received_at, fingerprint) ` +
  `select u.key, u.id, ${EPOCH('ts')}, ${EPOCH('received_at')}, u.fingerprint ` +
  `from unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[]) as u(key, id, ts, received_at, fingerprint) ` +
  // An expired key ($6: the cutoff, null when keys do not expire) is claimed anew; a held one is left.
  `on conflict (key) do update set id = excluded.id, ts = excluded.ts, received_at = excluded.received_at, fingerprint = excluded.fingerprint, produced_at = null ` +
  `where greatest(event_keys.ts, event_keys.received_at) < $6::timestamptz returning key`;

// A separate statement, not a CTE beside the insert: it must see a concurrent post's claim,
// which committed while the insert waited on it (a CTE reads the snapshot taken before).
const HELD_SQL = `select key, id, ${us('ts')} as ts, ${us('received_at')} as received_at, fingerprint, produced_at is not null as produced from event_keys where key = any($1::text[])`;

const PRODUCED_SQL = 'update event_keys set produced_at = now() where key = any($1::text[]) and produced_at is null';

const EXPIRE_SQL = 'with d as (delete from event_keys where greatest(ts, received_at) < $1::timestamptz returning 1) select count(*)::int as n from d';

/** The cutoff of key expiry at `nowMs` for a retention (ms; undefined: keys do not expire), as an ISO time for the SQL. */
export function expiryCutoff(retentionMs: number | undefined, nowMs = Date.now()): string | null {
  return retentionMs === undefined ? null : new Date(nowMs - retentionMs).toISOString();
}

/**
 * Claims each key (distinct keys); returns who holds each: this post's claim or an earlier one.
 * A key expired before `cutoff` (ISO time; null: none expire) is claimed anew.
 */
export async function claimKeys(db: ApiDatabase, claims: readonly KeyClaim[], cutoff: string | null = null): Promise<Map<string, KeyHolder>> {
  const out = new Map<string, KeyHolder>();
  if (claims.length === 0) return out;
  const won = await db.query<{ key: string }>('event_keys.claim', CLAIM_SQL, [
    claims.map((c) => c.key),
    claims.map((c) => c.id),
    claims.map((c) => c.ts),
    claims.map((c) => c.received_at),
    claims.map((c) => c.fingerprint),
    cutoff,
  ]);
  const fresh = new Set(won.map((r) => r.key));
  for (const c of claims) if (fresh.has(c.key)) out.set(c.key, { ...c, fresh: true, produced: false });
  const rest = claims.filter((c) => !fresh.has(c.key)).map((c) => c.key);
  if (rest.length > 0) {
    const held = await db.query<{ key: string; id: string; ts: string; received_at: string; fingerprint: string; produced: boolean }>('event_keys.held', HELD_SQL, [rest]);
    for (const h of held) out.set(h.key, { key: h.key, id: h.id, ts: Number(h.ts), received_at: Number(h.received_at), fingerprint: h.fingerprint, fresh: false, produced: h.produced });
  }
  return out;
}

/** Marks the keys' events as in Kafka, so a later retry does not produce them again. */
export async function markProduced(db: ApiDatabase, keys: readonly string[]): Promise<void> {
  if (keys.length > 0) await db.query('event_keys.produced', PRODUCED_SQL, [keys]);
}

/** Deletes the keys expired before `cutoff` (ISO time); returns how many. */
export async function expireKeys(db: ApiDatabase, cutoff: string): Promise<number> {
  const rows = await db.query<{ n: number }>('event_keys.expire', EXPIRE_SQL, [cutoff]);
  return rows[0]?.n ?? 0;
}
