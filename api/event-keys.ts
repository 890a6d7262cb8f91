/**
 * Idempotency keys of POST /v1/events (table event_keys, migrations/008_events.sql). The first
 * post of a key claims it with its event's id and times; every later post of the key gets that
 * event back, across client retries and API restarts, so it is written once even when `ts` was
 * left to default to now (the sink's insert mode then sees the very same primary key).
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
  `on conflict (key) do nothing returning key`;

// A separate statement, not a CTE beside the insert: it must see a concurrent post's claim,
// which committed while the insert waited on it (a CTE reads the snapshot taken before).
const HELD_SQL = `select key, id, ${us('ts')} as ts, ${us('received_at')} as received_at, fingerprint, produced_at is not null as produced from event_keys where key = any($1::text[])`;

const PRODUCED_SQL = 'update event_keys set produced_at = now() where key = any($1::text[]) and produced_at is null';

/** Claims each key (distinct keys); returns who holds each: this post's claim or an earlier one. */
export async function claimKeys(db: ApiDatabase, claims: readonly KeyClaim[]): Promise<Map<string, KeyHolder>> {
  const out = new Map<string, KeyHolder>();
  if (claims.length === 0) return out;
  const won = await db.query<{ key: string }>('event_keys.claim', CLAIM_SQL, [
    claims.map((c) => c.key),
    claims.map((c) => c.id),
    claims.map((c) => c.ts),
    claims.map((c) => c.received_at),
    claims.map((c) => c.fingerprint),
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
