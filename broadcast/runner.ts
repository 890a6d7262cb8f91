/**
 * One run of the broadcast consumer (start → stop), as the sink's runner is to its connector:
 * seeks on group join (positions and predicate state from the database), the batch callback
 * (decode, match, deliver, dead-letter, commit), per partition in offset order.
 *
 * A batch of one partition is cut into chunks of at most `batchMaxRecords`; each chunk is matched
 * against the registrations (broadcast/model.ts's Matcher: kind + instrument, then the compiled
 * predicate with the instrument's state), its deliveries are handed to their broadcasters (in
 * parallel across broadcasters, each ordered per instrument), failures go to the dead-letter
 * topic, and then positions.ts's commitBatch stores the next offset, the state and the counts in
 * one transaction. Chunks of a partition are pipelined: chunk n+1 is decoded and matched while
 * chunk n delivers and commits, and starts delivering once n committed (its state rows are those
 * as of its own last record). The consumer moves past a batch only once its last chunk
 * committed: at-least-once, and a restart repeats at most the chunk that was being delivered
 * (with the same event ids).
 */
import type { Pool } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import type { AvroCodec } from '../core/avro.ts';
import { heartbeatUntil, partitionOffsets, type Admin, type Consumer, type EachBatchPayload, type KafkaMessage } from '../core/kafka.ts';
import { RETRY, retry } from '../core/retry.ts';
import type { AnyRecord, RecordKind } from '../schemas/catalog.ts';
import { eventId, recordTimeUs, type Broadcaster, type DeadLetter, type DeadLetters, type Delivery, type Outcome } from './delivery.ts';
import type { BroadcastEmitter } from './events.ts';
import type { CompiledRegistration, Matcher } from './model.ts';
import { commitBatch, initOffsets, readOffsets, readStates, type StatRow, type StateRow } from './positions.ts';
import type { Predicate, PredicateState } from './predicate.ts';

/** The registrations and broadcasters in force, swapped whole by a reload (between chunks). */
export interface Snapshot {
  readonly matcher: Matcher;
  /** Registrations that deliver now (neither they nor their broadcaster paused), by name. */
  readonly active: ReadonlyMap<string, { readonly broadcaster: Broadcaster }>;
  /** Every registration's name (paused included), whose state is kept. */
  readonly names: readonly string[];
  /** Per topic: when its earliest registration was created (ms), where a partition the group never read starts. */
  readonly startOf: ReadonlyMap<string, number>;
}

export interface RunnerHost {
  readonly pool: Pool;
  readonly admin: Admin;
  readonly groupId: string;
  readonly events: BroadcastEmitter;
  readonly codec: AvroCodec;
  readonly deadLetters: DeadLetters;
  readonly kindOfTopic: ReadonlyMap<string, RecordKind>;
  readonly batchMaxRecords: number;
  snapshot(): Snapshot;
}

const HEARTBEAT_EVERY_MS = 2_000;
/** The first byte of tickflow's Avro single-object framing (core/avro.ts). */
const SINGLE_OBJECT_MARKER = 0xc3;

interface PlanStep {
  readonly c: CompiledRegistration;
  readonly broadcaster: Broadcaster;
  /** The registration's state per instrument, when its predicate has a crosses term. */
  readonly states: Map<string, PredicateState> | undefined;
  /** A stateless predicate: its index in Plan.shared (registrations with the same predicate text share one evaluation per record). */
  readonly shared: number;
}
interface Plan {
  readonly steps: readonly PlanStep[];
  /** The distinct stateless predicates of the steps, each evaluated at most once per record. */
  readonly shared: readonly Predicate[];
  /** Per record: 0 = not evaluated yet, 1 = match, 2 = no match (reset before each record). */
  readonly answers: Uint8Array;
}
interface Prepared {
  readonly topic: string;
  readonly partition: number;
  readonly messages: readonly KafkaMessage[];
  readonly highWatermark: number;
  readonly t0: number;
  readonly byBroadcaster: ReadonlyMap<Broadcaster, Delivery[]>;
  readonly stateRows: readonly StateRow[];
  readonly matched: number;
}
/** A chunk on its way: `done` once committed (true) or dropped (false). */
interface Running {
  readonly done: Promise<boolean>;
}
const NO_PLAN: Plan = { steps: [], shared: [], answers: new Uint8Array(0) };
const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;
const instKey = (exchange: string, symbol: string) => `${exchange}\u0000${symbol}`;

