import type { Pool, PoolClient } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import type { KafkaMessage } from '../core/kafka.ts';
import { rowsSlice, type DecodedBlock } from './decode.ts';
import type { DeadLetterStage } from './events.ts';
import { upsertSql, type RowCodec } from './tables.ts';

/**
 * The write path of one batch: one database transaction that
 * 1. locks the connector's `sink_offsets` rows of the batch's partitions (creating missing ones),
 * 2. drops the messages below the stored next offset (a replay, a zombie instance, a partition
 *    that moved to another instance while this batch was in flight: all write nothing),
 * 3. writes the remaining rows with one set-based statement per table (deduplicated first: a
 *    key twice in one `on conflict do update` is an error), isolating rows the database rejects
 *    by bisecting under savepoints,
 * 4. hands the bad records to the dead-letter callback (which must have produced them when it
 *    returns), then stores the next offsets, then commits.
 * Nothing reaches `sink_offsets` that was not written or dead-lettered in the same transaction.
 */

/** One Kafka message of a batch: a row of its chunk's decoded block, or an error. */
export interface Item {
  readonly offset: number;
  readonly message: KafkaMessage;
  /** The record's row in the chunk's block (sink/decode.ts). */
  readonly row?: number;
  readonly error?: { readonly stage: DeadLetterStage; readonly reason: string };
}

/** Consecutive messages of one partition, in offset order. */
export interface Chunk {
  readonly topic: string;
  readonly partition: number;
  readonly items: readonly Item[];
  /** The valid records, decoded and rendered as array elements. */
  readonly block: DecodedBlock;
  /** Offset after the last message (what sink_offsets stores once the chunk is written). */
  readonly nextOffset: number;
  readonly highWatermark: number;
}

export interface DeadLetter {
  readonly topic: string;
  readonly partition: number;
  readonly item: Item;
  readonly stage: DeadLetterStage;
  readonly reason: string;
}

export interface WriteContext {
  readonly connector: string;
  readonly codec: RowCodec;
  readonly mode: 'insert' | 'upsert';
  readonly errorTolerance: 'none' | 'all';
  /** Produces the dead letters; resolves once Kafka has them, before the transaction commits. */
  readonly deadLetter: (letters: readonly DeadLetter[]) => Promise<void>;
}

export interface WriteResult {
  readonly messages: number;
  /** Rows inserted or changed (a replayed identical row in upsert mode counts 0). */
  readonly rows: number;
  /** Messages below the stored offsets: already written by an earlier transaction. */
  readonly skipped: number;
  readonly deadLettered: number;
  /** Smallest value of the table's time column among the rows written, µs since the epoch. */
  readonly minTimeUs: number | undefined;
  readonly offsets: { topic: string; partition: number; nextOffset: number; lag: number }[];
}

/** Problems of the records themselves: data exceptions, integrity constraint violations. */
function isRowError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

/**
 * Errors worth retrying: the connection (no SQLSTATE: refused, reset, terminated), connection
 * exceptions (08), resources (53), shutdown (57), system (58), serialization and deadlock (40),
 * lock not available (55P03). Anything else is a bug or a schema problem: retrying repeats it.
 */
export function isTransientDbError(e: unknown): boolean {
  if (e instanceof TickflowError) return e.retriable;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return !(e instanceof TypeError || e instanceof RangeError);
  return /^(08|53|57|58|40)/.test(code) || code === '55P03';
}

