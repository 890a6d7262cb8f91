import { TickflowError, messageOf } from '../core/errors.ts';
import { heartbeatUntil, type Consumer, type EachBatchPayload, type KafkaMessage } from '../core/kafka.ts';
import type { Logger } from '../core/log.ts';
import { RETRY, retry } from '../core/retry.ts';
import type { WriteTrigger } from './batching.ts';
import { ChunkQueue, type Take } from './chunk-queue.ts';
import type { ConnectorDeps } from './connector.ts';
import type { ConnectorConfig } from './config.ts';
import { DeadLetters } from './dead-letter.ts';
import type { DecodedBlock, DecodeTarget } from './decode.ts';
import { KafkaCommits, startPositions } from './offsets.ts';
import { rowCodec, type RowCodec } from './tables.ts';
import { writeBatch, type Chunk, type Item } from './writer.ts';

/**
 * One run of a connector's consumer (start → stop), as kafkajs's Runner is to its consumer: the
 * batch callback, the seeks on group join, decoding (retried through a schema registry outage),
 * the writer loop (retried through a database outage) and Kafka's committed offsets. A restart
 * makes a new run, so an old run's late retries never touch the new one's state.
 *
 * The batch callback splits each fetched batch into chunks of at most batchMaxRows messages,
 * hands each to the decoding thread and queues it (chunk-queue.ts) while it decodes; the writer
 * takes them in order, several per transaction (writer.ts), as soon as it is idle and what queued
 * up behind a transaction in flight (batching.ts). While an outage holds a write or a
 * decoding, the consumer is paused; it resumes when the outage is over.
 */

/** What a run shares with its connector, which outlives it. */
export interface ConnectorStats {
  readonly counts: { rows: number; messages: number; deadLettered: number; retries: number };
  lastError: { message: string; at: Date } | undefined;
  lastBatchAt: Date | undefined;
}

/** The run's connector. */
export interface RunHost {
  readonly name: string;
  readonly config: ConnectorConfig;
  readonly deps: ConnectorDeps;
  readonly stats: ConnectorStats;
  readonly log: Logger;
  /** Whether the connector is wanted RUNNING (not PAUSED): an outage over resumes the consumer only then. */
  wantsRunning(): boolean;
  /** The run cannot go on (a bad record with errorTolerance none, a non-retriable failure): fails the connector, which stops the run. */
  fail(e: unknown): Promise<void>;
}

/**
 * Queued per connector: QUEUE_BATCHES × batchMaxRows messages (chunks of at most batchMaxRows
 * each), in at most QUEUE_CHUNKS chunks: fetches answered at once are small while the rate is
 * low, and a transaction in flight, or a linger, lets many of them queue up for the next one.
 */
const QUEUE_BATCHES = 4;
const QUEUE_CHUNKS = 64;
const COMMIT_INTERVAL_MS = 1_000;
const HEARTBEAT_EVERY_MS = 2_000;

export class Runner {
  private readonly host: RunHost;
  private readonly consumer: Consumer;
  private readonly signal: AbortSignal;
  private readonly codecRows: RowCodec;
  private readonly decodeTarget: DecodeTarget;
  private readonly deadLetters: DeadLetters;
  private readonly kafkaCommits: KafkaCommits;
  private readonly queue: ChunkQueue;
  /** Group joins of this run; a join drops what is queued and what is being decoded. */
  private generation = 0;
  private positioned: Promise<void> = Promise.resolve();
  private writing: Promise<void> | undefined;
  private writerDone: Promise<void> = Promise.resolve();
  private commitTimer: NodeJS.Timeout | undefined;
  private pausedForOutage = false;
  /** Chunks being decoded again because the schema registry did not answer; the last error. */
  private registryWaits = 0;
  private registryError: { message: string; at: Date } | undefined;
  /** Set once the connector let go of the consumer (it is being disconnected). */
  private detached = false;
  /** The partitions this instance consumes (cleared once the run's consumer is disconnected). */
  readonly assigned = new Map<string, number[]>();

  /** `signal` aborts when the connector stops: retries end, callbacks return. */
  constructor(host: RunHost, consumer: Consumer, signal: AbortSignal) {
    this.host = host;
    this.consumer = consumer;
    this.signal = signal;
    const c = host.config;
    this.codecRows = rowCodec(c.table, c.keyFields);
    this.queue = new ChunkQueue(QUEUE_CHUNKS, undefined, QUEUE_BATCHES * c.batchMaxRows);
    this.decodeTarget = { connector: c.name, table: c.table, keyFields: c.keyFields, keys: c.insertMode === 'upsert' };
    this.deadLetters = new DeadLetters(host.deps.producer, c.deadLetterTopic, c.name, host.deps.events);
    this.kafkaCommits = new KafkaCommits(host.log);
  }

