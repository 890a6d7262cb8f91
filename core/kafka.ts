/**
 * The one module that knows kafkajs. kafkajs is unmaintained since 2023 and speaks the Kafka 3.x
 * protocol; keeping it behind this small surface lets it be swapped without touching the parts.
 */
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { gzipSync, unzip } from 'node:zlib';
import type { CompressionCodecs as KafkaCompressionCodecs } from 'kafkajs';
import {
  AssignerProtocol,
  Kafka,
  logLevel as LogLevel,
  CompressionTypes,
  Partitioners,
  type Admin,
  type Batch,
  type Consumer,
  type ConsumerConfig,
  type EachBatchPayload,
  type IHeaders,
  type KafkaMessage,
  type Message,
  type Producer,
  type ITopicConfig,
  type LogEntry,
} from 'kafkajs';
import { CATALOG, RECORD_KINDS, topicFor, type RecordKind } from '../schemas/catalog.ts';
import { TickflowError, messageOf } from './errors.ts';
import { logger } from './log.ts';
import { RETRY, retry, sleep } from './retry.ts';

export type { Admin, Batch, Consumer, ConsumerConfig, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Message, Producer };
export { CompressionTypes };

// kafkajs 2.2.4 re-arms its request-queue check with a negative delay whenever nothing is
// throttled (network/requestQueue/index.js, scheduleCheckPendingRequests: `throttledUntil -
// Date.now()` with throttledUntil 0). Node clamps it to 1 ms as it always has; since Node 24 it
// also prints a TimeoutNegativeWarning on stderr, into every command's console. Drop exactly
// that warning when kafkajs's request queue raised it; every other warning is printed as before.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  if (type === 'TimeoutNegativeWarning' && new Error().stack?.includes('requestQueue')) return;
  emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

// kafkajs compresses a produce request's record batches one partition after another, each on
// zlib's thread pool: every partition of a request waited for its own event-loop turn. A gateway
// whose loop turns were long (1,000 instruments, 16 websockets: 50-1,300 ms a turn) took 2.5-5 s
// per 2,000-record request over 12 partitions, while the request itself took 30-230 ms, so Kafka
// acknowledged a few hundred records a second and the outbox dropped the rest. Compressed
// synchronously (the same gzip, ~1 ms for a partition's 40 kB here) a request costs one turn:
// its answer. Decompression (consumers) is kafkajs's own, unchanged.
// (CompressionCodecs is not among the names Node finds in kafkajs's CommonJS exports.)
const { CompressionCodecs } = createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: typeof KafkaCompressionCodecs };
const unzipAsync = promisify(unzip);
CompressionCodecs[CompressionTypes.GZIP] = () => ({
  compress: async (encoder: { buffer: Buffer }) => gzipSync(encoder.buffer),
  decompress: async (buffer: Buffer) => unzipAsync(buffer),
});

