import type { Pool, PoolClient } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import { partitionOffsets, type Admin, type Consumer } from '../core/kafka.ts';
import type { Logger } from '../core/log.ts';
import { dbError } from '../core/pg-errors.ts';
import { RETRY, retry } from '../core/retry.ts';

/**
 * The sink's offsets: every statement on `sink_offsets` lives here, and nowhere else.
 *
 * THE EXACTLY-ONCE RULE. `sink_offsets` (connector, topic, partition) → `next_offset` is the
 * truth about what a connector has written. A batch's transaction
 *   1. locks its partitions' rows first (`lockOffsets`: created when missing, locked in a fixed
 *      order so two instances wait for each other instead of deadlocking) and reads `next_offset`;
 *   2. writes only the messages at or past it (a replay, a zombie instance, a partition that moved
 *      to another instance while the batch was in flight: all write nothing);
 *   3. stores the new `next_offset` (`storeOffsets`, never backwards) in the same transaction as
 *      the rows, and commits only once Kafka acknowledged the batch's dead letters.
 * Nothing reaches `sink_offsets` that was not written or dead-lettered in that transaction, and
 * nothing is written without it. Reading positions (`startPositions`, on every group join) and
 * lag (`partitionStatus`) never write. Kafka's committed offsets are a best-effort mirror for
 * monitoring (`KafkaCommits`); they are never read back.
 */

/** The map key of a partition. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** One partition of a batch: the offset of its first message and the offset after its last. */
export interface OffsetRange {
  readonly topic: string;
  readonly partition: number;
  readonly firstOffset: number;
  readonly nextOffset: number;
}

// Creates the missing rows and locks them all, returning the stored next offsets, in one
// statement: the no-op update of an existing row takes its lock and returns its latest version.
const LOCK_OFFSETS = `insert into sink_offsets as s (connector, topic, partition, next_offset)
select $1, t, p, o from unnest($2::text[], $3::int4[], $4::int8[]) as x(t, p, o)
order by t, p
on conflict (connector, topic, partition) do update set next_offset = s.next_offset
returning topic, partition, next_offset`;

const STORE_OFFSETS = `update sink_offsets s set next_offset = x.o, updated_at = now()
from unnest($2::text[], $3::int4[], $4::int8[]) as x(t, p, o)
where s.connector = $1 and s.topic = x.t and s.partition = x.p and s.next_offset < x.o`;

const READ_OFFSETS = 'select topic, partition, next_offset from sink_offsets where connector = $1';

const READ_TOPICS_OFFSETS = 'select topic, partition, next_offset from sink_offsets where connector = $1 and topic = any($2::text[])';

type OffsetRow = { topic: string; partition: number; next_offset: number };

function byPartition(rows: readonly OffsetRow[]): Map<string, number> {
  return new Map(rows.map((r) => [partitionKey(r.topic, r.partition), Number(r.next_offset)]));
}

/**
 * Step 1 of a batch's transaction: creates and locks the rows of `ranges` (sorted by topic and
 * partition by the caller), returning the stored next offset of each (a new row: its first offset).
 */
export async function lockOffsets(client: PoolClient, connector: string, ranges: readonly OffsetRange[]): Promise<Map<string, number>> {
  const r = await client.query<OffsetRow>(LOCK_OFFSETS, [connector, ranges.map((p) => p.topic), ranges.map((p) => p.partition), ranges.map((p) => p.firstOffset)]);
  return byPartition(r.rows);
}

/** Step 3: the partitions' next offsets, in the transaction that wrote their rows (never moved back). */
export async function storeOffsets(client: PoolClient, connector: string, ranges: readonly OffsetRange[]): Promise<void> {
  await client.query(STORE_OFFSETS, [connector, ranges.map((p) => p.topic), ranges.map((p) => p.partition), ranges.map((p) => p.nextOffset)]);
}

/** Where a connector's consumer starts reading an assigned partition after a group join. */
export interface StartPosition {
  readonly topic: string;
  readonly partition: number;
  /** The offset stored in the database, null when it has none. */
  readonly stored: number | null;
  /** Where to seek: the stored offset, else the start of the log; undefined when unknown. */
  readonly seek: number | undefined;
}

