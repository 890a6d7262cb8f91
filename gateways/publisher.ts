/**
 * The way to Kafka: records are encoded (Avro) as they are handed over, held per exchange entry
 * in a bounded in-memory outbox, and sent by one loop in batches (GZIP, idempotent producer, keyed
 * `exchange:symbol`). Batching is Nagle-like: an idle loop sends a record at once; what arrives
 * while a request is in flight goes in the next one (up to batchMaxRecords), so batches grow with
 * the rate by themselves and a trickle is not held back (an optional linger waits for company).
 *
 * One batch is in flight at a time: kafkajs serializes idempotent requests per broker anyway,
 * and a single in-flight batch keeps each key's order across retries. While Kafka is down the
 * in-flight batch is retried (by kafkajs, then by this loop after a reconnect) and the outboxes
 * fill; past an entry's `maxBufferedRecords` the oldest records are dropped and the loss is
 * published as a `gap` record (channel `kafka`: symbol, time range, counts) as soon as Kafka
 * takes records again. Gap and instrument records are never dropped.
 */
import type { AvroCodec } from '../core/avro.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { CompressionTypes, createKafka, createProducer, ensureTopics, recordKey, type KafkaSettings, type Producer } from '../core/kafka.ts';
import { backoffDelay, RETRY } from '../core/retry.ts';
import { msToUs, nowUs } from '../core/time.ts';
import { RECORD_KINDS, topicFor, type RecordKind } from '../schemas/catalog.ts';
import type { GatewayEvents, QueuedRecord } from './events.ts';
import { gapRecord } from './gaps.ts';
import { Outbox, type OutboxRecord } from './outbox.ts';

export interface TopicBatch {
  readonly topic: string;
  readonly messages: { key: string; value: Buffer }[];
}

/** What the publisher needs from Kafka (the real one is kafkaTransport; tests pass fakes). */
export interface Transport {
  connect(): Promise<void>;
  send(batch: readonly TopicBatch[]): Promise<void>;
  disconnect(): Promise<void>;
  readonly brokers: readonly string[];
}

/** kafkajs through core/kafka.ts: topics created when missing, idempotent GZIP producer. */
export function kafkaTransport(settings: KafkaSettings, codec: AvroCodec): Transport {
  // kafkajs's own retries are kept short (the client's count also bounds the idempotent
  // producer's): the publisher's loop backs off, reconnects and resends the same batch.
  let kafka: ReturnType<typeof createKafka> | undefined;
  let producer: Producer | undefined;
  let topicsReady = false;
  let connected = false;
  return {
    brokers: settings.brokers,
    async connect() {
      kafka ??= createKafka(settings, 2);
      if (!topicsReady) {
        await ensureTopics(kafka, settings);
        await codec.prepare();
        topicsReady = true;
      }
      producer ??= createProducer(kafka);
      await producer.connect();
      connected = true;
    },
    async send(batch) {
      if (!producer || !connected) throw new TickflowError('KAFKA_UNREACHABLE', 'producer not connected', { retriable: true });
      await producer.sendBatch({ compression: CompressionTypes.GZIP, acks: -1, topicMessages: batch as TopicBatch[] });
    },
    async disconnect() {
      connected = false;
      await producer?.disconnect().catch(() => undefined);
    },
  };
}

export interface PublisherOptions {
  readonly topicPrefix: string;
  readonly codec: AvroCodec;
  readonly transport: Transport;
  readonly events: GatewayEvents;
  /** How long the first record of an idle period waits for company (default 0: sent at once). */
  readonly lingerMs?: number;
  /** Records per Kafka request at most (default 2,000). */
  readonly batchMaxRecords?: number;
  /** Backoff between failed connects/sends (ms): first delay and cap. */
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly now?: () => number;
}

export class Publisher {
  private readonly o: PublisherOptions;
  private readonly outboxes: Outbox[] = [];
  private readonly topics: Readonly<Record<RecordKind, string>>;
  private readonly keys = new Map<string, string>();
  private readonly lingerMs: number;
  private readonly batchMaxRecords: number;
  private dataWaiter: (() => void) | undefined;
  private stopWaiter: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private stopping = false;
  private deadline = Infinity;
  private connected = false;
  private pending: QueuedRecord[] | undefined;
  /** Records of each outbox in the pending batch (taken, not yet acknowledged). */
  private readonly inFlight = new Map<Outbox, number>();
  private sizeTimer: NodeJS.Timeout | undefined;
  private rotation = 0;
  readonly events: GatewayEvents;
  /** Records acknowledged by Kafka since start. */
  acked = 0;