export interface KafkaSettings {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly topicPrefix: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly retentionMs: number;
  readonly connectionTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

const log = logger('kafka');

const toPino = (level: LogLevel) => {
  switch (level) {
    case LogLevel.ERROR: return 'error' as const;
    case LogLevel.WARN: return 'warn' as const;
    case LogLevel.INFO: return 'info' as const;
    default: return 'debug' as const;
  }
};

/**
 * kafkajs logs per socket and per response, and at error level for what is routine in a consumer
 * group's life: it retries those itself, and what it finally cannot do reaches the parts as an
 * error they report (gap records, the retries metric, a connector's status).
 * - per-socket noise (reconnects, refused connections, the idempotent producer's warning about
 *   limited retries, which the gateway's own resend and the sink's upserts cover): debug;
 * - a protocol error in a response (`Response Heartbeat(...)`, `Response JoinGroup(...)`):
 *   debug, the caller retries or reports it;
 * - group membership (rebalancing, re-joining, the coordinator loading or moving, a member id
 *   the coordinator does not know after a session expired, a topic's metadata not there yet):
 *   info;
 * - the consumer restarting itself after a retriable crash: warn.
 */
const SOCKET_NOISE = /Limiting retries|Connection error|Closed connection|Connection timeout|ECONNREFUSED|ECONNRESET|coordinator is not available|GroupCoordinator|Failed to connect to broker|Connection closed/;
const ROUTINE_GROUP = /rebalanc|re-?join|coordinator is loading|not the correct coordinator|not aware of this member|member id|generation id is not valid|does not host this topic-partition|There is no leader for this topic-partition|not the leader for that topic-partition|resync group/i;

export function kafkaLogLevel(level: LogLevel, message: string, error = ''): 'error' | 'warn' | 'info' | 'debug' {
  if (level >= LogLevel.INFO) return 'debug';
  const text = `${message} ${error}`;
  if (SOCKET_NOISE.test(text)) return 'debug';
  if (/^Response \w+\(/.test(message)) return 'debug';
  if (ROUTINE_GROUP.test(text)) return 'info';
  if (/^Restarting the consumer in/.test(message)) return 'warn';
  return toPino(level);
}

/** kafkajs logs through our structured logger, at the levels kafkaLogLevel gives. */
function logCreator() {
  return ({ namespace, level, log: entry }: LogEntry) => {
    const { message, ...extra } = entry;
    log[kafkaLogLevel(level, String(message), String((extra as { error?: unknown }).error ?? ''))]({ namespace, ...extra }, message);
  };
}

export function createKafka(s: Pick<KafkaSettings, 'brokers' | 'clientId' | 'connectionTimeoutMs' | 'requestTimeoutMs'>, retries = 8): Kafka {
  if (s.brokers.length === 0) throw new TickflowError('KAFKA_UNREACHABLE', 'no Kafka brokers configured (KAFKA_BROKERS or kafka.brokers)');
  return new Kafka({
    clientId: s.clientId,
    brokers: [...s.brokers],
    connectionTimeout: s.connectionTimeoutMs,
    requestTimeout: s.requestTimeoutMs,
    logLevel: LogLevel.WARN,
    logCreator,
    retry: { retries, initialRetryTime: 200, maxRetryTime: 10_000 },
  });
}

/**
 * One admin connection and DescribeCluster, bounded by timeoutMs; kafkajs logs silenced. kafkajs's
 * own timeouts are set below timeoutMs and it does not retry, so it normally fails by itself; the
 * timer is a safety net. Disconnecting while kafkajs is still connecting can leave a socket
 * behind, so the disconnect runs once the attempt is over, whatever the outcome.
 */
async function describeCluster(brokers: readonly string[], timeoutMs: number): Promise<{ brokers: number }> {
  const clamp = (v: number, lo: number, hi: number) => Math.round(Math.max(lo, Math.min(hi, v)));
  const kafka = new Kafka({
    clientId: 'tickflow-probe',
    brokers: [...brokers],
    connectionTimeout: clamp(timeoutMs / 3, 100, 3_000),
    requestTimeout: clamp(timeoutMs / 2, 200, 5_000),
    authenticationTimeout: clamp(timeoutMs / 2, 200, 5_000),
    enforceRequestTimeout: true,
    retry: { retries: 0 },
    logLevel: LogLevel.NOTHING,
  });
  const admin = kafka.admin({ retry: { retries: 0 } });
  const work = (async () => {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return { brokers: cluster.brokers.length };
  })();
  const cleanup = work.then(
    () => admin.disconnect(),
    () => admin.disconnect(),
  ).catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([work, timeout]);
    await cleanup;
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects to the brokers and asks for the cluster's metadata; rejects with
 * TickflowError('KAFKA_UNREACHABLE') within timeoutMs (plus a moment) if they do not answer.
 */
export async function probeKafka(brokers: readonly string[], timeoutMs = 10_000): Promise<void> {
  const value = brokers.join(',');
  try {
    if (brokers.length === 0) throw new Error('no brokers given');
    await describeCluster(brokers, timeoutMs);
  } catch (e) {
    throw new TickflowError('KAFKA_UNREACHABLE', `KAFKA_BROKERS=${value} is unreachable: ${messageOf(e)}`, {
      retriable: true,
      cause: e,
    });
  }
}

/**
 * Creates the missing topics and returns once the brokers serve every one of them (each partition
 * has a leader in the metadata), retrying with backoff. kafkajs's own wait for leaders fails on a
 * freshly started KRaft broker: its metadata request answers UNKNOWN_TOPIC_OR_PARTITION for a
 * topic the controller just created (19 of 20 tries on a broker started a second before), and
 * the topic is there a moment later. So creation is not trusted for an answer: a topic that
 * exists is left alone (TOPIC_ALREADY_EXISTS from a racing creator included), and what counts is
 * the metadata, read until it is complete. Returns the topics this call found missing.
 */
export async function createTopicsVerified(admin: Admin, topics: readonly ITopicConfig[], opts: { deadlineMs?: number } = {}): Promise<string[]> {
  if (topics.length === 0) return [];
  const names = [...new Set(topics.map((t) => t.topic))];
  let created: string[] | undefined;
  await retry(
    async () => {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((t) => !existing.has(t.topic));
      created ??= missing.map((t) => t.topic);
      if (missing.length > 0) {
        try {
          await admin.createTopics({ topics: [...missing], waitForLeaders: false });
        } catch (e) {
          // Already there (another instance, or an earlier try whose answer was lost): fine; the
          // metadata check below decides. Anything else is retried.
          if (!/already exists/i.test(`${messageOf(e)} ${JSON.stringify((e as { topicErrors?: unknown }).topicErrors ?? '')}`)) throw retriable(e, 'creating topics');
        }
      }
      let meta: Awaited<ReturnType<Admin['fetchTopicMetadata']>>;
      try {
        meta = await admin.fetchTopicMetadata({ topics: names });
      } catch (e) {
        throw retriable(e, 'reading the new topics\' metadata');
      }
      const incomplete = names.filter((name) => {
        const t = meta.topics.find((x) => x.name === name);
        return !t || t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0 || p.partitionErrorCode !== 0);
      });
      if (incomplete.length > 0) throw new TickflowError('KAFKA_UNREACHABLE', `topics not served yet: ${incomplete.join(', ')}`, { retriable: true });
    },
    { ...RETRY.kafkaTopics, deadlineMs: opts.deadlineMs ?? RETRY.kafkaTopics.deadlineMs },
  );
  return created ?? [];
}

function retriable(e: unknown, what: string): TickflowError {
  return new TickflowError('KAFKA_UNREACHABLE', `${what}: ${messageOf(e)}`, { retriable: true, cause: e });
}

/** Creates the per-channel topics when missing (partitions and retention from config). */
export async function ensureTopics(kafka: Kafka, s: Pick<KafkaSettings, 'topicPrefix' | 'partitions' | 'replicationFactor' | 'retentionMs'>, kinds: readonly RecordKind[] = RECORD_KINDS): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await createTopicsVerified(
      admin,
      kinds.map((k) => ({
        topic: topicFor(s.topicPrefix, k),
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor,
        configEntries: CATALOG[k].compacted ? [{ name: 'cleanup.policy', value: 'compact' }] : [{ name: 'retention.ms', value: String(s.retentionMs) }],
      })),
    );
  } finally {
    await admin.disconnect();
  }
}

