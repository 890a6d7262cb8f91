/**
 * The API process's one Kafka consumer, fanning records out to every websocket subscription.
 *
 * - Its consumer group is unique to the process (nothing is committed, nothing shared) and is
 *   deleted on close. Once joined, it seeks every partition back to the first record of the last
 *   `recentWindowMs` (by Kafka timestamp), so from its first moment the hub holds the recent
 *   past: what the sink may not have written to the database yet.
 * - It keeps those recent records (a window by Kafka timestamp, capped in count) for the seam of
 *   `since` subscriptions (see session.ts), and tracks its position per partition, so a
 *   subscription can tell when the consumer has passed a fence of offsets.
 * - Records are decoded once and delivered to each interested subscription per Kafka batch.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { AvroCodec } from '../../core/avro.ts';
import { messageOf } from '../../core/errors.ts';
import { createConsumer, createKafka, ensureTopics, type Admin, type Consumer, type KafkaSettings } from '../../core/kafka.ts';
import { RETRY, retry, sleep } from '../../core/retry.ts';
import { topicFor } from '../../schemas/index.ts';
import type { ApiEvents } from '../events.ts';
import { metrics } from '../telemetry.ts';
import { CHANNEL_OF_KIND, CHANNEL_SPECS, STREAM_CHANNELS, toStreamRecord, type StreamChannel, type StreamRecord } from './records.ts';

export type HubState = 'starting' | 'live' | 'closed';

export interface HubListener {
  readonly channels: ReadonlySet<StreamChannel>;
  /** Instrument keys, or null for every instrument. */
  readonly instruments: ReadonlySet<string> | null;
  deliver(records: readonly StreamRecord[]): void;
}

export interface HubOptions {
  readonly kafka: Pick<KafkaSettings, 'brokers' | 'clientId' | 'topicPrefix' | 'partitions' | 'replicationFactor' | 'retentionMs' | 'connectionTimeoutMs' | 'requestTimeoutMs'>;
  readonly codec: AvroCodec;
  readonly recentWindowMs: number;
  readonly recentMaxRecords: number;
  readonly events: ApiEvents;
}

/** topic:partition → offset. */
export type Fence = ReadonlyMap<string, number>;

/**
 * A held record, kept small: the window holds up to recentMaxRecords of them, and what a process
 * holds long is what its garbage collector copies and marks. Held as sent (row object, ISO times,
 * key strings) a record took ~1.1 KB of heap; at 5k trades/s the API's young-generation pauses
 * (5-25 ms, about once a second, on a loaded machine) and its mark-compacts (up to 100 ms with a
 * full window) delayed every client's records. A single-object Avro record is now held as its
 * Kafka value (0.2 KB of heap, 0.15 KB of buffer off it) and decoded again only for a `since`
 * subscription's seam; a Confluent-framed one (another producer: its decoding may need the
 * registry, which is async) stays decoded.
 */
interface Held {
  readonly channel: StreamChannel;
  /** Interned: one string per instrument, shared by all its held records. */
  readonly instrument: string;
  /** The Kafka value, a single-object Avro record; else `rec`. */
  readonly value: Buffer | undefined;
  readonly rec: StreamRecord | undefined;
  /** Kafka timestamp, ms. */
  readonly at: number;
}

/**
 * The held window: a ring of at most `capacity` records, oldest first. Its storage grows with
 * what it holds up to `capacity` slots and never past it: a full ring overwrites its oldest.
 */
class HeldWindow {
  private readonly capacity: number;
  private buf: (Held | undefined)[] = [];
  private start = 0;
  size = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get slots(): number {
    return this.buf.length;
  }

  at(i: number): Held {
    return this.buf[(this.start + i) % this.buf.length]!;
  }

  push(h: Held): void {
    if (this.size === this.capacity) {
      this.buf[this.start] = h;
      this.start = (this.start + 1) % this.buf.length;
      return;
    }
    if (this.size === this.buf.length) {
      // Full storage below capacity: lay it out oldest-first, then grow at the end.
      if (this.start !== 0) this.buf = [...this.buf.slice(this.start), ...this.buf.slice(0, this.start)];
      this.start = 0;
      this.buf.push(h);
    } else this.buf[(this.start + this.size) % this.buf.length] = h;
    this.size++;
  }

  shift(): void {
    this.buf[this.start] = undefined;
    this.start = (this.start + 1) % this.buf.length;
    if (--this.size === 0) this.start = 0;
  }
}

