/**
 * Where the last gateway process stopped, per (exchange, symbol, channel[, timeframe]), read back
 * at start-up from the gateway's own output in Kafka: the last trade (id and time), candle
 * bucket, ticker and book snapshot of each instrument in the tail of its topics.
 *
 * Kafka's content is the position: it is exact whatever way the last process ended (a SIGKILL
 * with records still buffered included: what never reached Kafka is refilled), and nothing is
 * written for it. A key lives in one partition (murmur2 of `exchange:symbol`), so only that
 * partition's tail is read, backwards in growing windows until every wanted key is found, the
 * partition's start is reached or `maxRecordsPerPartition` were scanned; only records of the
 * wanted keys are decoded. A key not found (never produced, or older than the scan) starts as
 * new, as before.
 *
 * With a position, the streams resume from it (streams.ts, recovery.ts, poll.ts): trades are refilled over
 * REST from the stored trade id/time and deduped against it, candles are backfilled from the
 * stored bucket, and the downtime of every stream is a gap record (open, then closed with what
 * came back; tickers and books cannot be refilled, and their gap record says so).
 */
import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { TickflowError } from '../core/errors.ts';
import type { AvroCodec } from '../core/avro.ts';
import type { Channel } from './config.ts';
import { createKafka, partitionOfKey, partitionOffsets, readRanges, recordKey, type KafkaSettings, type OffsetRange } from '../core/kafka.ts';
import type { Logger } from '../core/log.ts';
import { startTsWorker } from '../core/ts-worker.ts';
import { KIND_OF_CHANNEL, assertNever } from '../schemas/catalog.ts';
import { topicFor, type Candle, type RecordKind } from '../schemas/index.ts';
import type { StreamRef } from './events.ts';

/** The last record of a stream the previous process got into Kafka. */
export interface StreamPosition {
  /** The record's `ts` (µs): trade/ticker/book exchange time, candle bucket open. */
  readonly tsUs: number;
  /** Trades: the trade id. */
  readonly id?: string;
  /** Candles: whether that bucket was closed. */
  readonly closed?: boolean;
  /**
   * Not a record in Kafka: when the gateway started, for a stream Kafka has no position of while
   * the streams had to wait for Kafka at start (what the exchange sent meanwhile is refilled or
   * stated from there, rather than lost without a trace).
   */
  readonly waited?: true;
  /**
   * Not a record in Kafka: the stream has no record in Kafka since `tsUs` (the oldest record the
   * scan of its partition read, `ReadPositionsOptions.unseenSince`). A takeover resumes from there:
   * trades refilled since, and what is not recovered stated from there.
   */
  readonly unseen?: true;
  /**
   * The instrument was taken over from another gateway process of a shard group (gateways/shard.ts):
   * its streams resume quietly, a gap record only for what was not recovered (trades, candles) or
   * for a ticker/book resumed more than `quietMs` after this record.
   */
  readonly takeover?: Takeover;
}

/** How an instrument taken over by this process (a shard move) states its handover. */
export interface Takeover {
  /** Names the shard (`group main`). */
  readonly by: string;
  readonly quietMs: number;
}

/** The streams of one exchange entry whose position is wanted. */
export interface PositionsWanted {
  readonly exchange: string;
  readonly symbols: readonly string[];
  readonly channels: readonly Channel[];
  readonly timeframes: readonly string[];
}

const itemKey = (exchange: string, symbol: string, channel: Channel, timeframe?: string) =>
  `${exchange}\u0000${symbol}\u0000${channel}${timeframe ? `\u0000${timeframe}` : ''}`;

export class Positions {
  private readonly map = new Map<string, StreamPosition>();

  get(ref: StreamRef): StreamPosition | undefined {
    return this.map.get(itemKey(ref.exchange, ref.symbol, ref.channel, ref.timeframe));
  }

  set(ref: StreamRef, p: StreamPosition): void {
    this.map.set(itemKey(ref.exchange, ref.symbol, ref.channel, ref.timeframe), p);
  }

  get size(): number {
    return this.map.size;
  }

  /** The positions found, by stream (a worker thread's answer, positions-worker.ts). */
  entries(): Array<[StreamRef, StreamPosition]> {
    return [...this.map].map(([k, p]) => {
      const [exchange, symbol, channel, timeframe] = k.split('\u0000') as [string, string, Channel, string | undefined];
      return [{ exchange, symbol, channel, ...(timeframe ? { timeframe } : {}) }, p];
    });
  }