/** Idempotent, batched, compressed: a send failure is retried by kafkajs, never dropped silently. */
export function createProducer(kafka: Kafka): Producer {
  // The Java client's partitioner (murmur2 of the key), so keys land where other Kafka clients put them.
  return kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
}

export function createConsumer(kafka: Kafka, config: ConsumerConfig): Consumer {
  return kafka.consumer({ allowAutoTopicCreation: false, ...config });
}

/** The key of a record: `exchange:symbol`, so each instrument stays ordered within a partition. */
export function recordKey(r: { exchange: string; symbol: string }): string {
  return `${r.exchange}:${r.symbol}`;
}

/** Creates these topics when missing (e.g. dead-letter topics); returns the ones created. */
export async function ensureNamedTopics(kafka: Kafka, topics: readonly string[], s: Pick<KafkaSettings, 'partitions' | 'replicationFactor' | 'retentionMs'>): Promise<string[]> {
  if (topics.length === 0) return [];
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await createTopicsVerified(
      admin,
      [...new Set(topics)].map((topic) => ({ topic, numPartitions: s.partitions, replicationFactor: s.replicationFactor, configEntries: [{ name: 'retention.ms', value: String(s.retentionMs) }] })),
    );
  } finally {
    await admin.disconnect();
  }
}

/** A header's value as a string (kafkajs gives Buffers, or arrays of them when repeated: the last wins). */
export function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  return one === undefined ? undefined : Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

