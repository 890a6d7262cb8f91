/**
 * The broadcast runtime: records from Kafka, matched against the registrations stored in the
 * database, pushed to their broadcasters (HTTP endpoints, Kafka topics). `buildBroadcast(config)`
 * returns the part; `start()` opens the database (unless given one), connects to Kafka, loads the
 * registrations and broadcasters and keeps them current (polling `registryVersion` every
 * `broadcast.reloadMs`), and runs one consumer group (`broadcast.groupId`) over the topics of the
 * record kinds they name; `stop()` undoes it in reverse.
 *
 * The parts, each testable alone: runner.ts (one run of the consumer: seeks, match, deliver,
 * commit), positions.ts (the at-least-once rule and its SQL), http.ts and kafka.ts (the two
 * broadcasters), delivery.ts (event ids, bodies, the dead-letter topic), telemetry.ts (metrics
 * and logs from events.ts).
 */
import { createCodec, type AvroCodec } from '../core/avro.ts';
import type { Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { translatePgError } from '../core/pg-errors.ts';
import { createConsumer, createKafka, createProducer, ensureNamedTopics, ensureTopics, type Admin, type Consumer, type Kafka, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { serveMetrics } from '../core/metrics-server.ts';
import type { HealthAnswer } from '../core/ops.ts';
import { RETRY, retry } from '../core/retry.ts';
import { openDatabase } from '../infra/database.ts';
import { migrate } from '../migrations/runner.ts';
import { RECORD_KINDS, topicFor, type RecordKind } from '../schemas/catalog.ts';
import { deadLetterTopicOf, type ConfigForBroadcast } from './config.ts';
import { DeadLetters, type Broadcaster } from './delivery.ts';
import { BroadcastEmitter } from './events.ts';
import { HttpBroadcaster } from './http.ts';
import { KafkaBroadcaster } from './kafka.ts';
import { Matcher, type HttpConfig, type KafkaConfig } from './model.ts';
import { changeStamp, listBroadcasters, listRegistrations, syncConfigEntries, type BroadcasterRecord } from './store.ts';
import { BroadcastRunner, type Snapshot } from './runner.ts';
import { attachTelemetry } from './telemetry.ts';

export type { ConfigForBroadcast } from './config.ts';

export interface BroadcastDeps {
  /** Use this database instead of opening config.database (not closed by stop()); `tickflow start` shares its pool. */
  readonly pool?: Pool;
  /** Brokers to use instead of config.kafka.brokers. */
  readonly brokers?: readonly string[];
  /** Finds the brokers during start() (what `tickflow broadcast` passes instead of `brokers`). */
  readonly resolveBrokers?: () => Promise<readonly string[]>;
  /** Serve /healthz and /metrics on broadcast.metricsHost:metricsPort (default true; `tickflow start` serves them on the API). */
  readonly listen?: boolean;
}

export interface BroadcastPart {
  readonly events: BroadcastEmitter;
  /** http://host:port of /healthz and /metrics once listening. */
  readonly url: string | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Reloads registrations and broadcasters now if they changed (what the poll does every reloadMs). */
  reload(): Promise<void>;
  health(): Promise<HealthAnswer>;
}

const KINDS = new Set<string>(RECORD_KINDS);

/** A database failure named as one: logs and /healthz read `the database (<what>): <error>`, not only an errno. */
function fromDatabase<T>(what: string, p: Promise<T>): Promise<T> {
  return p.catch((e: unknown) => {
    throw new TickflowError('DATABASE_UNREACHABLE', `the database (${what}): ${messageOf(e)}`, { retriable: translatePgError(e).retriable, cause: e });
  });
}
const PARTITIONS_CONCURRENTLY = 4;

interface Running {
  readonly consumer: Consumer;
  readonly runner: BroadcastRunner;
  readonly abort: AbortController;
  readonly topics: readonly string[];
}

export function buildBroadcast(config: ConfigForBroadcast, deps: BroadcastDeps = {}): BroadcastPart {
  const log = logger('broadcast');
  const events = new BroadcastEmitter();
  attachTelemetry(events);
  const bc = config.broadcast;
  const prefix = config.kafka.topicPrefix;
  const kindOfTopic = new Map<string, RecordKind>(RECORD_KINDS.map((k) => [topicFor(prefix, k), k]));
  const stopping = new AbortController();
  const closers: Array<() => Promise<void>> = [];
  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  let url: string | undefined;
  let pool: Pool | undefined;
  let kafka: Kafka | undefined;
  let producer: Producer | undefined;
  let admin: Admin | undefined;
  let codec: AvroCodec | undefined;
  let deadLetters: DeadLetters | undefined;
  let version: string | undefined;
  let lastReloadError: string | undefined;
  let consumerError: string | undefined;
  let running: Running | undefined;
  let reloading: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  const broadcasters = new Map<string, Broadcaster>();
  let snapshot: Snapshot = { matcher: new Matcher([]), active: new Map(), names: [], startOf: new Map() };

  const health = async (): Promise<HealthAnswer> => {
    const checks: Record<string, { ok: boolean; error?: string; state?: string }> = {
      registrations: lastReloadError ? { ok: false, error: lastReloadError } : { ok: true, state: `${snapshot.names.length} loaded` },
      consumer: consumerError ? { ok: false, error: consumerError } : { ok: true, state: running ? `consuming ${running.topics.join(', ')}` : 'idle (no registrations)' },
    };
    const status = phase !== 'running' ? phase : lastReloadError || consumerError ? 'degraded' : 'ok';
    return { code: status === 'ok' ? 200 : 503, body: { status, checks } };
  };

  const makeBroadcaster = (b: BroadcasterRecord): Broadcaster =>
    b.kind === 'kafka' ? new KafkaBroadcaster(b.name, b.config as KafkaConfig, producer!, codec!, events) : new HttpBroadcaster(b.name, b.config as HttpConfig, events, bc.httpConcurrency);

  async function startConsumer(topics: readonly string[]): Promise<void> {
    const abort = new AbortController();
    const consumer = createConsumer(kafka!, {
      groupId: bc.groupId,
      maxWaitTimeInMs: 100,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 10_000,
      maxBytesPerPartition: 1 << 20,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    const runner = new BroadcastRunner(
      { pool: pool!, admin: admin!, groupId: bc.groupId, events, codec: codec!, deadLetters: deadLetters!, kindOfTopic, batchMaxRecords: bc.batchMaxRecords, snapshot: () => snapshot },
      consumer,
      abort.signal,
    );
    let joins = 0;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      consumerError = undefined;
      runner.onGroupJoin(e.payload.memberAssignment, ++joins > 1);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (abort.signal.aborted) return;
      consumerError = `Kafka (the consumer of group ${bc.groupId}): ${messageOf(e.payload.error)}`;
      events.emit('problem', { stage: 'consumer', error: consumerError });
      // kafkajs restarts itself after a retriable crash; otherwise start a new consumer.
      if (!e.payload.restart) void restartConsumer(topics);
    });
    running = { consumer, runner, abort, topics };
    await consumer.connect();
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    // Partitions are delivered concurrently (each in offset order): an instrument lives in one
    // partition, so its predicate state and its deliveries' order are one partition's.
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: PARTITIONS_CONCURRENTLY, eachBatch: (p) => runner.eachBatch(p) });
    log.debug({ topics, groupId: bc.groupId }, 'broadcast consumer running');
  }

  /** A topic change: the chunk in flight finishes and commits (disconnect waits for it), then the new consumer starts. */
  async function stopConsumer(graceful: boolean): Promise<void> {
    const r = running;
    running = undefined;
    if (!r) return;
    if (!graceful) r.abort.abort(new TickflowError('INTERNAL', 'the broadcast runtime is stopping'));
    await r.consumer.disconnect().catch((e) => log.warn({ err: messageOf(e) }, 'disconnecting the consumer failed'));
    r.abort.abort(new TickflowError('INTERNAL', 'consumer replaced'));
    await r.runner.finish();
  }

  let restarting: Promise<void> = Promise.resolve();
  function restartConsumer(topics: readonly string[]): Promise<void> {
    restarting = restarting.then(async () => {
      if (stopping.signal.aborted) return;
      await stopConsumer(true);
      if (topics.length === 0 || stopping.signal.aborted) return;
      await retry(() => startConsumer(topics), {
        ...RETRY.sinkDependencies,
        signal: stopping.signal,
        onRetry: (e) => {
          consumerError = `Kafka (starting the consumer of group ${bc.groupId}): ${messageOf(e)}`;
          events.emit('problem', { stage: 'consumer', error: consumerError });
        },
      });
    });
    return restarting.catch((e) => {
      if (!stopping.signal.aborted) log.error({ err: messageOf(e) }, 'starting the broadcast consumer failed');
    });
  }

  async function doReload(force = false): Promise<void> {
    const v = await fromDatabase('reading the registrations', changeStamp(pool!));
    if (!force && v === version) return;
    // One after the other: the embedded database serves one connection.
    const brows = await fromDatabase('reading the broadcasters', listBroadcasters(pool!));
    const rrows = await fromDatabase('reading the registrations', listRegistrations(pool!));
    // Broadcasters: kept across reloads unless their config changed.
    const byName = new Map(brows.map((b) => [b.name, b]));
    for (const [name, b] of broadcasters) {
      const row = byName.get(name);
      if (!row || JSON.stringify(row.config) !== b.configKey || row.kind !== b.kind) {
        broadcasters.delete(name);
        await b.close().catch(() => undefined);
      }
    }
    const newTopics: string[] = [];
    for (const row of brows) {
      if (broadcasters.has(row.name)) continue;
      broadcasters.set(row.name, makeBroadcaster(row));
      if (row.kind === 'kafka') newTopics.push((row.config as KafkaConfig).topic);
    }
    // A user's topic is created when missing (the cluster's partition count and retention).
    if (newTopics.length > 0) await ensureNamedTopics(kafka!, newTopics, config.kafka);
    // The Matcher compiles the active registrations (neither they nor their broadcaster paused).
    const matcher = new Matcher(rrows);
    const skipped = matcher.rejected.map((r) => ({ name: r.name, reason: messageOf(r.error) }));
    const rejected = new Set(skipped.map((r) => r.name));
    const valid = rrows.filter((r) => !rejected.has(r.name) && KINDS.has(r.kind));
    for (const r of rrows) if (!rejected.has(r.name) && !KINDS.has(r.kind)) skipped.push({ name: r.name, reason: `kind "${r.kind}" is not a record kind` });
    const active = new Map(matcher.registrations.map((c) => [c.name, { broadcaster: broadcasters.get(c.broadcaster)! }]));
    const startOf = new Map<string, number>();
    for (const r of valid) {
      const t = topicFor(prefix, r.kind as RecordKind);
      startOf.set(t, Math.min(startOf.get(t) ?? Number.POSITIVE_INFINITY, Date.parse(r.createdAt)));
    }
    snapshot = { matcher, active, names: valid.map((r) => r.name), startOf };
    version = v;
    // Paused registrations keep their topic consumed: pausing skips records, it does not queue them.
    const kinds = [...new Set(valid.map((r) => r.kind as RecordKind))];
    const topics = kinds.map((k) => topicFor(prefix, k)).sort();
    events.emit('reload', { registrations: valid.length, broadcasters: brows.length, topics, skipped });
    if (topics.join(',') !== (running?.topics ?? []).join(',')) {
      // The record topics are created when missing, as the gateway and the sink do.
      await ensureTopics(kafka!, config.kafka, kinds);
      await restartConsumer(topics);
    }
  }

  const reload = async (): Promise<void> => {
    reloading ??= doReload()
      .then(() => (lastReloadError = undefined))
      .catch((e) => {
        lastReloadError = messageOf(e);
        events.emit('problem', { stage: 'reload', error: lastReloadError });
      })
      .finally(() => (reloading = undefined));
    return reloading;
  };

  const stop = async () => {
    if (phase === 'stopping') return;
    phase = 'stopping';
    stopping.abort(new TickflowError('INTERNAL', 'the broadcast runtime is stopping'));
    clearInterval(pollTimer);
    await reloading?.catch(() => undefined);
    await restarting.catch(() => undefined);
    await stopConsumer(false);
    for (const b of broadcasters.values()) await b.close().catch(() => undefined);
    for (const c of closers.splice(0).reverse()) await c().catch((e) => log.warn({ err: messageOf(e) }, 'broadcast stop step failed'));
  };

  const waitFor = <T>(what: string, fn: () => Promise<T>) =>
    retry(fn, { ...RETRY.sinkDependencies, signal: stopping.signal, onRetry: (e, attempt) => attempt <= 3 && log.warn({ err: messageOf(e) }, `waiting for ${what}`) });

  return {
    events,
    get url() {
      return url;
    },
    reload,
    health,
    stop,
    async start() {
      try {
        if (deps.listen !== false) {
          const ops = await serveMetrics(bc.metricsHost, bc.metricsPort, { health });
          url = ops.url;
          closers.push(ops.close);
        }
        if (deps.pool) pool = deps.pool;
        else {
          const db = await waitFor('the database', () => openDatabase(config, { applicationName: 'tickflow-broadcast' }));
          closers.push(() => db.close());
          pool = db.pool;
          await waitFor('the database', () => migrate(db.pool));
        }
        const resolve = deps.resolveBrokers;
        const brokers = deps.brokers ?? (resolve ? await waitFor('Kafka', () => resolve()) : config.kafka.brokers);
        kafka = createKafka({ ...config.kafka, brokers });
        producer = createProducer(kafka);
        await waitFor('Kafka', () => producer!.connect());
        closers.push(() => producer!.disconnect());
        admin = kafka.admin();
        await waitFor('Kafka', () => admin!.connect());
        closers.push(() => admin!.disconnect());
        const dlq = deadLetterTopicOf(config);
        await waitFor('Kafka', () => ensureNamedTopics(kafka!, [dlq], config.kafka));
        deadLetters = new DeadLetters(producer, dlq);
        codec = createCodec(config.kafka);
        await codec.prepareWaiting({ log, signal: stopping.signal, who: 'the broadcast runtime' });
        // The config file's entries (source config) into the database, then everything is loaded from there.
        const synced = await waitFor('the database', () => syncConfigEntries(pool!, { broadcasters: bc.broadcasters, registrations: bc.registrations }));
        if (synced.written.length || synced.removed.length) log.info(synced, 'config entries synced');
        for (const name of synced.kept) log.warn({ broadcaster: name }, 'a broadcaster removed from the config file is kept: registrations made over the API use it');
        await waitFor('the registrations', () => doReload(true));
        pollTimer = setInterval(() => void reload(), bc.reloadMs);
        phase = 'running';
        log.info({ groupId: bc.groupId, registrations: snapshot.names.length, topics: running?.topics ?? [] }, 'broadcast runtime started');
      } catch (e) {
        await stop();
        throw e;
      }
    },
  };
}