/**
 * The positions of the assigned partitions, from the database. A partition the database has
 * never seen starts at the beginning of the log, whatever Kafka's committed offset says (a new or
 * restored database must not miss records). Retried until it succeeds or `signal` aborts.
 */
export async function startPositions(pool: Pool, admin: Admin, connector: string, assigned: ReadonlyMap<string, readonly number[]>, signal: AbortSignal): Promise<StartPosition[]> {
  const topics = [...assigned.keys()];
  const rows = await retry(
    async () => {
      try {
        return (await pool.query<OffsetRow>(READ_TOPICS_OFFSETS, [connector, topics])).rows;
      } catch (e) {
        throw dbError(e, 'reading the stored offsets failed');
      }
    },
    { ...RETRY.database, signal },
  );
  const stored = byPartition(rows);
  const earliest = new Map<string, number>();
  for (const [topic, ps] of assigned) {
    if (ps.every((p) => stored.has(partitionKey(topic, p)))) continue;
    for (const [p, o] of await retry(() => partitionOffsets(admin, topic), { ...RETRY.kafkaAdmin, signal })) earliest.set(partitionKey(topic, p), o.low);
  }
  const out: StartPosition[] = [];
  for (const [topic, ps] of assigned) {
    for (const partition of ps) {
      const k = partitionKey(topic, partition);
      out.push({ topic, partition, stored: stored.get(k) ?? null, seek: stored.get(k) ?? earliest.get(k) });
    }
  }
  return out;
}

export interface PartitionStatus {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to write, as stored in the database; null before the first batch. */
  readonly nextOffset: number | null;
  readonly highWatermark: number;
  readonly lag: number;
  /** Whether this sink instance currently consumes the partition. */
  readonly assigned: boolean;
}

/** Per partition of `topics`: the stored offset, Kafka's high watermark, the lag between them. */
export async function partitionStatus(pool: Pool, admin: Admin, connector: string, topics: readonly string[], assigned: ReadonlyMap<string, readonly number[]>): Promise<PartitionStatus[]> {
  const stored = byPartition((await pool.query<OffsetRow>(READ_OFFSETS, [connector])).rows);
  const out: PartitionStatus[] = [];
  for (const topic of topics) {
    const offsets = await partitionOffsets(admin, topic);
    for (const [partition, { low, high }] of [...offsets].sort((a, b) => a[0] - b[0])) {
      const next = stored.get(partitionKey(topic, partition));
      out.push({ topic, partition, nextOffset: next ?? null, highWatermark: high, lag: Math.max(0, high - Math.max(next ?? low, low)), assigned: assigned.get(topic)?.includes(partition) ?? false });
    }
  }
  return out;
}

/**
 * Kafka's committed offsets follow the database's, best effort (monitoring, a fresh database):
 * the offsets of each commit are noted, and sent for the partitions still assigned.
 */
export class KafkaCommits {
  private readonly log: Logger;
  private pending = new Map<string, { topic: string; partition: number; offset: string }>();
  private committing: Promise<void> | undefined;

  constructor(log: Logger) {
    this.log = log;
  }

  note(offsets: readonly { topic: string; partition: number; nextOffset: number }[]): void {
    for (const o of offsets) this.pending.set(partitionKey(o.topic, o.partition), { topic: o.topic, partition: o.partition, offset: String(o.nextOffset) });
  }

  commit(consumer: Consumer | undefined, assigned: ReadonlyMap<string, readonly number[]>): Promise<void> {
    if (this.committing || this.pending.size === 0 || !consumer) return this.committing ?? Promise.resolve();
    const offsets = [...this.pending.values()].filter((o) => assigned.get(o.topic)?.includes(o.partition));
    this.pending.clear();
    if (offsets.length === 0) return Promise.resolve();
    this.committing = consumer
      .commitOffsets(offsets)
      .catch((e) => this.log.debug({ err: messageOf(e) }, 'committing offsets to Kafka failed (the database has them)'))
      .finally(() => (this.committing = undefined));
    return this.committing;
  }
}