/** Per partition: the first offset still in the log and the next offset to be written (high watermark). */
export async function partitionOffsets(admin: Admin, topic: string): Promise<Map<number, { low: number; high: number }>> {
  const r = await admin.fetchTopicOffsets(topic);
  return new Map(r.map((p) => [p.partition, { low: Number(p.low), high: Number(p.high) }]));
}

/** The partition the producer's partitioner (murmur2, as Java's) puts `key` in, among `partitions`. */
export function partitionOfKey(key: string, partitions: number): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
  return Partitioners.DefaultPartitioner()({ topic: '', partitionMetadata, message: { key, value: null } });
}

/** Offsets [from, to) of one partition. */
export interface OffsetRange {
  readonly topic: string;
  readonly partition: number;
  readonly from: number;
  readonly to: number;
}

/**
 * Reads offset ranges with a throwaway consumer group (kafkajs has no manual assignment; the
 * group is deleted afterwards), in rounds: once every range of a round is read, `next` may ask
 * for more (e.g. earlier offsets). Each message in a range reaches `onMessage` once per round.
 * Resolves false when `timeoutMs` passed first (what was read stands).
 */
export async function readRanges(
  kafka: Kafka,
  first: readonly OffsetRange[],
  onMessage: (topic: string, partition: number, message: KafkaMessage) => Promise<void>,
  next: () => readonly OffsetRange[],
  opts: { readonly groupId: string; readonly timeoutMs: number },
): Promise<boolean> {
  let ranges = first.filter((r) => r.to > r.from);
  if (ranges.length === 0) return true;
  const topics = [...new Set(ranges.map((r) => r.topic))];
  const consumer = createConsumer(kafka, { groupId: opts.groupId, maxWaitTimeInMs: 100, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
  let open = new Map<string, OffsetRange>();
  let finish!: (done: boolean) => void;
  const finished = new Promise<boolean>((r) => (finish = r));
  /** Partitions not being read (done, or never wanted): paused, so the consumer does not pull their tails. */
  const paused = new Set<string>();
  const startRound = (rs: readonly OffsetRange[]) => {
    open = new Map(rs.map((r) => [`${r.topic}:${r.partition}`, r]));
    if (open.size === 0) return finish(true);
    for (const r of rs) {
      if (paused.delete(`${r.topic}:${r.partition}`)) consumer.resume([{ topic: r.topic, partitions: [r.partition] }]);
      consumer.seek({ topic: r.topic, partition: r.partition, offset: String(r.from) });
    }
  };
  const pause = (topic: string, partition: number) => {
    const k = `${topic}:${partition}`;
    if (paused.has(k)) return;
    paused.add(k);
    consumer.pause([{ topic, partitions: [partition] }]);
  };
  const timer = setTimeout(() => finish(false), opts.timeoutMs);
  try {
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, isStale }) => {
        const r = open.get(`${batch.topic}:${batch.partition}`);
        if (!r) pause(batch.topic, batch.partition);
        if (!r || isStale()) return;
        let end = -1;
        for (const m of batch.messages) {
          const o = Number(m.offset);
          if (o < r.from || o >= r.to) continue;
          await onMessage(batch.topic, batch.partition, m);
          end = o;
        }
        if (Math.max(end, Number(batch.lastOffset())) < r.to - 1 || open.get(`${batch.topic}:${batch.partition}`) !== r) return;
        open.delete(`${batch.topic}:${batch.partition}`);
        pause(batch.topic, batch.partition);
        if (open.size === 0) startRound((ranges = next().filter((x) => x.to > x.from)));
      },
    });
    startRound(ranges);
    return await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => undefined);
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([opts.groupId]))
      .catch(() => undefined)
      .finally(() => admin.disconnect().catch(() => undefined));
  }
}

/** A member of a consumer group as its leader sees it when assigning: its id and what it sent with its join. */
export interface GroupMemberInfo {
  readonly memberId: string;
  readonly userData: Buffer;
}

/** What a member learns when it (re)joins: the partitions of the coordination topic it holds now. */
export interface GroupAssignment {
  readonly memberId: string;
  readonly leader: boolean;
  readonly partitions: readonly number[];
  /** Partitions of the topic (the same for every member). */
  readonly partitionCount: number;
}