export class BroadcastRunner {
  private readonly host: RunnerHost;
  private readonly consumer: Consumer;
  private readonly signal: AbortSignal;
  private generation = 0;
  private positioned: Promise<void> = Promise.resolve();
  /** Chunks being delivered (one per partition at most; partitions run concurrently). */
  private readonly processing = new Set<Promise<unknown>>();
  /** Per partition: the next offset to deliver (what the database has, once committed). */
  private readonly next = new Map<string, number>();
  /** Per registration, per instrument: the predicate state as of the last processed record. */
  private states = new Map<string, Map<string, PredicateState>>();
  /** planOf's cache; replaced with the states on a group join. */
  private plans = new WeakMap<readonly CompiledRegistration[], Plan>();
  readonly assigned = new Map<string, number[]>();

  constructor(host: RunnerHost, consumer: Consumer, signal: AbortSignal) {
    this.host = host;
    this.consumer = consumer;
    this.signal = signal;
  }

  private get stopping(): boolean {
    return this.signal.aborted;
  }

  /** Waits for the chunk being delivered (a stop lets it finish delivering, then drops it uncommitted). */
  async finish(): Promise<void> {
    await Promise.allSettled([...this.processing]);
  }

  onGroupJoin(assignment: Record<string, number[]>, rebalance: boolean): void {
    const gen = ++this.generation;
    this.assigned.clear();
    for (const [topic, ps] of Object.entries(assignment)) this.assigned.set(topic, ps);
    const assigned = new Map(this.assigned);
    this.positioned = (async () => {
      await Promise.allSettled([...this.processing]);
      const { pool, admin, groupId } = this.host;
      const db = <T>(fn: () => Promise<T>) =>
        retry(fn, { ...RETRY.database, signal: this.signal, onRetry: (e) => this.host.events.emit('problem', { stage: 'consumer', error: `the database (reading the stored positions and state): ${messageOf(e)}` }) });
      const topics = [...assigned.keys()];
      let stored = await db(() => readOffsets(pool, groupId, topics));
      const have = new Set(stored.map((o) => tpKey(o.topic, o.partition)));
      const missing: { topic: string; partition: number; nextOffset: number }[] = [];
      for (const [topic, ps] of assigned) {
        if (ps.every((p) => have.has(tpKey(topic, p)))) continue;
        // A partition the group never read starts where its earliest registration was created.
        const since = this.host.snapshot().startOf.get(topic);
        const offsets = await retry(
          async () => (since !== undefined ? (await admin.fetchTopicOffsetsByTimestamp(topic, since)).map((o) => [o.partition, Number(o.offset)] as const) : [...(await partitionOffsets(admin, topic))].map(([p, o]) => [p, o.high] as const)),
          { ...RETRY.kafkaAdmin, signal: this.signal },
        );
        for (const [p, o] of offsets) if (ps.includes(p) && !have.has(tpKey(topic, p))) missing.push({ topic, partition: p, nextOffset: o });
      }
      if (missing.length > 0) {
        await db(() => initOffsets(pool, groupId, missing));
        stored = await db(() => readOffsets(pool, groupId, topics));
      }
      const states = await db(() => readStates(pool, this.host.snapshot().names));
      if (gen !== this.generation || this.stopping) return;
      this.states = new Map();
      this.plans = new WeakMap();
      for (const s of states) this.stateOf(s.registration).set(instKey(s.exchange, s.symbol), s.state);
      this.next.clear();
      const at = new Map(stored.map((o) => [tpKey(o.topic, o.partition), o.nextOffset]));
      const partitions: { topic: string; partition: number; offset: number }[] = [];
      for (const [topic, ps] of assigned) {
        for (const p of ps) {
          const o = at.get(tpKey(topic, p));
          if (o === undefined) continue;
          this.next.set(tpKey(topic, p), o);
          this.consumer.seek({ topic, partition: p, offset: String(o) });
          partitions.push({ topic, partition: p, offset: o });
        }
      }
      this.host.events.emit('assigned', { partitions, rebalance });
    })();
    this.positioned.catch((e) => {
      if (!this.stopping) this.host.events.emit('problem', { stage: 'consumer', error: messageOf(e) });
    });
  }

  /**
   * What to do for each candidate of an instrument: its broadcaster and, for a stateful predicate,
   * its state map. Cached per candidates list (the Matcher returns the same list for an
   * instrument until a reload), so a record costs one lookup, not one per registration.
   */
  private planOf(snap: Snapshot, candidates: readonly CompiledRegistration[]): Plan {
    const cached = this.plans.get(candidates);
    if (cached) return cached;
    const steps: PlanStep[] = [];
    const shared: Predicate[] = [];
    const sharedOf = new Map<string, number>();
    for (const c of candidates) {
      const a = snap.active.get(c.name);
      if (!a) continue;
      if (c.predicate.stateful) {
        steps.push({ c, broadcaster: a.broadcaster, states: this.stateOf(c.name), shared: -1 });
        continue;
      }
      let i = sharedOf.get(c.predicate.source);
      if (i === undefined) sharedOf.set(c.predicate.source, (i = shared.push(c.predicate) - 1));
      steps.push({ c, broadcaster: a.broadcaster, states: undefined, shared: i });
    }
    const plan = steps.length === 0 ? NO_PLAN : { steps, shared, answers: new Uint8Array(shared.length) };
    this.plans.set(candidates, plan);
    return plan;
  }