export class StreamHub {
  private readonly o: HubOptions;
  state: HubState = 'starting';
  readonly groupId: string;
  /** Resolves once the consumer has caught up with the topics' ends as of its start. */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private readonly topics: string[];
  private readonly channelOfTopic = new Map<string, StreamChannel>();
  private readonly listeners = new Set<HubListener>();
  private readonly recent: HeldWindow;
  private readonly position = new Map<string, number>();
  private readonly instruments = new Map<string, string>();
  private consumer: Consumer | undefined;
  private admin: Admin | undefined;
  private readonly abort = new AbortController();

  constructor(o: HubOptions) {
    this.o = o;
    this.groupId = `${o.kafka.clientId}-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.recent = new HeldWindow(o.recentMaxRecords);
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    for (const channel of STREAM_CHANNELS) {
      const topic = topicFor(o.kafka.topicPrefix, CHANNEL_SPECS[channel].kind);
      this.channelOfTopic.set(topic, channel);
    }
    this.topics = [...this.channelOfTopic.keys()];
  }

  /** Connects in the background, retrying with backoff until it works or the hub closes. */
  startInBackground(): void {
    void retry(() => this.start(), { ...RETRY.kafkaLiveStream, signal: this.abort.signal, onRetry: (err, attempt, delayMs) => this.o.events.emit('hub.waiting', { error: messageOf(err), attempt, delayMs }) }).catch((e) => {
      if (this.state !== 'closed') this.o.events.emit('hub.gaveUp', { error: messageOf(e) });
    });
  }

  async start(): Promise<void> {
    if (this.state === 'closed') return;
    const kafka = createKafka(this.o.kafka, 2);
    await ensureTopics(kafka, this.o.kafka, STREAM_CHANNELS.map((c) => CHANNEL_SPECS[c].kind));
    const admin = kafka.admin();
    await admin.connect();
    try {
      const since = Date.now() - this.o.recentWindowMs;
      const ends = new Map<string, number>();
      const starts: Array<{ topic: string; partition: number; offset: number }> = [];
      for (const topic of this.topics) {
        const bounds = await admin.fetchTopicOffsets(topic);
        const byTime = this.o.recentWindowMs > 0 ? await admin.fetchTopicOffsetsByTimestamp(topic, since) : [];
        for (const b of bounds) {
          const high = Number(b.high);
          const t = Number(byTime.find((x) => x.partition === b.partition)?.offset ?? -1);
          const offset = t >= 0 ? Math.max(Number(b.low), Math.min(t, high)) : high;
          ends.set(`${topic}:${b.partition}`, high);
          this.position.set(`${topic}:${b.partition}`, offset);
          starts.push({ topic, partition: b.partition, offset });
        }
      }
      // Latency: the broker answers a fetch as soon as it has a record (minBytes 1; maxWaitTimeInMs
      // only bounds an idle poll) and each fetched batch is delivered at once; what arrives while
      // a batch is being delivered comes with the next fetch (batching by load, as the sink's
      // writer does). bench:latency measures the websocket a few ms above a plain consumer.
      const consumer = createConsumer(kafka, { groupId: this.groupId, minBytes: 1, maxWaitTimeInMs: 200, sessionTimeout: 30_000, heartbeatInterval: 3_000 });
      await consumer.connect();
      await consumer.subscribe({ topics: this.topics, fromBeginning: false });
      // Batches fetched before the seeks below (from the topics' ends) are dropped unprocessed;
      // kafkajs marks those fetched while a seek is pending as stale.
      let seeking = true;
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch, isStale }) => {
          if (seeking || isStale()) return;
          const tp = `${batch.topic}:${batch.partition}`;
          const channel = this.channelOfTopic.get(batch.topic);
          const pos = this.position.get(tp) ?? 0;
          const fresh: StreamRecord[] = [];
          for (const m of batch.messages) {
            const offset = Number(m.offset);
            if (offset < pos || !channel || !m.value) continue; // redelivered after a rebalance, or a tombstone
            try {
              const d = await this.o.codec.decode(m.value);
              if (CHANNEL_OF_KIND.get(d.kind) !== channel) throw new Error(`a ${d.kind} record in ${batch.topic}`);
              const rec = toStreamRecord(channel, d.value as unknown as Record<string, unknown>);
              fresh.push(rec);
              this.hold(channel, rec, d.framing === 'single-object' ? m.value : undefined, Number(m.timestamp));
            } catch (e) {
              this.o.events.emit('hub.undecodable', { topic: batch.topic, partition: batch.partition, offset, error: messageOf(e) });
            }
          }
          const last = batch.messages[batch.messages.length - 1];
          if (last) this.position.set(tp, Math.max(pos, Number(last.offset) + 1));
          if (channel && fresh.length) {
            metrics.consumed.inc({ channel }, fresh.length);
            this.trim();
            for (const l of this.listeners) {
              if (!l.channels.has(channel)) continue;
              const mine = l.instruments === null ? fresh : fresh.filter((r) => l.instruments!.has(r.instrument));
              if (mine.length) l.deliver(mine);
            }
          }
          if (this.state === 'starting' && this.passed(ends)) this.goLive();
        },
      });
      for (const st of starts) consumer.seek({ topic: st.topic, partition: st.partition, offset: String(st.offset) });
      seeking = false;
      this.consumer = consumer;
      this.admin = admin;
      if ((this.state as HubState) === 'closed') {
        // Closed while connecting: close() found nothing to stop yet.
        this.state = 'starting';
        await this.close();
        return;
      }
      if (this.passed(ends)) this.goLive();
      void this.liveAfter(30_000);
    } catch (e) {
      await admin.disconnect().catch(() => undefined);
      throw e;
    }
  }

  private goLive(): void {
    if (this.state !== 'starting') return;
    this.state = 'live';
    this.o.events.emit('hub.live', { groupId: this.groupId, recent: this.recent.size });
    this.markReady();
  }

  /** A quiet or slow start still goes live after a while: subscriptions should not wait forever. */
  private async liveAfter(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.state === 'starting' && Date.now() < deadline) await sleep(100);
    if (this.state === 'starting') {
      this.o.events.emit('hub.late', { groupId: this.groupId });
      this.goLive();
    }
  }

  /** Adds a record to the held window (the oldest goes when it is full). */
  private hold(channel: StreamChannel, rec: StreamRecord, value: Buffer | undefined, at: number): void {
    let instrument = this.instruments.get(rec.instrument);
    if (instrument === undefined) this.instruments.set(rec.instrument, (instrument = rec.instrument));
    this.recent.push(value ? { channel, instrument, value, rec: undefined, at } : { channel, instrument, value: undefined, rec, at });
  }

  /** A held record as sent: decoded again from its value (it decoded before, with a schema this codec holds). */
  private unhold(h: Held): StreamRecord {
    return h.rec ?? toStreamRecord(h.channel, this.o.codec.decodeSingleObject(h.value!).value as unknown as Record<string, unknown>);
  }

  private trim(): void {
    const oldest = Date.now() - this.o.recentWindowMs;
    while (this.recent.size > 0 && this.recent.at(0).at < oldest) this.recent.shift();
  }

  /** Records held for the recent window now, and the slots their storage takes (both at most recentMaxRecords). */
  get held(): { records: number; slots: number } {
    return { records: this.recent.size, slots: this.recent.slots };
  }

  /**
   * Adds a listener and returns, in the same tick (so nothing falls between the two), the held
   * recent records it would have received, in consumption order.
   */
  subscribe(l: HubListener): { recent: StreamRecord[]; unsubscribe: () => void } {
    const recent: StreamRecord[] = [];
    for (let i = 0; i < this.recent.size; i++) {
      const h = this.recent.at(i);
      if (l.channels.has(h.channel) && (l.instruments === null || l.instruments.has(h.instrument))) recent.push(this.unhold(h));
    }
    this.listeners.add(l);
    return { recent, unsubscribe: () => this.listeners.delete(l) };
  }

  /** The end offsets of the channels' topics now: every record the database holds lies before them. */
  async fence(channels: Iterable<StreamChannel>): Promise<Fence> {
    const admin = this.admin;
    const out = new Map<string, number>();
    if (!admin) return out;
    for (const c of channels) {
      const topic = topicFor(this.o.kafka.topicPrefix, CHANNEL_SPECS[c].kind);
      for (const b of await admin.fetchTopicOffsets(topic)) out.set(`${topic}:${b.partition}`, Number(b.high));
    }
    return out;
  }

  /** True once the consumer has processed every record before the fence. */
  passed(fence: Fence): boolean {
    for (const [tp, offset] of fence) if ((this.position.get(tp) ?? 0) < offset) return false;
    return true;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.abort.abort();
    this.listeners.clear();
    const consumer = this.consumer;
    const admin = this.admin;
    this.consumer = undefined;
    this.admin = undefined;
    await consumer?.disconnect().catch((e) => this.o.events.emit('hub.closeFailed', { error: messageOf(e) }));
    if (admin) {
      // The group was this process's alone: leave nothing behind in the broker.
      await admin.deleteGroups([this.groupId]).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
  }
}