  private get stopping(): boolean {
    return this.signal.aborted;
  }

  /** Starts the writer loop, before the consumer runs. */
  startWriter(): void {
    this.writerDone = this.writerLoop();
  }

  /** Starts mirroring the committed offsets to Kafka, once the consumer runs. */
  startCommitting(): void {
    this.commitTimer = setInterval(() => void this.commitKafka(), COMMIT_INTERVAL_MS);
  }

  /** After the signal aborted: drops the queue, waits for the write in flight, commits to Kafka. */
  async finish(): Promise<void> {
    this.queue.drop();
    clearInterval(this.commitTimer);
    await this.writerDone.catch(() => undefined);
    await this.commitKafka();
  }

  /** The connector let go of the consumer: no more seeks, pauses or resumes on it. */
  detach(): void {
    this.detached = true;
  }

  /** Whether an outage (database, schema registry) keeps the consumer paused. */
  held(): boolean {
    return this.pausedForOutage || this.registryWaits > 0;
  }

  /** What an outage keeps from being written now, or null. */
  outage(): string | null {
    if (this.pausedForOutage) return `database unreachable, writes retried: ${this.host.stats.lastError?.message ?? ''}`.trim();
    if (this.registryWaits > 0 && this.registryError) return `waiting for the schema registry (decoding retried, nothing committed meanwhile): ${this.registryError.message}`;
    return null;
  }

  private hold(): void {
    if (!this.held() && !this.detached) this.consumer.pause(this.host.config.topics.map((topic) => ({ topic })));
  }

  private release(): void {
    if (!this.held() && this.host.wantsRunning() && !this.stopping && !this.detached) this.consumer.resume(this.host.config.topics.map((topic) => ({ topic })));
  }

