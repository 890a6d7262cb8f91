import type { Worker } from 'node:worker_threads';
import { createCodec, type AvroCodec } from '../core/avro.ts';
import { ERROR_CODES, TickflowError, messageOf, type ErrorCode } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { startTsWorker } from '../core/ts-worker.ts';
import type { DeadLetterStage } from './events.ts';
import { rowCodec, TABLES, TIME_COLUMN, type RowCodec, type TableName } from './tables.ts';

/**
 * Decoding a batch of Kafka message values into what the writer sends: per column, the array
 * elements of the valid records (`"binance"`, `42000.5`, `NULL`) joined by commas, with where
 * each record's element ends, so the writer takes a whole batch as one string per column and
 * any run of records (a replay's tail, a bisected half) as a slice of it. Records that cannot be
 * decoded or would be rejected by the table come back as errors with the reason; a failure that
 * is not the record's (the schema registry unreachable: a retriable error) rejects the whole
 * batch instead, its code and retriable flag kept across the thread boundary, so the connector
 * pauses and retries it rather than dead-lettering good records.
 *
 * Decoding (Avro, validation, number formatting) is most of the sink's CPU per record and most
 * of its garbage: it runs in one worker thread per sink process, beside the thread that talks
 * to Kafka and the database, so the writer's round trips never wait behind a batch being
 * decoded (bench:sink on the PostgreSQL server: 97-99k rows/s decoding in the main thread,
 * 113-125k in the worker; sink/README.md). Without the worker (it failed to start or died) the
 * same function runs in the calling thread, yielding every few hundred records.
 */

/** What one connector's values are decoded for. */
export interface DecodeTarget {
  readonly connector: string;
  readonly table: TableName;
  readonly keyFields?: readonly string[] | undefined;
  /** Return each record's key (upsert mode deduplicates by it). */
  readonly keys: boolean;
}

/** Message values packed for a transfer: one buffer, and where each value ends (-1: no value). */
export interface PackedValues {
  readonly bytes: Uint8Array;
  readonly ends: Int32Array;
}

export interface DecodeError {
  /** The message's index in the batch. */
  readonly index: number;
  readonly stage: DeadLetterStage;
  readonly reason: string;
}

export interface DecodedBlock {
  /** Valid records, in message order. */
  readonly rows: number;
  /** Per column: the rows' array elements joined by ','. */
  readonly columns: readonly string[];
  /** Column j, row r: where its element ends in columns[j], at j * stride + r. */
  readonly ends: Int32Array;
  readonly stride: number;
  /** Per message: its row, or -1 when it is in errors. */
  readonly rowOf: Int32Array;
  /** Per row: the table's time column, µs since the epoch. */
  readonly times: Float64Array;
  /** Per row: RowCodec.key, when asked for. */
  readonly keys: readonly string[] | undefined;
  readonly errors: readonly DecodeError[];
}

export function packValues(values: readonly (Buffer | null | undefined)[]): PackedValues {
  let size = 0;
  for (const v of values) size += v?.length ?? 0;
  const bytes = new Uint8Array(size);
  const ends = new Int32Array(values.length);
  let at = 0;
  values.forEach((v, i) => {
    if (v) {
      bytes.set(v, at);
      at += v.length;
      ends[i] = at;
    } else ends[i] = -1;
  });
  return { bytes, ends };
}

/** Rows [from, to) of a block, column j: their elements joined by ','. */
export function rowsSlice(b: DecodedBlock, j: number, from: number, to: number): string {
  if (from === 0 && to === b.rows) return b.columns[j]!;
  const start = from === 0 ? 0 : b.ends[j * b.stride + from - 1]! + 1;
  return b.columns[j]!.slice(start, b.ends[j * b.stride + to - 1]!);
}

const codecs = new Map<string, RowCodec>();
function rowCodecFor(t: DecodeTarget): RowCodec {
  const k = `${t.table}\u0000${(t.keyFields ?? []).join('\u0000')}`;
  let c = codecs.get(k);
  if (!c) codecs.set(k, (c = rowCodec(t.table, t.keyFields)));
  return c;
}

