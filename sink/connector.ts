import type { Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { createConsumer, type Admin, type Consumer, type ConsumerConfig, type Kafka, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import type { ConnectorConfig } from './config.ts';
import type { Decoder } from './decode.ts';
import type { ConnectorState, SinkEmitter } from './events.ts';
import { partitionStatus, type PartitionStatus } from './offsets.ts';
import { Runner, type ConnectorStats, type RunHost } from './runner.ts';
import { TABLES, type TableName } from './tables.ts';

export type { PartitionStatus } from './offsets.ts';

/**
 * One connector, the facade: a kafkajs consumer group reading its topics into its table, with
 * its lifecycle (start, stop, restart, pause, resume: stop wins over a start in progress) and
 * status. The parts, each testable alone, as kafkajs splits its consumer:
 * - runner.ts: one run of the consumer — the batch callback, seeks on group join, decoding,
 *   the writer loop, retries through outages (the consumer paused meanwhile);
 * - offsets.ts: every `sink_offsets` statement and the exactly-once rule;
 * - chunk-queue.ts: chunks being decoded, taken by the writer in order;
 * - writer.ts: one batch, one transaction; dead-letter.ts: the dead-letter topic.
 *
 * The consumer side splits each fetched batch into chunks of at most batchMaxRows messages, hands
 * each to the decoding thread (decode.ts) and puts it in a small bounded queue while it decodes;
 * the writer drains the queue in order, several decoded chunks per transaction up to
 * batchMaxRows. So the next fetch and the decoding overlap the previous write, and memory stays
 * bounded (a few chunks queued, one transaction in flight). Offsets are
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

/** How long the broker holds a fetch while it has nothing for it. */
const FETCH_MAX_WAIT_MS = 100;

/** The consumer of a connector: fetch sizes from batchMaxRows, group timings from sessionTimeoutMs. */
export function consumerConfig(groupId: string, c: ConnectorConfig): ConsumerConfig {
  return {
    groupId,
    // The broker answers a fetch as soon as it has a record (minBytes 1): batching is the
    // writer's (batching.ts: at once when idle, what queued behind a transaction in flight, or
    // lingerMs). A fetch waited for about a batch (minBytes ~ batchMaxRows × 16) or lingerMs
    // before: most of a row's latency at a low rate. maxWaitTimeInMs only bounds an idle poll.
    // Fetch sizes follow batchMaxRows (compressed bytes, ~64 per trade record): a fetch is
    // held in memory as message objects until written, so it bounds the sink's memory.
    maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
    minBytes: 1,
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
  readonly config: ConnectorConfig;
  private readonly deps: ConnectorDeps;
  readonly source: 'config' | 'api';
  readonly name: string;
  private readonly log;
  private readonly stats: ConnectorStats = { counts: { rows: 0, messages: 0, deadLettered: 0, retries: 0 }, lastError: undefined, lastBatchAt: undefined };
  private consumer: Consumer | undefined;
  /** The consumer's current run (kept after a stop for the status, replaced by the next start). */
  private runner: Runner | undefined;
  private state: ConnectorState = 'STOPPED';
  private wanted: 'RUNNING' | 'PAUSED' = 'RUNNING';
  /** Aborted by stop(): the run's retries end, a start in progress gives up. */
  private abort = new AbortController();
  /** Group joins since the consumer started (the first is routine; later ones are rebalances). */
  private joins = 0;
  /** The consumer's last failure to talk to Kafka (it restarts itself), cleared by the next fetch or join. */
  private kafkaError: { message: string; at: Date } | undefined;
  private joined = false;
  private partitionsInFlight: Promise<PartitionStatus[]> | undefined;
  private starting: Promise<void> | undefined;
  /** The consumer stop() disconnected (a start it interrupted must not disconnect it twice). */
  private stoppedConsumer: Consumer | undefined;
  private startFailing = false;

  constructor(config: ConnectorConfig, deps: ConnectorDeps, source: 'config' | 'api') {
    this.config = config;
    this.deps = deps;
    this.source = source;
    this.name = config.name;
    this.log = logger('sink').child({ connector: config.name });
  }

  get groupId(): string {
    return `${this.deps.clientId}-sink-${this.name}`;
  }

  get currentState(): ConnectorState {
    return this.state;
  }

  private get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  /** Starts consuming (or stays PAUSED when asked); a failure to start leaves the connector FAILED. */
  start(paused = false): Promise<void> {
    if (this.state === 'RUNNING' || this.state === 'PAUSED') return Promise.resolve();
    this.starting ??= this.doStart(paused).finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async doStart(paused: boolean): Promise<void> {
    this.wanted = paused ? 'PAUSED' : 'RUNNING';
    this.abort = new AbortController();
    this.runner = undefined;
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
      const runner = new Runner(this.runHost(), consumer, abort.signal);
      this.runner = runner;
      this.joined = false;
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        this.joined = true;
        this.kafkaError = undefined;
        runner.onGroupJoin(e.payload.memberAssignment, ++this.joins > 1);
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
      runner.startWriter();
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: (p) => runner.eachBatch(p),
      });
      stopped();
      if (this.wanted === 'PAUSED') consumer.pause(c.topics.map((topic) => ({ topic })));
      runner.startCommitting();
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
    this.abort.abort(new TickflowError('INTERNAL', 'connector stopping'));
    const runner = this.runner;
    await runner?.finish();
    const consumer = this.consumer;
    this.consumer = undefined;
    runner?.detach();
    this.stoppedConsumer = consumer;
    // Disconnecting also ends a join still in progress (a start being stopped).
    if (consumer) await consumer.disconnect().catch((e) => this.log.warn({ err: messageOf(e) }, 'consumer disconnect failed'));
    if (this.starting && !this.startFailing) await this.starting.catch(() => undefined);
    runner?.assigned.clear();
    if (this.state !== 'FAILED') this.setState('STOPPED');
  }

  async restart(): Promise<void> {
    await this.stop();
    this.stats.lastError = undefined;
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
    if (!this.runner?.held()) this.consumer?.resume(this.config.topics.map((topic) => ({ topic })));
    this.setState('RUNNING');
  }

  status(): ConnectorStatus {
    const { counts, lastError, lastBatchAt } = this.stats;
    return {
      name: this.name,
      state: this.state,
      table: this.config.table,
      topics: this.config.topics,
      rowsWritten: counts.rows,
      messagesProcessed: counts.messages,
      deadLettered: counts.deadLettered,
      retries: counts.retries,
      lastError: lastError?.message ?? null,
      lastErrorAt: lastError?.at.toISOString() ?? null,
      lastBatchAt: lastBatchAt?.toISOString() ?? null,
      problem: this.problem(),
    };
  }

  /** What keeps the connector from writing now, or null. */
  problem(): string | null {
    if (this.state === 'FAILED') return this.stats.lastError?.message ?? 'failed';
    const outage = this.runner?.outage();
    if (outage) return outage;
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
    this.partitionsInFlight ??= partitionStatus(this.deps.pool, this.deps.admin, this.name, this.config.topics, this.runner?.assigned ?? new Map()).finally(() => (this.partitionsInFlight = undefined));
    return this.partitionsInFlight;
  }

  /** What a run of the consumer shares with the connector. */
  private runHost(): RunHost {
    return {
      name: this.name,
      config: this.config,
      deps: this.deps,
      stats: this.stats,
      log: this.log,
      wantsRunning: () => this.wanted === 'RUNNING',
      fail: (e) => this.fail(e),
    };
  }

  /** Fails the connector: status FAILED with the reason, consuming stopped until a restart. */
  private async fail(e: unknown): Promise<void> {
    const message = messageOf(e);
    this.stats.lastError = { message, at: new Date() };
    this.setState('FAILED', message);
    if (!this.stopping) await this.stop().catch(() => undefined);
  }

  private setState(state: ConnectorState, reason?: string): void {
    if (this.state === state) return;
    this.state = state;
    this.deps.events.emit('state', { connector: this.name, state, ...(reason ? { reason } : {}) });
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
}