  /** Set when Kafka could not be read at start: when the gateway started (ms). */
  waitedSinceMs: number | undefined;

  /** Set when these positions are read for instruments a shard group moved to this process. */
  takeover: Takeover | undefined;

  /** The instruments these positions were read for (readPositions); undefined: any. */
  asked: Set<string> | undefined;

  /** Whether these positions were read for the instrument (found or not). */
  covers(exchange: string, symbol: string): boolean {
    return !this.asked || this.asked.has(`${exchange}\u0000${symbol}`);
  }

  /**
   * Where a stream resumes: its last record in Kafka, else, when the streams had to wait for
   * Kafka, the gateway's start. Candles take their history from `backfillLookbackMinutes` then.
   */
  resumeFrom(ref: StreamRef): StreamPosition | undefined {
    const p = this.get(ref);
    if (p && this.takeover) return { ...p, takeover: this.takeover };
    if (p || this.waitedSinceMs === undefined || ref.channel === 'ohlcv') return p;
    return { tsUs: this.waitedSinceMs * 1000, waited: true };
  }
}

export interface ReadPositionsOptions {
  readonly log: Logger;
  /** Give up (keeping what was found) after this long. */
  readonly timeoutMs?: number;
  /** First window per partition; each further round reads 8 times more. */
  readonly firstWindow?: number;
  readonly maxRecordsPerPartition?: number;
  /**
   * A stream not found in the part of its partition the scan read (cut short by the record cap or
   * the timeout) gets an `unseen` position: the oldest record read there, at most `unseenSince`
   * ms ago. Without it such a stream starts as new. Shard takeovers set it: an instrument taken
   * over resumes from where Kafka proves it has nothing of it, rather than silently from now.
   */
  readonly unseenSince?: number;
}

interface PartitionScan {
  readonly topic: string;
  readonly partition: number;
  readonly low: number;
  /** Scanned down to here (exclusive of what is below). */
  from: number;
  window: number;
  /** Message key → the items wanted under it (candles: one per timeframe). */
  readonly wanted: Map<string, Map<string, StreamRef>>;
  readonly found: Map<string, { offset: number; pos: StreamPosition }>;
  /** The oldest Kafka timestamp (ms) among the records read. */
  oldestMs?: number;
}

/**
 * Reads the positions of the wanted streams from the tail of their topics. Throws when Kafka
 * cannot be asked at all; a scan cut short by `timeoutMs` keeps what it found (logged).
 */