  private stateOf(registration: string): Map<string, PredicateState> {
    let m = this.states.get(registration);
    if (!m) this.states.set(registration, (m = new Map()));
    return m;
  }

  async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const gen = this.generation;
    await heartbeatUntil(this.positioned, heartbeat, HEARTBEAT_EVERY_MS);
    const live = () => isRunning() && !isStale() && !this.stopping && gen === this.generation;
    const key = tpKey(batch.topic, batch.partition);
    const from = this.next.get(key);
    if (!live() || from === undefined) return;
    // A batch fetched before the seek starts earlier: what was committed is not delivered again.
    const messages = batch.messages.filter((m) => Number(m.offset) >= from);
    if (messages.length === 0) return;
    const max = this.host.batchMaxRecords;
    // Pipelined: chunk n+1 is decoded and matched while chunk n delivers and commits; n+1 delivers
    // once n committed.
    let pending: { run: Running; last: string } | undefined;
    // A slow receiver must not cost the group membership: heartbeats go on while it delivers.
    const beat = setInterval(() => void heartbeat().catch(() => undefined), HEARTBEAT_EVERY_MS);
    try {
      for (let i = 0; i < messages.length; i += max) {
        if (!live()) break;
        const chunk = messages.slice(i, i + max);
        const prepared = await this.prepare(batch.topic, batch.partition, chunk, Number(batch.highWatermark));
        const run = this.complete(prepared, gen, pending?.run);
        const before = pending;
        pending = { run, last: chunk[chunk.length - 1]!.offset };
        if (before && !(await this.settle(before.run))) return;
        if (before) resolveOffset(before.last);
      }
      if (pending && (await this.settle(pending.run))) resolveOffset(pending.last);
    } finally {
      clearInterval(beat);
    }
    await heartbeat();
  }

  /** Waits for a chunk's commit (true) or drop (false); its failure is thrown to eachBatch here. */
  private settle(run: Running): Promise<boolean> {
    return run.done;
  }

  /**
   * Delivers, dead-letters and commits a prepared chunk once `before` (the partition's previous
   * chunk) committed: so a registration's deliveries per instrument stay in record order, and a
   * kill repeats at most one chunk per partition. A chunk whose predecessor was dropped (a stop, a
   * rebalance) or failed is dropped too, undelivered.
   */
  private complete(p: Prepared, gen: number, before: Running | undefined): Running {
    const done = (async () => {
      if (before && !(await before.done)) return false;
      if (this.stopping || gen !== this.generation) return false;
      // Deliver: broadcasters in parallel; each orders its own deliveries per instrument.
      const results: { d: Delivery; o: Outcome }[] = [];
      try {
        await Promise.all(
          [...p.byBroadcaster].map(async ([b, ds]) => {
            const outcomes = await b.deliver(ds, this.signal);
            ds.forEach((d, i) => results.push({ d, o: outcomes[i]! }));
          }),
        );
      } catch (e) {
        if (this.stopping) return false;
        throw e;
      }
      return this.commitChunk(p, results);
    })();
    // A rejection reaches eachBatch through settle (this chunk's or its successor's): never unhandled.
    done.catch(() => undefined);
    this.processing.add(done);
    const forget = () => this.processing.delete(done);
    void done.then(forget, forget);
    return { done };
  }

  /** Decodes and matches one chunk: its deliveries per broadcaster, and the states it changed as of its last record. */
  private async prepare(topic: string, partition: number, messages: readonly KafkaMessage[], highWatermark: number): Promise<Prepared> {
    const t0 = performance.now();
    const kind = this.host.kindOfTopic.get(topic)!;
    const snap = this.host.snapshot();
    const byBroadcaster = new Map<Broadcaster, Delivery[]>();
    // The states this chunk changed: per registration's state map, the instruments touched.
    const dirty = new Map<Map<string, PredicateState>, { registration: string; instruments: Set<string> }>();
    let matched = 0;
    for (const m of messages) {
      if (!m.value) continue;
      let record: AnyRecord;
      try {
        // tickflow's own framing decodes synchronously (no await per record); Confluent's may fetch a schema.
        record = m.value[0] === SINGLE_OBJECT_MARKER ? this.host.codec.decodeSingleObject(m.value).value : (await this.host.codec.decode(m.value)).value;
      } catch (e) {
        // The sink dead-letters undecodable records of these topics; the broadcaster skips them.
        this.host.events.emit('problem', { stage: 'decode', error: `${topic}:${partition}:${m.offset}: ${messageOf(e)}` });
        continue;
      }
      const r = record as unknown as Readonly<Record<string, unknown>> & { exchange: string; symbol: string };
      const { steps, shared, answers } = this.planOf(snap, snap.matcher.candidates(kind, r.exchange, r.symbol));
      if (steps.length === 0) continue;
      answers.fill(0);
      let tsUs: number | undefined;
      let ik: string | undefined;
      let offset: string | undefined;
      for (const { c, broadcaster, states, shared: si } of steps) {
        let match: boolean;
        if (states) {
          ik ??= instKey(r.exchange, r.symbol);
          const res = c.predicate.test(r, states.get(ik));
          match = res.match;
          if (res.state) {
            states.set(ik, res.state);
            let d = dirty.get(states);
            if (!d) dirty.set(states, (d = { registration: c.name, instruments: new Set() }));
            d.instruments.add(ik);
          }
        } else {
          let a = answers[si]!;
          if (a === 0) answers[si] = a = shared[si]!.test(r, undefined).match ? 1 : 2;
          match = a === 1;
        }
        if (!match) continue;
        matched++;
        tsUs ??= recordTimeUs(kind, record);
        offset ??= m.offset;
        let list = byBroadcaster.get(broadcaster);
        if (!list) byBroadcaster.set(broadcaster, (list = []));
        list.push({ id: eventId(topic, partition, offset, c.name), registration: c.name, broadcaster: broadcaster.name, kind, record, tsUs });
      }
    }

    // The states as of this chunk's last record (the next chunk, matched meanwhile, moves them on).
    const stateRows: StateRow[] = [];
    for (const [states, d] of dirty) {
      for (const ik of d.instruments) {
        const [exchange, symbol] = ik.split('\u0000') as [string, string];
        stateRows.push({ registration: d.registration, exchange, symbol, state: states.get(ik)! });
      }
    }
    return { topic, partition, messages, highWatermark, t0, byBroadcaster, stateRows, matched };
  }

  /** Dead-letters the failures and commits the chunk (next offset, states, counts in one transaction); false when a stop dropped it. */
  private async commitChunk({ topic, partition, messages, highWatermark, t0, stateRows, matched }: Prepared, results: readonly { d: Delivery; o: Outcome }[]): Promise<boolean> {
    const letters: DeadLetter[] = [];
    const stats = new Map<string, { delivered: number; failed: number; lastError: string | null; lastErrorAt: Date | null; lastDeliveredAt: Date | null }>();
    for (const { d, o } of results) {
      let s = stats.get(d.registration);
      if (!s) stats.set(d.registration, (s = { delivered: 0, failed: 0, lastError: null, lastErrorAt: null, lastDeliveredAt: null }));
      if (o.ok) {
        s.delivered++;
        s.lastDeliveredAt = new Date(o.at);
        this.host.events.emit('delivered', { broadcaster: d.broadcaster, registration: d.registration, attempts: o.attempts, latencyMs: o.at - d.tsUs / 1000 });
      } else {
        s.failed++;
        s.lastError = o.error;
        s.lastErrorAt = new Date();
        letters.push({ delivery: d, error: o.error, attempts: o.attempts });
      }
    }
    // The error names what failed: a log line reads `the database (...)` or `Kafka (...)`, not only an errno.
    const onRetry = (stage: 'dead-letter' | 'commit', what: string) => (e: unknown) => this.host.events.emit('problem', { stage, error: `${what}: ${messageOf(e)}` });
    try {
      await retry(() => this.host.deadLetters.send(letters), { ...RETRY.kafkaProduce, signal: this.signal, onRetry: onRetry('dead-letter', `Kafka (the dead-letter topic ${this.host.deadLetters.topic})`) });
      for (const l of letters) this.host.events.emit('failed', { broadcaster: l.delivery.broadcaster, registration: l.delivery.registration, id: l.delivery.id, attempts: l.attempts, error: l.error });
      const nextOffset = Number(messages[messages.length - 1]!.offset) + 1;
      const statRows: StatRow[] = [...stats].map(([registration, s]) => ({ registration, ...s }));
      await retry(() => commitBatch(this.host.pool, { groupId: this.host.groupId, offsets: [{ topic, partition, nextOffset }], states: stateRows, stats: statRows }), {
        ...RETRY.database,
        signal: this.signal,
        onRetry: onRetry('commit', 'the database (committing the delivered chunk: position, crosses state, counts; deliveries wait)'),
      });
      this.next.set(tpKey(topic, partition), nextOffset);
      const delivered = results.length - letters.length;
      this.host.events.emit('batch', { topic, partition, records: messages.length, matched, delivered, failed: letters.length, seconds: (performance.now() - t0) / 1000 });
      this.host.events.emit('commit', { offsets: [{ topic, partition, nextOffset, lag: Math.max(0, highWatermark - nextOffset) }] });
      return true;
    } catch (e) {
      if (this.stopping) return false;
      throw e;
    }
  }
}
