import type { Pool, PoolClient } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import type { KafkaMessage } from '../core/kafka.ts';
import { dbError, translatePgError } from '../core/pg-errors.ts';
import { rowsSlice, type DecodedBlock } from './decode.ts';
import type { DeadLetterStage } from './events.ts';
import { lockOffsets, partitionKey, storeOffsets, type OffsetRange } from './offsets.ts';
import { upsertSql, type RowCodec } from './tables.ts';

/**
 * The write path of one batch: one database transaction that
 * 1. locks the connector's `sink_offsets` rows of the batch's partitions (creating missing ones),
 * 2. drops the messages below the stored next offset (a replay, a zombie instance, a partition
 *    that moved to another instance while this batch was in flight: all write nothing),
 * 3. writes the remaining rows with one set-based statement per table (deduplicated first: a
 *    key twice in one `on conflict do update` is an error), isolating rows the database rejects
 *    by bisecting under savepoints,
 * 4. stores the next offsets, hands the bad records to the dead-letter callback (which must have
 *    produced them when it returns), then commits.
 * Nothing reaches `sink_offsets` that was not written or dead-lettered in the same transaction:
 * the rule and its statements are in offsets.ts. Here: grouping the chunks by partition
 * (`partitionsOf`), choosing the rows (`planRows`), inserting them (`insertRows`, bisecting).
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

/** Rows the database rejects for what they hold: data exceptions (22), integrity violations (23). */
function isRowError(e: unknown): boolean {
  const kind = translatePgError(e).kind;
  return kind === 'data' || kind === 'integrity';
}

/** The chunks of one partition in a batch, with its offset range. */
interface PartitionBatch extends OffsetRange {
  highWatermark: number;
  nextOffset: number;
  readonly chunks: Chunk[];
}

interface Row {
  readonly item: Item & { readonly row: number };
  readonly block: DecodedBlock;
  readonly topic: string;
  readonly partition: number;
}

/** What a transaction writes once the offsets are locked: rows, dead letters, replayed messages skipped. */
interface RowPlan {
  readonly rows: readonly Row[];
  readonly letters: readonly DeadLetter[];
  readonly skipped: number;
}

/**
 * One entry per partition, in a fixed order (topic, partition): two instances lock the same rows
 * in the same order, so they wait for each other instead of deadlocking.
 */