  constructor(o: PublisherOptions) {
    this.o = o;
    this.events = o.events;
    // 0: records that came while a request was in flight make the next batch (Nagle); a linger
    // of 5 ms held every trade 5 ms at any rate (bench:latency) for fewer, larger requests.
    this.lingerMs = o.lingerMs ?? 0;
    // kafkajs groups a batch per partition by copying arrays (quadratic in the batch): a few
    // thousand records per request keeps that small and the single in-flight request busy.
    this.batchMaxRecords = o.batchMaxRecords ?? 2_000;
    this.topics = Object.fromEntries(RECORD_KINDS.map((k) => [k, topicFor(o.topicPrefix, k)])) as Record<RecordKind, string>;
  }

  outbox(exchange: string, maxRecords: number): Outbox {
    const box = new Outbox(exchange, maxRecords, { encode: (kind, record) => this.encode(kind, record), added: () => this.wake(), events: this.events });
    this.outboxes.push(box);
    return box;
  }

  encode<K extends RecordKind>(kind: K, record: OutboxRecord<K>): QueuedRecord {
    const ks = `${record.exchange}\u0000${record.symbol}`;
    let key = this.keys.get(ks);
    if (key === undefined) {
      key = recordKey(record);
      this.keys.set(ks, key);
    }
    return {
      kind,
      topic: this.topics[kind],
      key,
      value: this.o.codec.encode(kind, record),
      exchange: record.exchange,
      symbol: record.symbol,
      ts: record.ts,
      receivedAtUs: record.received_at,
    };
  }