/**
 * Decodes packed values (either Avro framing, old writer schemas resolved), validates them
 * against the table, and renders the valid ones' array elements. `yieldEvery`: records between
 * two yields to the event loop (in the thread that also runs the writer).
 */
export async function decodeValues(codec: AvroCodec, target: DecodeTarget, packed: PackedValues, yieldEvery = 0): Promise<DecodedBlock> {
  const rc = rowCodecFor(target);
  const spec = TABLES[target.table];
  const timeCol = TIME_COLUMN[target.table];
  const n = packed.ends.length;
  const ncols = spec.columns.length;
  const parts: string[][] = spec.columns.map(() => []);
  const lengths = spec.columns.map(() => 0);
  const ends = new Int32Array(ncols * n);
  const rowOf = new Int32Array(n);
  const times = new Float64Array(n);
  const keys: string[] | undefined = target.keys ? [] : undefined;
  const errors: DecodeError[] = [];
  const buf = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
  let rows = 0;
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (yieldEvery > 0 && i > 0 && i % yieldEvery === 0) await new Promise<void>((r) => setImmediate(r));
    const end = packed.ends[i]!;
    rowOf[i] = -1;
    if (end < 0 || end === start) {
      if (end >= 0) start = end;
      errors.push({ index: i, stage: 'decode', reason: 'the message has no value' });
      continue;
    }
    const value = buf.subarray(start, end);
    start = end;
    let record;
    try {
      // Single-object encoding decodes synchronously; only Confluent ids may need the registry.
      const d = value[0] === 0xc3 ? codec.decodeSingleObject(value) : await codec.decode(value);
      if (d.kind !== spec.kind) {
        errors.push({ index: i, stage: 'decode', reason: `a ${d.kind} record, but connector ${target.connector} writes ${spec.kind} records into ${target.table}` });
        continue;
      }
      record = d.value;
    } catch (e) {
      // The registry down is an outage, not a bad record: the batch is retried (connector.ts).
      if (e instanceof TickflowError && e.retriable) throw e;
      errors.push({ index: i, stage: 'decode', reason: messageOf(e) });
      continue;
    }
    const why = rc.validate(record);
    if (why) {
      errors.push({ index: i, stage: 'validate', reason: why });
      continue;
    }
    const cells = rc.cells(record);
    for (let j = 0; j < ncols; j++) {
      const c = cells[j]!;
      const at = lengths[j]! + (rows > 0 ? 1 : 0) + c.length;
      lengths[j] = at;
      ends[j * n + rows] = at;
      parts[j]!.push(c);
    }
    times[rows] = (record as unknown as Record<string, number>)[timeCol]!;
    keys?.push(rc.key(record));
    rowOf[i] = rows++;
  }
  return { rows, columns: parts.map((p) => p.join(',')), ends, stride: n, rowOf, times, keys, errors };
}

// ---- the worker ----

export interface DecodeRequest {
  readonly id: number;
  readonly target: DecodeTarget;
  readonly packed: PackedValues;
}
/** A failed batch: the error's message, and its code and retriable flag when it is a TickflowError. */
export type DecodeReply = { readonly id: number; readonly block: DecodedBlock } | { readonly id: number; readonly error: string; readonly code?: ErrorCode; readonly retriable?: boolean };

/** What a worker sends for a batch that failed as a whole. */
export function errorReply(id: number, e: unknown): DecodeReply {
  return e instanceof TickflowError ? { id, error: e.message, code: e.code, retriable: e.retriable } : { id, error: messageOf(e) };
}

/** The error of a failed reply, as a TickflowError again (code and retriable flag kept). */
export function replyError(m: { error: string; code?: ErrorCode; retriable?: boolean }): Error {
  if (m.code === undefined || !ERROR_CODES.includes(m.code)) return new Error(m.error);
  return new TickflowError(m.code, m.error, { retriable: m.retriable === true });
}

/**
 * How long one decoding attempt waits for an unreachable schema registry (a schema id not
 * fetched yet) before the batch fails as retriable and the connector pauses and retries it,
 * saying so in its status.
 */