/** A database failure as a TickflowError: retriable when transient, with the cause kept. */
export function dbError(e: unknown, what: string): TickflowError {
  if (e instanceof TickflowError) return e;
  const transient = isTransientDbError(e);
  return new TickflowError(transient ? 'DATABASE_UNREACHABLE' : 'SINK_WRITE', `${what}: ${messageOf(e)}`, { retriable: transient, cause: e });
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

interface Row {
  readonly item: Item & { readonly row: number };
  readonly block: DecodedBlock;
  readonly topic: string;
  readonly partition: number;
}

/**
 * The statement's parameters for these rows: per column, `{...}` of their elements, taken from
 * the blocks in runs (a whole chunk in the common case: its strings as they are).
 */
function columnsOf(codec: RowCodec, rows: readonly Row[]): string[] {
  const runs: { block: DecodedBlock; from: number; to: number }[] = [];
  for (const r of rows) {
    const last = runs[runs.length - 1];
    if (last && last.block === r.block && last.to === r.item.row) last.to++;
    else runs.push({ block: r.block, from: r.item.row, to: r.item.row + 1 });
  }
  return codec.spec.columns.map((_, j) => `{${runs.map((run) => rowsSlice(run.block, j, run.from, run.to)).join(',')}}`);
}

export async function writeBatch(pool: Pool, ctx: WriteContext, chunks: readonly Chunk[]): Promise<WriteResult> {
  // One entry per partition, in a fixed order: two instances lock the same rows in the same
  // order, so they wait for each other instead of deadlocking.
  const parts = new Map<string, { topic: string; partition: number; firstOffset: number; nextOffset: number; highWatermark: number; chunks: Chunk[] }>();
  for (const c of chunks) {
    if (c.items.length === 0) continue;
    const k = `${c.topic}\u0000${c.partition}`;
    const p = parts.get(k);
    if (p) {
      p.chunks.push(c);
      p.nextOffset = Math.max(p.nextOffset, c.nextOffset);
      p.highWatermark = Math.max(p.highWatermark, c.highWatermark);
    } else parts.set(k, { topic: c.topic, partition: c.partition, firstOffset: c.items[0]!.offset, nextOffset: c.nextOffset, highWatermark: c.highWatermark, chunks: [c] });
  }
  const list = [...parts.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  const messages = chunks.reduce((n, c) => n + c.items.length, 0);
  if (list.length === 0) return { messages, rows: 0, skipped: 0, deadLettered: 0, minTimeUs: undefined, offsets: [] };

  const topics = list.map((p) => p.topic);
  const partitions = list.map((p) => p.partition);
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw dbError(e, 'cannot connect to the database');
  }
  let broken = false;
  // The rows go in with one statement; only when the database rejects one does the batch run
  // again, bisecting under savepoints (which cost round trips the common case does not pay).
  const RETRY_BISECTING = Symbol('bisect');
  const attempt = async (bisecting: boolean): Promise<WriteResult | typeof RETRY_BISECTING> => {
    await client.query('begin');
    const stored = new Map<string, number>();
    for (const r of (await client.query<{ topic: string; partition: number; next_offset: number }>(LOCK_OFFSETS, [ctx.connector, topics, partitions, list.map((p) => p.firstOffset)])).rows) {
      stored.set(`${r.topic}\u0000${r.partition}`, Number(r.next_offset));
    }

    // What is still to do, deduplicated by key: upsert keeps the latest version, insert the first.
    const letters: DeadLetter[] = [];
    const byKey = new Map<string, number>();
    const rows: Row[] = [];
    let skipped = 0;
    for (const p of list) {
      const from = stored.get(`${p.topic}\u0000${p.partition}`) ?? p.firstOffset;
      for (const c of p.chunks) {
        for (const item of c.items) {
          if (item.offset < from) {
            skipped++;
            continue;
          }
          if (item.error) {
            letters.push({ topic: p.topic, partition: p.partition, item, stage: item.error.stage, reason: item.error.reason });
            continue;
          }
          const row: Row = { item: item as Row['item'], block: c.block, topic: p.topic, partition: p.partition };
          // `on conflict do nothing` takes a key twice in one statement (the first wins).
          if (ctx.mode === 'insert') {
            rows.push(row);
            continue;
          }
          const k = c.block.keys![item.row!]!;
          const at = byKey.get(k);
          if (at === undefined) {
            byKey.set(k, rows.length);
            rows.push(row);
          } else rows[at] = row;
        }
      }
    }
    if (letters.length > 0 && ctx.errorTolerance === 'none') throw failure(letters[0]!);

    const sql = upsertSql(ctx.codec.spec.table, ctx.codec.keyFields, ctx.mode);
    let written = 0;
    const insert = async (batch: readonly Row[]): Promise<void> => {
      const r = await client.query(sql, columnsOf(ctx.codec, batch));
      written += r.rowCount ?? 0;
    };
    // Rows the database rejects are found by halving under savepoints; the rest still go in
    // set-based, a few statements instead of one.
    const bisect = async (batch: readonly Row[]): Promise<void> => {
      if (batch.length === 0) return;
      await client.query('savepoint tickflow_rows');
      try {
        await insert(batch);
        await client.query('release savepoint tickflow_rows');
        return;
      } catch (e) {
        if (!isRowError(e)) throw e;
        await client.query('rollback to savepoint tickflow_rows');
        await client.query('release savepoint tickflow_rows');
        if (batch.length === 1) {
          const row = batch[0]!;
          const letter: DeadLetter = { topic: row.topic, partition: row.partition, item: row.item, stage: 'write', reason: messageOf(e) };
          if (ctx.errorTolerance === 'none') throw failure(letter);
          letters.push(letter);
          return;
        }
      }
      const half = Math.ceil(batch.length / 2);
      await bisect(batch.slice(0, half));
      await bisect(batch.slice(half));
    };
    if (rows.length > 0) {
      if (bisecting) await bisect(rows);
      else {
        try {
          await insert(rows);
        } catch (e) {
          if (!isRowError(e)) throw e;
          await client.query('rollback');
          return RETRY_BISECTING;
        }
      }
    }

    let minTimeUs: number | undefined;
    for (const r of rows) {
      const t = r.block.times[r.item.row]!;
      if (minTimeUs === undefined || t < minTimeUs) minTimeUs = t;
    }

    await client.query(STORE_OFFSETS, [ctx.connector, topics, partitions, list.map((p) => p.nextOffset)]);
    // The dead letters go out before the commit: a failure here rolls the batch back and it is
    // retried, so a bad record is never committed past without being in the dead-letter topic.
    if (letters.length > 0) await ctx.deadLetter(letters);
    await client.query('commit');
    return {
      messages,
      rows: written,
      skipped,
      deadLettered: letters.length,
      minTimeUs,
      offsets: list.map((p) => ({ topic: p.topic, partition: p.partition, nextOffset: p.nextOffset, lag: Math.max(0, p.highWatermark - p.nextOffset) })),
    };
  };
  try {
    const first = await attempt(false);
    if (first !== RETRY_BISECTING) return first;
    const second = await attempt(true);
    if (second === RETRY_BISECTING) throw new TickflowError('INTERNAL', 'bisecting the batch did not isolate the rejected rows');
    return second;
  } catch (e) {
    broken = isTransientDbError(e) && !(e instanceof TickflowError);
    if (!broken) await client.query('rollback').catch(() => (broken = true));
    throw dbError(e, 'batch write failed');
  } finally {
    // A connection that failed mid-transaction is discarded, not returned to the pool.
    client.release(broken);
  }
}

function failure(l: DeadLetter): TickflowError {
  return new TickflowError('CONNECTOR_FAILED', `bad record at ${l.topic}[${l.partition}]@${l.item.offset} (${l.stage}): ${l.reason}; errorTolerance is none`);
}
