import type { Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { createConsumer, type Admin, type Consumer, type ConsumerConfig, type EachBatchPayload, type Kafka, type KafkaMessage, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { retry, sleep } from '../core/retry.ts';
import { ChunkQueue } from './chunk-queue.ts';
import type { ConnectorConfig } from './config.ts';
import { DeadLetters } from './dead-letter.ts';
import type { DecodedBlock, Decoder, DecodeTarget } from './decode.ts';
import type { ConnectorState, SinkEmitter } from './events.ts';
import { KafkaCommits, partitionStatus, startPositions, type PartitionStatus } from './offsets.ts';
import { rowCodec, TABLES, type RowCodec, type TableName } from './tables.ts';
import { writeBatch, type Chunk, type Item } from './writer.ts';

export type { PartitionStatus } from './offsets.ts';

/**
 * One connector: a kafkajs consumer group reading its topics, and a writer that puts each batch
 * into the database in one transaction with the partitions' next offsets (see writer.ts). This
 * file is the facade and its lifecycle; the parts are testable alone: offsets.ts (every
 * `sink_offsets` statement, the exactly-once rule), chunk-queue.ts (decoded chunks in order),
 * writer.ts (one transaction), dead-letter.ts (the dead-letter topic).
 *
 * The consumer side splits each fetched batch into chunks of at most batchMaxRows messages, hands
 * each to the decoding thread (decode.ts) and puts it in a small bounded queue while it decodes;
 * the writer drains the queue in order, several decoded chunks per transaction up to
 * batchMaxRows. So the next fetch and the decoding overlap the previous write, and memory stays
 * bounded (QUEUE_CHUNKS queued, one transaction in flight). Offsets are
 * resolved in kafkajs as soon as a chunk is queued, which only moves the fetch position: Kafka's
 * committed offsets follow the database, after each commit, best effort. The database is the
 * source of truth: on every group join (start, rebalance) the queue is dropped, the write in
 * flight is awaited, and each assigned partition is sought to the offset stored in the database
 * (a partition without one: to the start of its log; Kafka's committed offsets are never read).
 *
 * A database outage: the write is retried with backoff (core/retry.ts) while the consumer is
 * paused (the queue is full anyway, and the batch callback keeps heartbeating), then resumes.
 * A schema registry outage (a Confluent schema id not fetched yet, the registry unreachable or
 * answering 5xx: a retriable decode error) is handled the same way one step earlier: the chunk
 * is decoded again with backoff while the consumer is paused, and the writer waits for it, so
 * nothing after it is committed and nothing goes to the dead-letter topic for an outage.
 */

export interface ConnectorDeps {
  readonly kafka: Kafka;
  readonly pool: Pool;
  /** Decodes fetched batches, off the main thread (shared by the sink's connectors). */
  readonly decoder: Decoder;
  /** The dead-letter producer (idempotent), shared by the sink's connectors. */
  readonly producer: Producer;
  readonly admin: Admin;
  readonly events: SinkEmitter;
  /** Kafka client id: the consumer group is `<clientId>-sink-<name>`. */
  readonly clientId: string;
  /** After each commit: the table and the oldest time written, for the aggregate refresh. */
  readonly onWritten?: (table: TableName, minTimeUs: number) => void;
  /** Whether Kafka answers now (bounded, cached; sink/health.ts), for the status. */
  readonly kafkaCheck?: () => Promise<{ ok: boolean; error?: string } | undefined>;
}

export interface ConnectorStatus {
  readonly name: string;
  readonly state: ConnectorState;
  readonly table: TableName;
  readonly topics: readonly string[];
  readonly rowsWritten: number;
  readonly messagesProcessed: number;
  readonly deadLettered: number;
  readonly retries: number;
  readonly lastError: string | null;
  readonly lastErrorAt: string | null;
  readonly lastBatchAt: string | null;
  /** What keeps it from writing now (the database or Kafka unreachable), null when nothing. */
  readonly problem: string | null;
}

/** Chunks queued per connector (each at most batchMaxRows messages). */
const QUEUE_CHUNKS = 4;
const COMMIT_INTERVAL_MS = 1_000;
const HEARTBEAT_EVERY_MS = 2_000;

/** The consumer of a connector: fetch sizes from batchMaxRows, group timings from sessionTimeoutMs. */
function consumerConfig(groupId: string, c: ConnectorConfig): ConsumerConfig {
  return {
    groupId,
    // lingerMs: the broker holds a fetch until it has about a batch, or lingerMs passed.
    // Fetch sizes follow batchMaxRows (compressed bytes, ~64 per trade record): a fetch is
    // held in memory as message objects until written, so it bounds the sink's memory.
    maxWaitTimeInMs: Math.max(10, c.lingerMs),
    minBytes: Math.min(256 << 10, c.batchMaxRows * 16),
    maxBytesPerPartition: Math.min(1 << 20, Math.max(64 << 10, c.batchMaxRows * 64)),
    maxBytes: 8 << 20,
    // A member that stops heartbeating (a killed process) holds its partitions until the
    // session times out; a restarted instance's join waits for that too. kafkajs has no
    // static membership (it never sends a group.instance.id), so the session timeout is
    // what bounds recovery: see sessionTimeoutMs in config.ts. Heartbeats go out every
    // second (a fifth of the 6 s minimum), so a rebalance is noticed within about a second.
    sessionTimeout: c.sessionTimeoutMs,
    heartbeatInterval: Math.min(1_000, Math.floor(c.sessionTimeoutMs / 5)),
    // How long the coordinator waits for every member to re-join in a rebalance; a member
    // stuck longer is dropped from that generation (and joins the next one).
    rebalanceTimeout: Math.max(10_000, c.sessionTimeoutMs),
    retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
  };
}

export class Connector {
  readonly name: string;
  private readonly codecRows: RowCodec;
  private readonly decodeTarget: DecodeTarget;
  private readonly deadLetters: DeadLetters;
  private readonly log;
  private consumer: Consumer | undefined;
  private state: ConnectorState = 'STOPPED';
  private wanted: 'RUNNING' | 'PAUSED' = 'RUNNING';
  private lastError: { message: string; at: Date } | undefined;
  private lastBatchAt: Date | undefined;
  private counts = { rows: 0, messages: 0, deadLettered: 0, retries: 0 };

  // The pipeline between the batch callback and the writer.
  private readonly queue = new ChunkQueue(QUEUE_CHUNKS);
  private generation = 0;
  private positioned: Promise<void> = Promise.resolve();
  private writing: Promise<void> | undefined;
  private writerDone: Promise<void> = Promise.resolve();
  private stopping = false;
  private abort = new AbortController();
  private pausedForOutage = false;
  /** Chunks being decoded again because the schema registry did not answer; the last error. */
  private registryWaits = 0;
  private registryError: { message: string; at: Date } | undefined;
  /** Group joins since the consumer started (the first is routine; later ones are rebalances). */
  private joins = 0;
  private assigned = new Map<string, number[]>();
  private readonly kafkaCommits: KafkaCommits;
  private commitTimer: NodeJS.Timeout | undefined;
  /** The consumer's last failure to talk to Kafka (it restarts itself), cleared by the next fetch or join. */
  private kafkaError: { message: string; at: Date } | undefined;
  private joined = false;
  private partitionsInFlight: Promise<PartitionStatus[]> | undefined;
  private starting: Promise<void> | undefined;
  /** The consumer stop() disconnected (a start it interrupted must not disconnect it twice). */
  private stoppedConsumer: Consumer | undefined;
  private startFailing = false;

  constructor(
    readonly config: ConnectorConfig,
    private readonly deps: ConnectorDeps,
    readonly source: 'config' | 'api',
  ) {
    this.name = config.name;
    this.codecRows = rowCodec(config.table, config.keyFields);
    this.decodeTarget = { connector: config.name, table: config.table, keyFields: config.keyFields, keys: config.insertMode === 'upsert' };
    this.log = logger('sink').child({ connector: config.name });
    this.deadLetters = new DeadLetters(deps.producer, config.deadLetterTopic, config.name, deps.events);
    this.kafkaCommits = new KafkaCommits(this.log);
  }

  get groupId(): string {
    return `${this.deps.clientId}-sink-${this.name}`;
  }

  get currentState(): ConnectorState {
    return this.state;
  }

  /** Starts consuming (or stays PAUSED when asked); a failure to start leaves the connector FAILED. */
  start(paused = false): Promise<void> {
    if (this.state === 'RUNNING' || this.state === 'PAUSED') return Promise.resolve();
    this.starting ??= this.doStart(paused).finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async doStart(paused: boolean): Promise<void> {
    this.wanted = paused ? 'PAUSED' : 'RUNNING';
    this.stopping = false;
    this.abort = new AbortController();
    this.queue.drop();
    this.pausedForOutage = false;
    this.registryWaits = 0;
    this.registryError = undefined;
    this.joins = 0;
    // stop() during a start (a signal at start-up, a DELETE) wins: each step checks it, and a
    // consumer created meanwhile is disconnected, not left running on its own.
    const abort = this.abort;
    const stopped = () => {
      if (abort.signal.aborted) throw new TickflowError('INTERNAL', `connector ${this.name} stopped while starting`);
    };
    try {
      await this.checkConflictKey();
      stopped();
      const c = this.config;
      const consumer = createConsumer(this.deps.kafka, consumerConfig(this.groupId, c));
      this.consumer = consumer;
      this.joined = false;
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        this.joined = true;
        this.kafkaError = undefined;
        this.onGroupJoin(e.payload.memberAssignment);
      });
      consumer.on(consumer.events.FETCH, () => (this.kafkaError = undefined));
      consumer.on(consumer.events.CRASH, (e) => {
        if (this.stopping) return;
        this.kafkaError = { message: messageOf(e.payload.error), at: new Date() };
        this.joined = false;
        if (!e.payload.restart) void this.fail(new TickflowError('KAFKA_UNREACHABLE', `consumer crashed: ${messageOf(e.payload.error)}`, { cause: e.payload.error }));
      });
      await consumer.connect();
      stopped();
      await consumer.subscribe({ topics: [...c.topics], fromBeginning: true });
      stopped();
      this.writerDone = this.writerLoop();
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: (p) => this.eachBatch(p),
      });
      stopped();
      if (this.wanted === 'PAUSED') consumer.pause(c.topics.map((topic) => ({ topic })));
      this.commitTimer = setInterval(() => void this.commitKafka(), COMMIT_INTERVAL_MS);
      this.setState(this.wanted);
    } catch (e) {
      if (abort.signal.aborted) {
        // stop() took over (it disconnects this.consumer); one it did not see goes here.
        if (this.consumer && this.consumer !== this.stoppedConsumer) {
          const mine = this.consumer;
          this.consumer = undefined;
          await mine.disconnect().catch(() => undefined);
        }
        return;
      }
      // fail() stops the connector; that stop must not wait for this very start.
      this.startFailing = true;
      try {
        await this.fail(e);
      } finally {
        this.startFailing = false;
      }
    }
  }

  /** Stops consuming; the write in flight finishes, queued batches are re-read next time. */
  async stop(): Promise<void> {
    if (this.state === 'STOPPED' && !this.consumer && !this.starting) return;
    this.stopping = true;
    this.abort.abort(new TickflowError('INTERNAL', 'connector stopping'));
    this.queue.drop();
    clearInterval(this.commitTimer);
    await this.writerDone.catch(() => undefined);
    await this.commitKafka();
    const consumer = this.consumer;
    this.consumer = undefined;
    this.stoppedConsumer = consumer;
    // Disconnecting also ends a join still in progress (a start being stopped).
    if (consumer) await consumer.disconnect().catch((e) => this.log.warn({ err: messageOf(e) }, 'consumer disconnect failed'));
    if (this.starting && !this.startFailing) await this.starting.catch(() => undefined);
    this.assigned.clear();
    if (this.state !== 'FAILED') this.setState('STOPPED');
  }

  async restart(): Promise<void> {
    await this.stop();
    this.lastError = undefined;
    this.state = 'STOPPED';
    await this.start(this.wanted === 'PAUSED');
  }

  pause(): void {
    this.wanted = 'PAUSED';
    if (this.state !== 'RUNNING') return;
    this.consumer?.pause(this.config.topics.map((topic) => ({ topic })));
    this.setState('PAUSED');
  }

  resume(): void {
    this.wanted = 'RUNNING';
    if (this.state !== 'PAUSED') return;
    if (!this.held()) this.consumer?.resume(this.config.topics.map((topic) => ({ topic })));
    this.setState('RUNNING');
  }

  status(): ConnectorStatus {
    return {
      name: this.name,
      state: this.state,
      table: this.config.table,
      topics: this.config.topics,
      rowsWritten: this.counts.rows,
      messagesProcessed: this.counts.messages,
      deadLettered: this.counts.deadLettered,
      retries: this.counts.retries,
      lastError: this.lastError?.message ?? null,
      lastErrorAt: this.lastError?.at.toISOString() ?? null,
      lastBatchAt: this.lastBatchAt?.toISOString() ?? null,
      problem: this.problem(),
    };
  }

  /** What keeps the connector from writing now, or null. */
  problem(): string | null {
    if (this.state === 'FAILED') return this.lastError?.message ?? 'failed';
    if (this.pausedForOutage) return `database unreachable, writes retried: ${this.lastError?.message ?? ''}`.trim();
    if (this.registryWaits > 0 && this.registryError) return `waiting for the schema registry (decoding retried, nothing committed meanwhile): ${this.registryError.message}`;
    if (this.kafkaError) return `Kafka: ${this.kafkaError.message} (since ${this.kafkaError.at.toISOString()}; the consumer retries)`;
    if ((this.state === 'RUNNING' || this.state === 'PAUSED') && !this.joined) return 'joining the consumer group';
    return null;
  }

  /** Whether Kafka answers now (bounded, cached): undefined when the sink does not check. */
  kafkaCheck(): Promise<{ ok: boolean; error?: string } | undefined> {
    return this.deps.kafkaCheck?.() ?? Promise.resolve(undefined);
  }

  /**
   * Per partition of the connector's topics: stored offset, high watermark, lag. One request at a
   * time: callers that give up waiting (a status with a deadline while Kafka is down) do not
   * stack up admin requests behind kafkajs's retries.
   */
  partitions(): Promise<PartitionStatus[]> {
    this.partitionsInFlight ??= this.readPartitions().finally(() => (this.partitionsInFlight = undefined));
    return this.partitionsInFlight;
  }

  private readPartitions(): Promise<PartitionStatus[]> {
    return partitionStatus(this.deps.pool, this.deps.admin, this.name, this.config.topics, this.assigned);
  }

  // ---- internals ----

  /** Whether an outage (database, schema registry) keeps the consumer paused. */
  private held(): boolean {
    return this.pausedForOutage || this.registryWaits > 0;
  }

  private hold(): void {
    if (!this.held()) this.consumer?.pause(this.config.topics.map((topic) => ({ topic })));
  }

  private release(): void {
    if (!this.held() && this.wanted === 'RUNNING' && !this.stopping) this.consumer?.resume(this.config.topics.map((topic) => ({ topic })));
  }

  private setState(state: ConnectorState, reason?: string): void {
    if (this.state === state) return;
    this.state = state;
    this.deps.events.emit('state', { connector: this.name, state, ...(reason ? { reason } : {}) });
  }

  private async fail(e: unknown): Promise<void> {
    const message = messageOf(e);
    this.lastError = { message, at: new Date() };
    this.setState('FAILED', message);
    if (!this.stopping) {
      // Stop consuming; status keeps FAILED and the reason until a restart.
      await this.stop().catch(() => undefined);
    }
  }

  /** A conflict key other than the primary key needs a unique index on exactly those columns. */
  private async checkConflictKey(): Promise<void> {
    if (!this.config.keyFields) return;
    const r = await this.deps.pool.query(
      `select 1 from pg_index i
       where i.indrelid = to_regclass($1) and i.indisunique
         and (select array_agg(a.attname::text order by a.attname) from pg_attribute a
              where a.attrelid = i.indrelid and a.attnum = any(i.indkey)) = $2::text[]`,
      [this.config.table, [...this.config.keyFields].sort()],
    );
    if (!r.rowCount) {
      throw new TickflowError('CONFIG_INVALID', `connector ${this.name}: keyFields (${this.config.keyFields.join(', ')}) match no unique index of ${this.config.table}; use its primary key (${TABLES[this.config.table].primaryKey.join(', ')})`);
    }
  }

  /** Group join (start or rebalance): drop what is queued, then seek to the database's offsets. */
  private onGroupJoin(assignment: Record<string, number[]>): void {
    const gen = ++this.generation;
    this.queue.drop();
    const assigned = new Map(Object.entries(assignment));
    this.assigned = assigned;
    const rebalance = ++this.joins > 1;
    this.positioned = (async () => {
      await this.writing?.catch(() => undefined);
      const positions = await startPositions(this.deps.pool, this.deps.admin, this.name, assigned, this.abort.signal);
      if (gen !== this.generation || !this.consumer) return;
      for (const p of positions) {
        if (p.seek !== undefined) this.consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.seek) });
      }
      this.deps.events.emit('assigned', { connector: this.name, partitions: positions.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.stored })), rebalance });
    })();
    this.positioned.catch(() => undefined);
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const gen = this.generation;
    // Wait for the seek of this generation; a batch fetched before it is stale.
    for (;;) {
      const done = await Promise.race([this.positioned.then(() => true, () => true), sleep(HEARTBEAT_EVERY_MS).then(() => false)]);
      if (done) break;
      await heartbeat();
    }
    const live = () => isRunning() && !isStale() && !this.stopping && gen === this.generation;
    if (!live() || batch.messages.length === 0) return;
    const max = this.config.batchMaxRows;
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
      this.queue.push(this.decode(batch, messages));
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
    const gen = this.generation;
    // The run of the consumer (a restart resets the count; an old run's retries must not touch it).
    const run = this.abort;
    let waiting = false;
    let attempts = 0;
    let decoded = false;
    try {
      const block = await retry(
        () => {
          if (gen !== this.generation || this.stopping) throw new TickflowError('INTERNAL', `connector ${this.name}: chunk dropped (rebalance or stop)`);
          // Only what says it is retriable is retried (not a bug in the decoding thread).
          return this.deps.decoder.decode(this.decodeTarget, values).catch((e: unknown) => {
            throw e instanceof TickflowError ? e : new TickflowError('AVRO_DECODE', messageOf(e), { cause: e });
          });
        },
        {
          attempts: Number.MAX_SAFE_INTEGER,
          initialDelayMs: 500,
          maxDelayMs: 10_000,
          signal: this.abort.signal,
          onRetry: (err, attempt, delayMs) => {
            attempts = attempt;
            if (!waiting) {
              waiting = true;
              this.hold();
              this.registryWaits++;
            }
            this.counts.retries++;
            this.registryError = { message: messageOf(err), at: new Date() };
            this.lastError = this.registryError;
            this.deps.events.emit('retry', { connector: this.name, stage: 'decode', attempt, delayMs, error: messageOf(err) });
          },
        },
      );
      decoded = true;
      return block;
    } finally {
      if (waiting && run === this.abort) {
        if (--this.registryWaits === 0) {
          this.registryError = undefined;
          if (decoded && gen === this.generation && !this.stopping) this.log.info({ attempts }, 'the schema registry answers again: decoding resumed');
        }
        this.release();
      }
    }
  }

  private async writerLoop(): Promise<void> {
    while (!this.stopping) {
      // Decoded chunks (any partitions) in one transaction, filled up to batchMaxRows messages.
      let take: Chunk[];
      try {
        take = await this.queue.take(this.config.batchMaxRows);
      } catch (e) {
        // The oldest chunk failed to decode (not for an outage: that is retried while decoding).
        if (!this.stopping) void this.fail(e);
        break;
      }
      if (take.length === 0) continue;
      const run = this.writeWithRetry(take);
      this.writing = run;
      try {
        await run;
      } catch (e) {
        // Not awaited: fail() stops the connector, and stop() waits for this loop to end.
        if (!this.stopping) void this.fail(e);
        break;
      } finally {
        this.writing = undefined;
      }
    }
  }

  private async writeWithRetry(chunks: Chunk[]): Promise<void> {
    const t0 = performance.now();
    const result = await retry(
      () =>
        writeBatch(
          this.deps.pool,
          { connector: this.name, codec: this.codecRows, mode: this.config.insertMode, errorTolerance: this.config.errorTolerance, deadLetter: (l) => this.deadLetters.send(l) },
          chunks,
        ),
      {
        attempts: Number.MAX_SAFE_INTEGER,
        initialDelayMs: 200,
        maxDelayMs: 5_000,
        signal: this.abort.signal,
        onRetry: (err, attempt, delayMs) => {
          this.counts.retries++;
          this.lastError = { message: messageOf(err), at: new Date() };
          if (!this.pausedForOutage) {
            this.hold();
            this.pausedForOutage = true;
          }
          this.deps.events.emit('retry', { connector: this.name, stage: 'write', attempt, delayMs, error: messageOf(err) });
        },
      },
    );
    if (this.pausedForOutage) {
      this.pausedForOutage = false;
      this.log.info({ retries: this.counts.retries }, 'the write went through: writing again');
      this.release();
    }
    this.counts.rows += result.rows;
    this.counts.messages += result.messages - result.skipped;
    this.counts.deadLettered += result.deadLettered;
    this.lastBatchAt = new Date();
    const seconds = (performance.now() - t0) / 1000;
    this.deps.events.emit('batch', { connector: this.name, table: this.config.table, messages: result.messages, rows: result.rows, skipped: result.skipped, deadLettered: result.deadLettered, seconds });
    this.deps.events.emit('commit', { connector: this.name, offsets: result.offsets });
    if (result.minTimeUs !== undefined) this.deps.onWritten?.(this.config.table, result.minTimeUs);
    this.kafkaCommits.note(result.offsets);
  }

  /** Kafka's committed offsets follow the database's, best effort (monitoring, a fresh database). */
  private commitKafka(): Promise<void> {
    return this.kafkaCommits.commit(this.consumer, this.assigned);
  }
}