  get buffered(): number {
    return this.outboxes.reduce((n, b) => n + b.size, 0) + (this.pending?.length ?? 0);
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** New data: ends an idle wait (not a backoff after a failure). */
  wake(): void {
    const w = this.dataWaiter;
    if (w) {
      this.dataWaiter = undefined;
      w();
    }
  }

  /** Waits `ms`; data cuts it short when `onData`, closing always does. */
  private sleep(ms: number, onData: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        if (this.dataWaiter === done) this.dataWaiter = undefined;
        if (this.stopWaiter === done) this.stopWaiter = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      if (onData) this.dataWaiter = done;
      this.stopWaiter = done;
    });
  }

  private hasData(): boolean {
    return this.outboxes.some((b) => b.size > 0 || b.pendingLoss);
  }

  private takeBatch(): QueuedRecord[] {
    const atUs = msToUs((this.o.now ?? Date.now)());
    const out: QueuedRecord[] = [];
    const n = this.outboxes.length;
    this.inFlight.clear();
    for (let i = 0; i < n && out.length < this.batchMaxRecords; i++) {
      const box = this.outboxes[(this.rotation + i) % n]!;
      const share = i === n - 1 ? this.batchMaxRecords - out.length : Math.max(1, Math.ceil((this.batchMaxRecords - out.length) / (n - i)));
      const taken = box.take(share, atUs);
      for (const r of taken) out.push(r);
      if (taken.length > 0) this.inFlight.set(box, taken.length);
    }
    this.rotation++;
    return out;
  }

  /**
   * `buffer.size` per outbox: what it holds plus its records in the unacknowledged batch. Sent
   * every second whatever the loop is doing (it may be waiting on a dead broker for a long
   * time), and after every batch taken.
   */
  private reportSizes(): void {
    for (const b of this.outboxes) this.events.emit('buffer.size', { exchange: b.exchange, size: b.size + (this.inFlight.get(b) ?? 0), dropped: b.dropped });
  }

  start(): void {
    if (!this.running) {
      this.sizeTimer = setInterval(() => this.reportSizes(), 1_000);
      this.sizeTimer.unref();
    }
    this.running ??= this.loop();
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    for (;;) {
      const draining = this.stopping;
      if (draining && (Date.now() >= this.deadline || (!this.pending && !this.hasData()))) return;
      if (!this.connected) {
        try {
          await this.o.transport.connect();
          this.connected = true;
          attempt = 0;
          this.events.emit('kafka.connected', { brokers: this.o.transport.brokers });
        } catch (e) {
          attempt++;
          const delayMs = backoffDelay(attempt, this.o.retryInitialMs ?? RETRY.kafkaProduce.initialDelayMs, this.o.retryMaxMs ?? RETRY.kafkaProduce.maxDelayMs);
          this.events.emit('kafka.error', { reason: messageOf(e), attempt, delayMs });
          await this.o.transport.disconnect().catch(() => undefined);
          await this.sleep(draining ? Math.min(delayMs, Math.max(0, this.deadline - Date.now())) : delayMs, false);
          continue;
        }
      }
      if (!this.pending) {
        if (!this.hasData()) {
          if (draining) return;
          await this.sleep(1_000, true);
          continue;
        }
        // Linger: let a trickle become a batch, unless a full batch is already waiting.
        if (!draining && this.buffered < this.batchMaxRecords && this.lingerMs > 0) await this.sleep(this.lingerMs, false);
        this.pending = this.takeBatch();
        this.reportSizes();
        if (this.pending.length === 0) {
          this.pending = undefined;
          continue;
        }
      }
      const batch = this.pending;
      try {
        await this.o.transport.send(group(batch));
        this.pending = undefined;
        this.inFlight.clear();
        this.acked += batch.length;
        attempt = 0;
        this.events.emit('produce.ack', { records: batch, ackedAtUs: nowUs() });
      } catch (e) {
        attempt++;
        const retriable = !rejectedByKafka(e);
        const delayMs = backoffDelay(attempt, this.o.retryInitialMs ?? RETRY.kafkaProduce.initialDelayMs, this.o.retryMaxMs ?? RETRY.kafkaProduce.maxDelayMs);
        this.events.emit('kafka.error', { reason: `send of ${batch.length} records failed: ${messageOf(e)}`, attempt, delayMs });
        if (!retriable) {
          // Kafka refused the records themselves (too large, invalid): they cannot be delivered
          // by retrying, so they are reported like an overflow and the rest goes on.
          this.pending = undefined;
          this.inFlight.clear();
          this.reportRejected(batch, messageOf(e));
        } else {
          this.connected = false;
          await this.o.transport.disconnect().catch(() => undefined);
        }
        await this.sleep(draining ? Math.min(delayMs, Math.max(0, this.deadline - Date.now())) : delayMs, false);
      }
    }
  }

  private reportRejected(batch: readonly QueuedRecord[], why: string): void {
    const bySymbol = new Map<string, QueuedRecord[]>();
    for (const r of batch) {
      if (r.kind === 'gap') continue;
      const k = `${r.exchange}\u0000${r.symbol}`;
      let list = bySymbol.get(k);
      if (!list) bySymbol.set(k, (list = []));
      list.push(r);
    }
    const now = nowUs();
    for (const list of bySymbol.values()) {
      const first = list[0]!;
      const box = this.outboxes.find((b) => b.exchange === first.exchange);
      const range = { fromUs: Math.min(...list.map((r) => r.ts)), toUs: Math.max(...list.map((r) => r.ts)) };
      box?.add('gap', gapRecord({ exchange: first.exchange, symbol: first.symbol, channel: 'kafka', ...range, reason: `kafka rejected ${list.length} records: ${why}` }, now));
    }
  }

  /**
   * Sends what is buffered (until `timeoutMs`), then disconnects. Returns how many records were
   * not delivered (Kafka down past the deadline); the caller logs them, nothing else can be done.
   */
  async close(timeoutMs = 10_000): Promise<number> {
    this.stopping = true;
    this.deadline = Date.now() + timeoutMs;
    this.stopWaiter?.();
    if (this.running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.running, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs + 50)))]);
      clearTimeout(timer);
    }
    clearInterval(this.sizeTimer);
    this.reportSizes();
    const undelivered = this.buffered;
    await this.o.transport.disconnect().catch(() => undefined);
    return undelivered;
  }
}

/** Kafka refused the records themselves: retrying the same batch cannot succeed. */
const REJECTED_TYPES = new Set(['MESSAGE_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'RECORD_LIST_TOO_LARGE']);

function rejectedByKafka(e: unknown): boolean {
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) {
    const type = (c as { type?: unknown }).type;
    if (typeof type === 'string' && REJECTED_TYPES.has(type)) return true;
  }
  return false;
}

/** Records → one message list per topic, order kept. */
export function group(records: readonly QueuedRecord[]): TopicBatch[] {
  const by = new Map<string, TopicBatch>();
  for (const r of records) {
    let b = by.get(r.topic);
    if (!b) by.set(r.topic, (b = { topic: r.topic, messages: [] }));
    b.messages.push({ key: r.key, value: r.value });
  }
  return [...by.values()];
}