export interface GroupMembershipOptions {
  readonly groupId: string;
  /** Subscribed only for its partitions: nothing needs to be produced to it. */
  readonly topic: string;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  /** How long the coordinator waits for every member to rejoin in a rebalance. */
  readonly rebalanceTimeoutMs?: number;
  /** Bytes sent with every join (what the member holds now), handed to the leader's `assign`. */
  userData(): Buffer;
  /** Run by the group's leader: partitions per member id. */
  assign(members: readonly GroupMemberInfo[], partitions: readonly number[]): ReadonlyMap<string, readonly number[]>;
  onAssigned(a: GroupAssignment): void;
  /** The coordinator started a rebalance (this member is about to rejoin). */
  onRebalancing(): void;
  /** A heartbeat the coordinator accepted: the member still counts. */
  onHeartbeat(): void;
  /** The consumer stopped (crashed; kafkajs restarts it when the error is retriable). */
  onCrash(error: unknown, restarting: boolean): void;
}

export interface GroupMembership {
  /** Leaves the group (the others rebalance at once rather than after the session timeout). */
  leave(): Promise<void>;
}

/**
 * Membership in a consumer group as a coordination service: the group's assignment of one
 * topic's partitions is the product, no message is read (the topic stays empty). The leader runs
 * `assign` (a kafkajs partition assigner around it, so the member data it reads is what the
 * members sent); each join tells the member its partitions. kafkajs heartbeats from its fetch
 * loop, so the fetch wait is kept below the heartbeat interval.
 */
export async function joinGroupMembership(kafka: Kafka, o: GroupMembershipOptions): Promise<GroupMembership> {
  const name = 'TickflowSlots';
  const consumer = kafka.consumer({
    groupId: o.groupId,
    sessionTimeout: o.sessionTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    rebalanceTimeout: o.rebalanceTimeoutMs ?? Math.max(10_000, 3 * o.sessionTimeoutMs),
    maxWaitTimeInMs: Math.max(50, Math.min(500, Math.floor(o.heartbeatIntervalMs / 2))),
    allowAutoTopicCreation: false,
    partitionAssigners: [
      ({ cluster }) => ({
        name,
        version: 1,
        async assign({ members, topics }) {
          const partitions = topics.flatMap((t) => cluster.findTopicPartitionMetadata(t).map((m) => m.partitionId)).sort((a, b) => a - b);
          const infos = members.map((m) => ({ memberId: m.memberId, userData: AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.userData ?? Buffer.alloc(0) }));
          const out = o.assign(infos, partitions);
          return members.map((m) => ({
            memberId: m.memberId,
            memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: { [o.topic]: [...(out.get(m.memberId) ?? [])] }, userData: Buffer.alloc(0) }),
          }));
        },
        protocol({ topics }) {
          return { name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: o.userData() }) };
        },
      }),
    ],
  });
  const ev = consumer.events;
  let partitionCount = 0;
  consumer.on(ev.GROUP_JOIN, (e) => {
    o.onAssigned({ memberId: e.payload.memberId, leader: e.payload.isLeader, partitions: [...(e.payload.memberAssignment[o.topic] ?? [])].sort((a, b) => a - b), partitionCount });
  });
  consumer.on(ev.REBALANCING, () => o.onRebalancing());
  consumer.on(ev.HEARTBEAT, () => o.onHeartbeat());
  consumer.on(ev.CRASH, (e) => o.onCrash(e.payload.error, e.payload.restart));
  const admin = kafka.admin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [o.topic] });
    partitionCount = meta.topics[0]?.partitions.length ?? 0;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [o.topic], fromBeginning: false });
    await consumer.run({ autoCommit: false, eachBatch: async () => undefined });
  } catch (e) {
    await consumer.disconnect().catch(() => undefined);
    throw e;
  }
  return {
    async leave() {
      await consumer.disconnect().catch(() => undefined);
    },
  };
}

/**
 * Inside a consumer's eachBatch: wait until `positioned` settles (the seek of this generation),
 * heartbeating every `everyMs` so a long wait does not cost the group membership.
 */
export async function heartbeatUntil(positioned: Promise<unknown>, heartbeat: () => Promise<void>, everyMs: number): Promise<void> {
  for (;;) {
    const done = await Promise.race([positioned.then(() => true, () => true), sleep(everyMs).then(() => false)]);
    if (done) return;
    await heartbeat();
  }
}
