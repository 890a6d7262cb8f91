/**
 * The runtime's statements on the broadcast tables: delivery positions (`broadcast_offsets`),
 * predicate state (`broadcast_state`) and delivery counts (`broadcast_stats`). Registrations and
 * broadcasters are broadcast/store.ts's.
 *
 * THE AT-LEAST-ONCE RULE. A batch of one partition is delivered first (every delivery
 * acknowledged, or dead-lettered and acknowledged by Kafka), then `commitBatch` stores, in one
 * transaction, the partition's next offset, the state the batch left per (registration,
 * instrument) and the batch's counts. A crash before that commit repeats the batch from the
 * stored offset with the stored state: the same deliveries, with the same event ids, and nothing
 * else; a crash after it repeats nothing. On every group join the consumer seeks to the stored
 * offsets and reloads the stored state.
 */
import type { Pool } from '../core/db.ts';
import type { PredicateState } from './predicate.ts';

export interface OffsetRow {
  readonly topic: string;
  readonly partition: number;
  readonly nextOffset: number;
}

export async function readOffsets(pool: Pool, groupId: string, topics: readonly string[]): Promise<OffsetRow[]> {
  const r = await pool.query<{ topic: string; partition: number; next_offset: number }>('select topic, partition, next_offset from broadcast_offsets where group_id = $1 and topic = any($2::text[])', [groupId, topics]);
  return r.rows.map((x) => ({ topic: x.topic, partition: x.partition, nextOffset: Number(x.next_offset) }));
}

/** Stores the first position of partitions the group never had (another instance's wins). */
export async function initOffsets(pool: Pool, groupId: string, rows: readonly OffsetRow[]): Promise<void> {
  if (rows.length === 0) return;
  await pool.query(
    `insert into broadcast_offsets (group_id, topic, partition, next_offset)
     select $1, t, p, o from unnest($2::text[], $3::int4[], $4::int8[]) as x(t, p, o)
     on conflict (group_id, topic, partition) do nothing`,
    [groupId, rows.map((r) => r.topic), rows.map((r) => r.partition), rows.map((r) => r.nextOffset)],
  );
}

export interface StateRow {
  readonly registration: string;
  readonly exchange: string;
  readonly symbol: string;
  readonly state: PredicateState;
}

export async function readStates(pool: Pool, registrations: readonly string[]): Promise<StateRow[]> {
  if (registrations.length === 0) return [];
  const r = await pool.query<StateRow>('select registration, exchange, symbol, state from broadcast_state where registration = any($1::text[])', [registrations]);
  return r.rows;
}

export interface StatRow {
  readonly registration: string;
  readonly delivered: number;
  readonly failed: number;
  readonly lastError: string | null;
  readonly lastErrorAt: Date | null;
  readonly lastDeliveredAt: Date | null;
}

export interface BatchCommit {
  readonly groupId: string;
  readonly offsets: readonly OffsetRow[];
  readonly states: readonly StateRow[];
  readonly stats: readonly StatRow[];
}

const STORE_OFFSETS = `insert into broadcast_offsets as b (group_id, topic, partition, next_offset)
select $1, t, p, o from unnest($2::text[], $3::int4[], $4::int8[]) as x(t, p, o)
on conflict (group_id, topic, partition) do update set next_offset = excluded.next_offset where b.next_offset < excluded.next_offset`;

// A registration deleted meanwhile has no row to refer to: its state and counts are dropped.
const STORE_STATES = `insert into broadcast_state as s (registration, exchange, symbol, state)
select r, e, y, st from unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) as x(r, e, y, st)
where exists (select 1 from registrations g where g.name = x.r)
order by r, e, y
on conflict (registration, exchange, symbol) do update set state = excluded.state`;

const STORE_STATS = `insert into broadcast_stats as s (registration, delivered, failed, last_error, last_error_at, last_delivered_at)
select r, d, f, e, ea, da from unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::timestamptz[], $6::timestamptz[]) as x(r, d, f, e, ea, da)
where exists (select 1 from registrations g where g.name = x.r)
order by r
on conflict (registration) do update set
  delivered = s.delivered + excluded.delivered,
  failed = s.failed + excluded.failed,
  last_error = coalesce(excluded.last_error, s.last_error),
  last_error_at = coalesce(excluded.last_error_at, s.last_error_at),
  last_delivered_at = coalesce(greatest(s.last_delivered_at, excluded.last_delivered_at), s.last_delivered_at, excluded.last_delivered_at)`;

/** One transaction: the partitions' next offsets (never moved back), the batch's state and counts. */
export async function commitBatch(pool: Pool, c: BatchCommit): Promise<void> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    await client.query(STORE_OFFSETS, [c.groupId, c.offsets.map((o) => o.topic), c.offsets.map((o) => o.partition), c.offsets.map((o) => o.nextOffset)]);
    if (c.states.length > 0) {
      await client.query(STORE_STATES, [c.states.map((s) => s.registration), c.states.map((s) => s.exchange), c.states.map((s) => s.symbol), c.states.map((s) => JSON.stringify(s.state))]);
    }
    if (c.stats.length > 0) {
      const s = c.stats;
      await client.query(STORE_STATS, [s.map((x) => x.registration), s.map((x) => x.delivered), s.map((x) => x.failed), s.map((x) => x.lastError), s.map((x) => x.lastErrorAt), s.map((x) => x.lastDeliveredAt)]);
    }
    await client.query('commit');
  } catch (e) {
    await client.query('rollback').catch(() => (broken = true));
    throw e;
  } finally {
    client.release(broken);
  }
}