export const REGISTRY_WAIT_MS = 5_000;

/** Records between yields when decoding in the writer's own thread. */
const IN_THREAD_SLICE = 500;

/**
 * One decoding worker thread, shared by a sink process's connectors. Requests are answered in
 * any order, by id. A worker that dies takes no batch with it: what it had pending, and what
 * comes while it is replaced, is decoded in the calling thread.
 */
export class Decoder {
  private readonly kafka: { readonly topicPrefix: string; readonly schemaRegistryUrl?: string | undefined };
  private readonly threaded: boolean;
  private readonly registryWaitMs: number;
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 1;
  private readonly pending = new Map<number, { target: DecodeTarget; values: readonly (Buffer | null | undefined)[]; resolve: (b: DecodedBlock) => void; reject: (e: Error) => void }>();
  private local: AvroCodec | undefined;
  private readonly log = logger('sink');

  constructor(
    kafka: { readonly topicPrefix: string; readonly schemaRegistryUrl?: string | undefined },
    threaded = true,
    registryWaitMs = REGISTRY_WAIT_MS,
  ) {
    this.kafka = kafka;
    this.threaded = threaded;
    this.registryWaitMs = registryWaitMs;
  }

  /** Starts the worker thread now (it takes a moment to load), rather than on the first batch. */
  start(): void {
    if (this.threaded && !this.broken) this.spawn();
  }

  async decode(target: DecodeTarget, values: readonly (Buffer | null | undefined)[]): Promise<DecodedBlock> {
    const worker = this.threaded && !this.broken ? this.spawn() : undefined;
    if (!worker) return this.decodeHere(target, values);
    const req: DecodeRequest = { id: this.nextId++, target, packed: packValues(values) };
    return new Promise<DecodedBlock>((resolve, reject) => {
      this.pending.set(req.id, { target, values, resolve, reject });
      worker.postMessage(req, [req.packed.bytes.buffer as ArrayBuffer, req.packed.ends.buffer as ArrayBuffer]);
    });
  }

  /** Stops the worker; a batch still decoding is rejected (connectors are stopped first). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(new TickflowError('INTERNAL', 'the sink is closing: decoding abandoned'));
    if (w) await w.terminate();
  }

  private decodeHere(target: DecodeTarget, values: readonly (Buffer | null | undefined)[]): Promise<DecodedBlock> {
    this.local ??= createCodec(this.kafka, { idWaitMs: this.registryWaitMs });
    return decodeValues(this.local, target, packValues(values), IN_THREAD_SLICE);
  }

  private spawn(): Worker | undefined {
    if (this.worker) return this.worker;
    try {
      const w = startTsWorker(new URL('./decode-worker.ts', import.meta.url), {
        kafka: { topicPrefix: this.kafka.topicPrefix, schemaRegistryUrl: this.kafka.schemaRegistryUrl },
        idWaitMs: this.registryWaitMs,
      });
      w.unref();
      let answered = false;
      w.on('message', (m: DecodeReply) => {
        answered = true;
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if ('block' in m) p.resolve(m.block);
        else p.reject(replyError(m));
      });
      const lost = (why: string) => {
        if (this.worker !== w) return;
        this.worker = undefined;
        if (this.broken) return;
        // A worker that never answered is not tried again; one that ran is replaced on next use.
        if (!answered) this.broken = true;
        this.log.warn({ reason: why }, answered ? 'the decoding worker thread stopped; its batches are decoded in the main thread' : 'cannot start a decoding worker thread; decoding in the main thread');
        const pending = [...this.pending.values()];
        this.pending.clear();
        for (const p of pending) this.decodeHere(p.target, p.values).then(p.resolve, p.reject);
      };
      w.on('error', (e) => lost(messageOf(e)));
      w.on('exit', (code) => lost(`exit code ${code}`));
      this.worker = w;
      return w;
    } catch (e) {
      this.broken = true;
      this.log.warn({ err: messageOf(e) }, 'cannot start a decoding worker thread; decoding in the main thread');
      return undefined;
    }
  }
}