export async function readPositions(settings: KafkaSettings, codec: AvroCodec, wanted: readonly PositionsWanted[], o: ReadPositionsOptions): Promise<Positions> {
  const out = new Positions();
  out.asked = new Set(wanted.flatMap((w) => w.symbols.map((s) => `${w.exchange}\u0000${s}`)));
  const started = Date.now();
  const kafka = createKafka(settings, 2);
  const admin = kafka.admin();
  const scans = new Map<string, PartitionScan>();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const kinds = new Set(wanted.flatMap((w) => w.channels.map((c) => KIND_OF_CHANNEL[c])));
    for (const kind of kinds) {
      const topic = topicFor(settings.topicPrefix, kind);
      if (!existing.has(topic)) continue;
      const offsets = await partitionOffsets(admin, topic);
      for (const w of wanted) {
        const channel = (Object.keys(KIND_OF_CHANNEL) as Channel[]).find((c) => KIND_OF_CHANNEL[c] === kind)!;
        if (!w.channels.includes(channel)) continue;
        for (const symbol of w.symbols) {
          const key = recordKey({ exchange: w.exchange, symbol });
          const partition = partitionOfKey(key, offsets.size);
          const bounds = offsets.get(partition);
          if (!bounds || bounds.high <= bounds.low) continue;
          const id = `${topic}:${partition}`;
          let scan = scans.get(id);
          if (!scan) scans.set(id, (scan = { topic, partition, low: bounds.low, from: bounds.high, window: o.firstWindow ?? 2_000, wanted: new Map(), found: new Map() }));
          let items = scan.wanted.get(key);
          if (!items) scan.wanted.set(key, (items = new Map()));
          for (const timeframe of channel === 'ohlcv' ? w.timeframes : [undefined]) {
            const ref: StreamRef = { exchange: w.exchange, symbol, channel, ...(timeframe ? { timeframe } : {}) };
            items.set(itemKey(w.exchange, symbol, channel, timeframe), ref);
          }
        }
      }
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  if (scans.size === 0) return out;

  const max = o.maxRecordsPerPartition ?? 200_000;
  const highOf = new Map([...scans].map(([id, s]) => [id, s.from]));
  /** The next window of every partition that still misses a wanted stream. */
  let round = 0;
  let delivered = 0;
  const rounds = (): OffsetRange[] => {
    o.log.debug({ round: round++, ms: Date.now() - started, delivered }, 'positions scan: a round read');
    const ranges: OffsetRange[] = [];
    for (const [id, s] of scans) {
      const missing = [...s.wanted.values()].some((items) => [...items.keys()].some((k) => !s.found.has(k)));
      const already = highOf.get(id)! - s.from;
      if (!missing || s.from <= s.low || already >= max) continue;
      const from = Math.max(s.low, s.from - Math.min(s.window, max - already));
      ranges.push({ topic: s.topic, partition: s.partition, from, to: s.from });
      s.from = from;
      s.window *= 8;
    }
    return ranges;
  };
  let undecodable = 0;
  const onMessage = async (topic: string, partition: number, m: { key: Buffer | null; value: Buffer | null; offset: string; timestamp: string }) => {
    const s = scans.get(`${topic}:${partition}`);
    delivered++;
    const at = Number(m.timestamp);
    if (s && Number.isFinite(at) && (s.oldestMs === undefined || at < s.oldestMs)) s.oldestMs = at;
    const items = m.key && m.value ? s?.wanted.get(m.key.toString()) : undefined;
    if (!s || !items) return;
    let rec: { kind: RecordKind; value: Record<string, unknown> };
    try {
      const d = await codec.decode(m.value!);
      rec = { kind: d.kind, value: d.value as unknown as Record<string, unknown> };
    } catch {
      undecodable++;
      return;
    }
    const offset = Number(m.offset);
    for (const [k, ref] of items) {
      if (KIND_OF_CHANNEL[ref.channel] !== rec.kind) continue;
      if (ref.timeframe !== undefined && (rec.value as unknown as Candle).timeframe !== ref.timeframe) continue;
      const prev = s.found.get(k);
      if (prev && prev.offset >= offset) continue;
      const v = rec.value;
      const pos: StreamPosition =
        rec.kind === 'trade' ? { tsUs: Number(v.ts), id: String(v.id) } : rec.kind === 'candle' ? { tsUs: Number(v.ts), closed: v.closed === true } : { tsUs: Number(v.ts) };
      s.found.set(k, { offset, pos });
    }
  };
  const first = rounds();
  const complete = await readRanges(kafka, first, onMessage, rounds, { groupId: `${settings.clientId}-positions-${randomBytes(4).toString('hex')}`, timeoutMs: o.timeoutMs ?? 30_000 });
  let wantedCount = 0;
  let unseen = 0;
  const notFound: Record<string, number> = {};
  for (const s of scans.values()) {
    for (const items of s.wanted.values()) {
      for (const [k, ref] of items) {
        wantedCount++;
        const f = s.found.get(k);
        if (f) out.set(ref, f.pos);
        else {
          notFound[ref.channel] = (notFound[ref.channel] ?? 0) + 1;
          // Read down to the partition's start: never produced, a new stream. Else none since the oldest record read.
          if (o.unseenSince !== undefined && s.oldestMs !== undefined && (s.from > s.low || !complete)) {
            out.set(ref, { tsUs: Math.max(s.oldestMs, started - o.unseenSince) * 1000, unseen: true });
            unseen++;
          }
        }
      }
    }
  }
  const scanned = [...scans.values()].reduce((n, s) => n + (highOf.get(`${s.topic}:${s.partition}`)! - s.from), 0);
  const found = out.size - unseen;
  const msg = `positions of the last run: ${found} of ${wantedCount} streams found in Kafka (${scanned} records scanned in ${Date.now() - started} ms)${unseen > 0 ? `; ${unseen} with no record in the part read resume from its oldest record` : ''}`;
  if (!complete) o.log.warn({ found, unseen, wanted: wantedCount, notFound }, `${msg}; the scan timed out${wantedCount > out.size ? `, ${wantedCount - out.size} streams of partitions it read nothing of start as new` : ''}`);
  else o.log.info({ found, unseen, wanted: wantedCount, undecodable, notFound }, msg);
  return out;
}

/** The gap reason of a stream resuming after a restart (what could and could not come back). */
export function restartReason(ref: StreamRef, p: StreamPosition): string {
  const at = new Date(p.tsUs / 1000).toISOString();
  if (p.waited) {
    const why = `Kafka unreachable when the gateway started at ${at}, nothing in Kafka for this stream`;
    if (ref.channel === 'trades') return `${why}; trades since refilled over REST`;
    return `${why}; ${ref.channel === 'book' ? 'book snapshots' : 'ticker updates'} in between cannot be refilled`;
  }
  const what = p.takeover ? `taken over by this gateway process (shard ${p.takeover.by})` : 'gateway restarted';
  if (p.unseen) {
    const none = `${what}; no record of this stream in Kafka since ${at} (as far back as the scan read)`;
    if (ref.channel === 'trades') return `${none}, trades since refilled over REST`;
    if (ref.channel === 'ohlcv') return `${none}, candles since backfilled over REST`;
    return `${none}; ${ref.channel === 'book' ? 'book snapshots' : 'ticker updates'} in between cannot be refilled`;
  }
  switch (ref.channel) {
    case 'trades':
      return `${what}; last trade in Kafka ${p.id ?? ''} at ${at}, trades since refilled over REST`;
    case 'ohlcv':
      return `${what}; last candle in Kafka opens ${at}, candles since backfilled over REST`;
    case 'ticker':
      return `${what}; last ticker in Kafka at ${at}; ticker updates in between cannot be refilled`;
    case 'book':
      return `${what}; last book snapshot in Kafka at ${at}; book snapshots in between cannot be refilled`;
    default:
      return assertNever(ref.channel);
  }
}

/** A takeover's trades or candles not recovered within this many `handoverGapMs` are stated as a gap. */
export const TAKEOVER_REFILL_ALLOWANCE = 3;

/** Opens the stream's restart gap (from where the last process stopped), if there is a position. */
export function openRestartGap(
  stoppedAt: ((ref: StreamRef) => StreamPosition | undefined) | undefined,
  ref: StreamRef,
  gap: { open(fromUs: number, reason: string, opts?: { quietUs?: number; stateAfterMs?: number }): void },
): StreamPosition | undefined {
  const p = stoppedAt?.(ref);
  if (!p) return p;
  // A takeover states only what was missed: trades and candles are refilled (a record if not all
  // came back), tickers and books only when they resume later than the handover allows.
  const refilled = ref.channel === 'trades' || ref.channel === 'ohlcv';
  const quietUs = p.takeover ? (refilled ? Infinity : p.takeover.quietMs * 1000) : undefined;
  // Still open after the handover allowance (a stream not back yet; for refilled channels three
  // times it: a refill queued or slow) the gap is stated then, and closed as any other.
  gap.open(p.tsUs, restartReason(ref, p), quietUs !== undefined ? { quietUs, stateAfterMs: p.takeover!.quietMs * (refilled ? TAKEOVER_REFILL_ALLOWANCE : 1) } : {});
  return p;
}

/** tsx's ESM API as a file URL (as sink/decode.ts loads its worker). */
/**
 * readPositions in a worker thread of its own (positions-worker.ts): a shard takeover's scan does
 * not wait on the event-loop turns of a process busy serving its other instruments. Falls back
 * to the calling thread when a worker cannot be started.
 */
export async function readPositionsOffThread(
  settings: KafkaSettings & { readonly schemaRegistryUrl?: string | undefined },
  codec: AvroCodec,
  wanted: readonly PositionsWanted[],
  o: ReadPositionsOptions,
): Promise<Positions> {
  const { log, ...options } = o;
  let w: Worker;
  try {
    w = startTsWorker(new URL('./positions-worker.ts', import.meta.url), { settings: { ...settings, brokers: [...settings.brokers] }, wanted, options });
  } catch (e) {
    log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cannot start a worker thread for the positions scan; scanning in the main thread');
    return readPositions(settings, codec, wanted, o);
  }
  const reply = await new Promise<{ entries?: Array<[StreamRef, StreamPosition]>; error?: string; code?: string }>((resolve) => {
    w.once('message', resolve);
    w.once('error', (e) => resolve({ error: e.message }));
    w.once('exit', (code) => resolve({ error: `the positions worker exited (${code})` }));
  });
  void w.terminate();
  if (reply.error !== undefined) throw new TickflowError('KAFKA_UNREACHABLE', `reading positions: ${reply.error}`, { retriable: true });
  const out = new Positions();
  out.asked = new Set(wanted.flatMap((x) => x.symbols.map((s) => `${x.exchange}\u0000${s}`)));
  for (const [ref, p] of reply.entries ?? []) out.set(ref, p);
  return out;
}