function partitionsOf(chunks: readonly Chunk[]): PartitionBatch[] {
  const parts = new Map<string, PartitionBatch>();
  for (const c of chunks) {
    if (c.items.length === 0) continue;
    const k = partitionKey(c.topic, c.partition);
    const p = parts.get(k);
    if (p) {
      p.chunks.push(c);
      p.nextOffset = Math.max(p.nextOffset, c.nextOffset);
      p.highWatermark = Math.max(p.highWatermark, c.highWatermark);
    } else parts.set(k, { topic: c.topic, partition: c.partition, firstOffset: c.items[0]!.offset, nextOffset: c.nextOffset, highWatermark: c.highWatermark, chunks: [c] });
  }
  return [...parts.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
}

/**
 * What is still to do past the stored offsets, deduplicated by key: upsert keeps the latest
 * version (a key twice in one `on conflict do update` is an error), insert the first
 * (`on conflict do nothing` takes a key twice in one statement).
 */
function planRows(parts: readonly PartitionBatch[], stored: ReadonlyMap<string, number>, mode: WriteContext['mode']): RowPlan {
  const letters: DeadLetter[] = [];
  const byKey = new Map<string, number>();
  const rows: Row[] = [];
  let skipped = 0;
  for (const p of parts) {
    const from = stored.get(partitionKey(p.topic, p.partition)) ?? p.firstOffset;
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
        if (mode === 'insert') {
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
  return { rows, letters, skipped };
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

/** Rows inserted or changed, and the rows the database rejected (as dead letters). */
interface Inserted {
  written: number;
  readonly rejected: DeadLetter[];
}

/**
 * Inserts the rows with one set-based statement. Not bisecting, a rejected statement gives
 * undefined (the caller rolls back and runs the batch again bisecting); bisecting, the rows the
 * database rejects are found by halving under savepoints, and the rest still go in set-based, a
 * few statements instead of one.
 */
async function insertRows(client: PoolClient, ctx: WriteContext, rows: readonly Row[], bisecting: boolean): Promise<Inserted | undefined> {
  const sql = upsertSql(ctx.codec.spec.table, ctx.codec.keyFields, ctx.mode);
  const done: Inserted = { written: 0, rejected: [] };
  const insert = async (batch: readonly Row[]): Promise<void> => {
    const r = await client.query(sql, columnsOf(ctx.codec, batch));
    done.written += r.rowCount ?? 0;
  };
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
        done.rejected.push(letter);
        return;
      }
    }
    const half = Math.ceil(batch.length / 2);
    await bisect(batch.slice(0, half));
    await bisect(batch.slice(half));
  };
  if (rows.length === 0) return done;
  if (bisecting) {
    await bisect(rows);
    return done;
  }
  try {
    await insert(rows);
  } catch (e) {
    if (!isRowError(e)) throw e;
    return undefined;
  }
  return done;
}

/** Smallest value of the table's time column among the rows, µs since the epoch. */
function minTimeOf(rows: readonly Row[]): number | undefined {
  let minTimeUs: number | undefined;
  for (const r of rows) {
    const t = r.block.times[r.item.row]!;
    if (minTimeUs === undefined || t < minTimeUs) minTimeUs = t;
  }
  return minTimeUs;
}

/** One transaction over the batch (see the top of this file); undefined when a row was rejected and it was not bisecting. */
async function transaction(client: PoolClient, ctx: WriteContext, parts: readonly PartitionBatch[], bisecting: boolean): Promise<Omit<WriteResult, 'messages'> | undefined> {
  await client.query('begin');
  const plan = planRows(parts, await lockOffsets(client, ctx.connector, parts), ctx.mode);
  if (plan.letters.length > 0 && ctx.errorTolerance === 'none') throw failure(plan.letters[0]!);
  const inserted = await insertRows(client, ctx, plan.rows, bisecting);
  if (!inserted) {
    await client.query('rollback');
    return undefined;
  }
  const letters = [...plan.letters, ...inserted.rejected];
  await storeOffsets(client, ctx.connector, parts);
  // The dead letters go out before the commit: a failure here rolls the batch back and it is
  // retried, so a bad record is never committed past without being in the dead-letter topic.
  if (letters.length > 0) await ctx.deadLetter(letters);
  await client.query('commit');
  return {
    rows: inserted.written,
    skipped: plan.skipped,
    deadLettered: letters.length,
    minTimeUs: minTimeOf(plan.rows),
    offsets: parts.map((p) => ({ topic: p.topic, partition: p.partition, nextOffset: p.nextOffset, lag: Math.max(0, p.highWatermark - p.nextOffset) })),
  };
}

export async function writeBatch(pool: Pool, ctx: WriteContext, chunks: readonly Chunk[]): Promise<WriteResult> {
  const parts = partitionsOf(chunks);
  const messages = chunks.reduce((n, c) => n + c.items.length, 0);
  if (parts.length === 0) return { messages, rows: 0, skipped: 0, deadLettered: 0, minTimeUs: undefined, offsets: [] };

  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw dbError(e, 'cannot connect to the database');
  }
  let broken = false;
  try {
    // The rows go in with one statement; only when the database rejects one does the batch run
    // again, bisecting under savepoints (which cost round trips the common case does not pay).
    const result = (await transaction(client, ctx, parts, false)) ?? (await transaction(client, ctx, parts, true));
    if (!result) throw new TickflowError('INTERNAL', 'bisecting the batch did not isolate the rejected rows');
    return { messages, ...result };
  } catch (e) {
    broken = !(e instanceof TickflowError) && translatePgError(e).retriable;
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