  /** Group join (start or rebalance): drop what is queued, then seek to the database's offsets. */
  onGroupJoin(assignment: Record<string, number[]>, rebalance: boolean): void {
    const gen = ++this.generation;
    this.queue.drop();
    this.assigned.clear();
    for (const [topic, ps] of Object.entries(assignment)) this.assigned.set(topic, ps);
    const assigned = new Map(this.assigned);
    const { deps, name } = this.host;
    this.positioned = (async () => {
      await this.writing?.catch(() => undefined);
      const positions = await startPositions(deps.pool, deps.admin, name, assigned, this.signal);
      if (gen !== this.generation || this.detached) return;
      for (const p of positions) {
        if (p.seek !== undefined) this.consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.seek) });
      }
      deps.events.emit('assigned', { connector: name, partitions: positions.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.stored })), rebalance });
    })();
    this.positioned.catch(() => undefined);
  }

  async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const gen = this.generation;
    // Wait for the seek of this generation; a batch fetched before it is stale.
    await heartbeatUntil(this.positioned, heartbeat, HEARTBEAT_EVERY_MS);
    const live = () => isRunning() && !isStale() && !this.stopping && gen === this.generation;
    if (!live() || batch.messages.length === 0) return;
    const max = this.host.config.batchMaxRows;
    for (let from = 0; from < batch.messages.length; from += max) {
      const messages = batch.messages.slice(from, from + max);
      while (this.queue.full) {
        await this.queue.waitForSpace(HEARTBEAT_EVERY_MS);
        if (!live()) return;
        await heartbeat();
        if (!live()) return;
      }
      if (!live()) return;
      // Queued while it is decoded (in the decoder's thread): the callback returns and kafkajs
      // fetches the next batch meanwhile; the writer takes chunks in queue order once decoded.
      this.queue.push(this.decode(batch, messages), messages.length);
      resolveOffset(messages[messages.length - 1]!.offset);
    }
  }

  /** Decodes a slice of a fetched batch (sink/decode.ts) into the writer's chunk. */
  private async decode(batch: EachBatchPayload['batch'], messages: readonly KafkaMessage[]): Promise<Chunk> {
    const block = await this.decodeWithRetry(messages.map((m) => m.value));
    const errors = new Map(block.errors.map((e) => [e.index, e]));
    const items = messages.map((message, i): Item => {
      const offset = Number(message.offset);
      const row = block.rowOf[i]!;
      if (row >= 0) return { offset, message, row };
      const e = errors.get(i)!;
      return { offset, message, error: { stage: e.stage, reason: e.reason } };
    });
    const last = messages[messages.length - 1]!;
    return { topic: batch.topic, partition: batch.partition, items, block, nextOffset: Number(last.offset) + 1, highWatermark: Number(batch.highWatermark) };
  }

  /**
   * Decodes, retrying with backoff while decoding fails as retriable (the schema registry
   * unreachable): the consumer is paused meanwhile and the status says what it waits for. Gives
   * up when the chunk is dropped (a rebalance, a stop); a non-retriable failure fails the
   * connector through the writer.
   */
  private async decodeWithRetry(values: readonly (Buffer | null)[]): Promise<DecodedBlock> {
    const { deps, name, stats } = this.host;
    const gen = this.generation;
    let waiting = false;
    let attempts = 0;
    let decoded = false;
    try {
      const block = await retry(
        () => {
          if (gen !== this.generation || this.stopping) throw new TickflowError('INTERNAL', `connector ${name}: chunk dropped (rebalance or stop)`);
          // Only what says it is retriable is retried (not a bug in the decoding thread).
          return deps.decoder.decode(this.decodeTarget, values).catch((e: unknown) => {
            throw e instanceof TickflowError ? e : new TickflowError('AVRO_DECODE', messageOf(e), { cause: e });
          });
        },
        {
          ...RETRY.schemaRegistry,
          signal: this.signal,
          onRetry: (err, attempt, delayMs) => {
            attempts = attempt;
            if (!waiting) {
              waiting = true;
              this.hold();
              this.registryWaits++;
            }
            stats.counts.retries++;
            this.registryError = { message: messageOf(err), at: new Date() };
            stats.lastError = this.registryError;
            deps.events.emit('retry', { connector: name, stage: 'decode', attempt, delayMs, error: messageOf(err) });
          },
        },
      );
      decoded = true;
      return block;
    } finally {
      if (waiting) {
        if (--this.registryWaits === 0) {
          this.registryError = undefined;
          if (decoded && gen === this.generation && !this.stopping) this.host.log.info({ attempts }, 'the schema registry answers again: decoding resumed');
        }
        this.release();
      }
    }
  }

  private async writerLoop(): Promise<void> {
    while (!this.stopping) {
      // Decoded chunks (any partitions) in one transaction, filled up to batchMaxRows messages.
      let take: Take;
      try {
        take = await this.queue.takeBatch(this.host.config);
      } catch (e) {
        // The oldest chunk failed to decode (not for an outage: that is retried while decoding).
        if (!this.stopping) void this.host.fail(e);
        break;
      }
      if (take.chunks.length === 0) continue;
      // What the callback queues while this transaction is in flight goes in the next one at once.
      this.queue.writing = true;
      const run = this.writeWithRetry(take.chunks, take.trigger);
      this.writing = run;
      try {
        await run;
      } catch (e) {
        // Not awaited: fail() stops the connector, and its stop waits for this loop to end.
        if (!this.stopping) void this.host.fail(e);
        break;
      } finally {
        this.writing = undefined;
        this.queue.writing = false;
      }
    }
  }

  private async writeWithRetry(chunks: Chunk[], trigger: WriteTrigger): Promise<void> {
    const { config: c, deps, name, stats } = this.host;
    const t0 = performance.now();
    const result = await retry(
      () => writeBatch(deps.pool, { connector: name, codec: this.codecRows, mode: c.insertMode, errorTolerance: c.errorTolerance, deadLetter: (l) => this.deadLetters.send(l) }, chunks),
      {
        ...RETRY.database,
        signal: this.signal,
        onRetry: (err, attempt, delayMs) => {
          stats.counts.retries++;
          stats.lastError = { message: messageOf(err), at: new Date() };
          if (!this.pausedForOutage) {
            this.hold();
            this.pausedForOutage = true;
          }
          deps.events.emit('retry', { connector: name, stage: 'write', attempt, delayMs, error: messageOf(err) });
        },
      },
    );
    if (this.pausedForOutage) {
      this.pausedForOutage = false;
      this.host.log.info({ retries: stats.counts.retries }, 'the write went through: writing again');
      this.release();
    }
    stats.counts.rows += result.rows;
    stats.counts.messages += result.messages - result.skipped;
    stats.counts.deadLettered += result.deadLettered;
    stats.lastBatchAt = new Date();
    const seconds = (performance.now() - t0) / 1000;
    deps.events.emit('batch', { connector: name, table: c.table, trigger, messages: result.messages, rows: result.rows, skipped: result.skipped, deadLettered: result.deadLettered, seconds });
    deps.events.emit('commit', { connector: name, offsets: result.offsets });
    if (result.minTimeUs !== undefined) deps.onWritten?.(c.table, result.minTimeUs);
    this.kafkaCommits.note(result.offsets);
  }

  /** Kafka's committed offsets follow the database's, best effort (monitoring, a fresh database). */
  private commitKafka(): Promise<void> {
    return this.kafkaCommits.commit(this.detached ? undefined : this.consumer, this.assigned);
  }
}
