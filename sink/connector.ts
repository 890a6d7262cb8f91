import type { Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { createConsumer, partitionOffsets, type Admin, type Consumer, type EachBatchPayload, type IHeaders, type Kafka, type KafkaMessage, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { retry, sleep } from '../core/retry.ts';
import type { ConnectorConfig } from './config.ts';
import type { DecodedBlock, Decoder, DecodeTarget } from './decode.ts';
import type { ConnectorState, SinkEmitter } from './events.ts';
import { rowCodec, TABLES, type RowCodec, type TableName } from './tables.ts';
import { dbError, writeBatch, type Chunk, type DeadLetter, type Item } from './writer.ts';

/**
 * One connector: a kafkajs consumer group reading its topics, and a writer that puts each batch
 * into the database in one transaction with the partitions' next offsets (see writer.ts).
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

export const DLQ_HEADERS = {
  reason: 'dlq.reason',
  stage: 'dlq.stage',
  topic: 'dlq.topic',
  partition: 'dlq.partition',
  offset: 'dlq.offset',
  connector: 'dlq.connector',
} as const;

/** A slice of a fetched batch in the queue: being decoded (chunk undefined) or decoded. */
interface Queued {
  chunk: Chunk | undefined;
  readonly ready: Promise<Chunk>;
}

/** Chunks queued per connector (each at most batchMaxRows messages). */
const QUEUE_CHUNKS = 4;
const COMMIT_INTERVAL_MS = 1_000;
const HEARTBEAT_EVERY_MS = 2_000;

export class Connector {
  readonly name: string;
  private readonly codecRows: RowCodec;
  private readonly decodeTarget: DecodeTarget;
  private readonly log;
  private consumer: Consumer | undefined;
  private state: ConnectorState = 'STOPPED';
  private wanted: 'RUNNING' | 'PAUSED' = 'RUNNING';
  private lastError: { message: string; at: Date } | undefined;
  private lastBatchAt: Date | undefined;
  private counts = { rows: 0, messages: 0, deadLettered: 0, retries: 0 };

  // The pipeline between the batch callback and the writer.
  private queue: Queued[] = [];
  private generation = 0;
  private positioned: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private spaceWaiters: (() => void)[] = [];
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
  private toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  private commitTimer: NodeJS.Timeout | undefined;
  private committing: Promise<void> | undefined;
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
    this.queue = [];
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
      const consumer = createConsumer(this.deps.kafka, {
        groupId: this.groupId,
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
      });
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
    this.queue = [];
    this.wake?.();
    for (const w of this.spaceWaiters.splice(0)) w();
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

  private async readPartitions(): Promise<PartitionStatus[]> {
    const stored = new Map<string, number>();
    const r = await this.deps.pool.query<{ topic: string; partition: number; next_offset: number }>('select topic, partition, next_offset from sink_offsets where connector = $1', [this.name]);
    for (const row of r.rows) stored.set(`${row.topic}\u0000${row.partition}`, Number(row.next_offset));
    const out: PartitionStatus[] = [];
    for (const topic of this.config.topics) {
      const offsets = await partitionOffsets(this.deps.admin, topic);
      for (const [partition, { low, high }] of [...offsets].sort((a, b) => a[0] - b[0])) {
        const next = stored.get(`${topic}\u0000${partition}`);
        out.push({ topic, partition, nextOffset: next ?? null, highWatermark: high, lag: Math.max(0, high - Math.max(next ?? low, low)), assigned: this.assigned.get(topic)?.includes(partition) ?? false });
      }
    }
    return out;
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
    this.queue = [];
    for (const w of this.spaceWaiters.splice(0)) w();
    this.assigned = new Map(Object.entries(assignment));
    const rebalance = ++this.joins > 1;
    this.positioned = (async () => {
      await this.writing?.catch(() => undefined);
      const topics = [...this.assigned.keys()];
      const rows = await retry(
        async () => {
          try {
            return (await this.deps.pool.query<{ topic: string; partition: number; next_offset: number }>('select topic, partition, next_offset from sink_offsets where connector = $1 and topic = any($2::text[])', [this.name, topics])).rows;
          } catch (e) {
            throw dbError(e, 'reading the stored offsets failed');
          }
        },
        { attempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 200, maxDelayMs: 5_000, signal: this.abort.signal },
      );
      const stored = new Map(rows.map((r) => [`${r.topic}\u0000${r.partition}`, Number(r.next_offset)]));
      // A partition the database has never seen starts at the beginning of the log, whatever
      // Kafka's committed offset says (a new or restored database must not miss records).
      const earliest = new Map<string, number>();
      for (const [topic, ps] of this.assigned) {
        if (ps.every((p) => stored.has(`${topic}\u0000${p}`))) continue;
        for (const [p, o] of await retry(() => partitionOffsets(this.deps.admin, topic), { attempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 200, maxDelayMs: 5_000, signal: this.abort.signal })) earliest.set(`${topic}\u0000${p}`, o.low);
      }
      if (gen !== this.generation || !this.consumer) return;
      const partitions: { topic: string; partition: number; offset: number | null }[] = [];
      for (const [topic, ps] of this.assigned) {
        for (const partition of ps) {
          const k = `${topic}\u0000${partition}`;
          const offset = stored.get(k) ?? earliest.get(k);
          if (offset !== undefined) this.consumer.seek({ topic, partition, offset: String(offset) });
          partitions.push({ topic, partition, offset: stored.get(k) ?? null });
        }
      }
      this.deps.events.emit('assigned', { connector: this.name, partitions, rebalance });
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
      while (this.queue.length >= QUEUE_CHUNKS) {
        await Promise.race([new Promise<void>((r) => this.spaceWaiters.push(r)), sleep(HEARTBEAT_EVERY_MS)]);
        if (!live()) return;
        await heartbeat();
        if (!live()) return;
      }
      if (!live()) return;
      // Queued while it is decoded (in the decoder's thread): the callback returns and kafkajs
      // fetches the next batch meanwhile; the writer takes chunks in queue order once decoded.
      const q: Queued = { chunk: undefined, ready: this.decode(batch, messages) };
      q.ready.then(
        (chunk) => {
          q.chunk = chunk;
          this.wake?.();
        },
        () => this.wake?.(),
      );
      this.queue.push(q);
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
      const first = this.queue[0];
      if (!first) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      if (!first.chunk) {
        // The oldest chunk is still being decoded: wait for it (or for the queue to be dropped).
        const gen = this.generation;
        try {
          await first.ready;
        } catch (e) {
          if (gen === this.generation && !this.stopping) {
            void this.fail(e);
            break;
          }
        }
        continue;
      }
      // Decoded chunks (any partitions) in one transaction, filled up to batchMaxRows messages:
      // a chunk that does not fit whole is split, its rest stays first in the queue.
      const take: Chunk[] = [];
      let n = 0;
      while (this.queue.length > 0 && n < this.config.batchMaxRows) {
        const head = this.queue[0]!.chunk;
        if (!head) break;
        const room = this.config.batchMaxRows - n;
        if (head.items.length <= room) {
          this.queue.shift();
          take.push(head);
          n += head.items.length;
        } else {
          const part = head.items.slice(0, room);
          take.push({ ...head, items: part, nextOffset: part[part.length - 1]!.offset + 1 });
          const rest = { ...head, items: head.items.slice(room) };
          this.queue[0] = { chunk: rest, ready: Promise.resolve(rest) };
          n += room;
        }
      }
      for (const w of this.spaceWaiters.splice(0)) w();
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
          { connector: this.name, codec: this.codecRows, mode: this.config.insertMode, errorTolerance: this.config.errorTolerance, deadLetter: (l) => this.deadLetter(l) },
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
    for (const o of result.offsets) this.toCommit.set(`${o.topic}\u0000${o.partition}`, { topic: o.topic, partition: o.partition, offset: String(o.nextOffset) });
  }

  private async deadLetter(letters: readonly DeadLetter[]): Promise<void> {
    const topic = this.config.deadLetterTopic;
    try {
      await this.deps.producer.send({
        topic,
        acks: -1,
        messages: letters.map((l) => ({
          key: l.item.message.key,
          value: l.item.message.value,
          headers: {
            ...(l.item.message.headers as IHeaders | undefined),
            [DLQ_HEADERS.reason]: l.reason.slice(0, 2000),
            [DLQ_HEADERS.stage]: l.stage,
            [DLQ_HEADERS.topic]: l.topic,
            [DLQ_HEADERS.partition]: String(l.partition),
            [DLQ_HEADERS.offset]: String(l.item.offset),
            [DLQ_HEADERS.connector]: this.name,
          },
        })),
      });
    } catch (e) {
      throw new TickflowError('DEAD_LETTER', `producing ${letters.length} record(s) to the dead-letter topic ${topic} failed: ${messageOf(e)}`, { retriable: true, cause: e });
    }
    for (const l of letters) {
      this.deps.events.emit('deadLetter', { connector: this.name, topic: l.topic, partition: l.partition, offset: String(l.item.offset), stage: l.stage, reason: l.reason });
    }
  }

  /** Kafka's committed offsets follow the database's, best effort (monitoring, a fresh database). */
  private commitKafka(): Promise<void> {
    if (this.committing || this.toCommit.size === 0 || !this.consumer) return this.committing ?? Promise.resolve();
    const offsets = [...this.toCommit.values()].filter((o) => this.assigned.get(o.topic)?.includes(o.partition));
    this.toCommit.clear();
    if (offsets.length === 0) return Promise.resolve();
    const consumer = this.consumer;
    this.committing = consumer
      .commitOffsets(offsets)
      .catch((e) => this.log.debug({ err: messageOf(e) }, 'committing offsets to Kafka failed (the database has them)'))
      .finally(() => (this.committing = undefined));
    return this.committing;
  }
}
