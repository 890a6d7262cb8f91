/**
 * Sharding gateways across processes: several `tickflow gateway` processes share the instruments
 * of the same exchange entries, each instrument served by one process at a time.
 *
 * An instrument (entry name, symbol) belongs to a slot, `fnv1a("<entry>:<symbol>") % S`: stable
 * across processes, restarts and versions. Who serves which slots comes from one of:
 * - static (`--shard i/n`, `gateway.shard: {index, count}`): slot s is served by process s % n;
 *   nothing moves, nothing watches the others.
 * - a Kafka consumer group (`--shard-group g`, `gateway.shard: {group}`): every process joins group
 *   `tickflow-gateway-<g>`, subscribed to `<prefix>.gateway-shards`, a topic of S partitions that
 *   stays empty; the partitions the group assigns a member are its slots. A process that joins,
 *   leaves (SIGTERM) or dies (its session times out) makes the group rebalance and the slots move.
 *
 * The group's assignment is sticky (stickyAssign, run by the group's leader): each member sends the
 * slots it holds with its join and keeps them up to its fair share, so a join moves only ~S/n slots
 * to the newcomer and a death only the dead member's. A member keeps serving through a rebalance
 * the slots it is given back; a slot it loses is stopped the moment the new assignment arrives
 * (the gainer is answered by the same SyncGroup round), and a gained slot starts `handoverMs`
 * later, so the loser's last records are in Kafka before the gainer reads where they end. A member
 * that cannot tell whether the group still counts it (no heartbeat accepted for the session
 * timeout: Kafka unreachable, a stalled process) stops serving everything until it rejoins, so a
 * slot the group gave away is not served twice for longer than that. The membership and that
 * clock run in a worker thread (shard-worker.ts, runMembership): a busy gateway thread neither
 * delays the heartbeats nor makes the clock misread them.
 */
import { createKafka, ensureNamedTopics, joinGroupMembership, type GroupMembership, type KafkaSettings } from '../core/kafka.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { TypedEvents } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../core/ts-worker.ts';
import { SHARD_GROUP_DEFAULTS } from './config.ts';

export { SHARD_GROUP_DEFAULTS };

/** FNV-1a (32-bit) of a string's UTF-8 bytes. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The slot of an instrument among `slots`. */
export function slotOf(entry: string, symbol: string, slots: number): number {
  return fnv1a(`${entry}:${symbol}`) % slots;
}

/** The coordination topic of the shard groups: `<prefix>.gateway-shards`. */
export const shardTopic = (prefix: string): string => `${prefix}.gateway-shards`;
/** The consumer group of one shard group. */
export const shardGroupId = (group: string): string => `tickflow-gateway-${group}`;

/** `gateway.shard`, or the CLI's `--shard i/n` / `--shard-group g`. */
export type ShardSpec =
  | { readonly index: number; readonly count: number }
  | {
      readonly group: string;
      /** Partitions of the coordination topic when it is created (an existing topic's count wins). */
      readonly slots: number;
      readonly sessionTimeoutMs: number;
      readonly heartbeatIntervalMs: number;
      /** Between a slot's assignment and its start (the loser's last records reach Kafka first). */
      readonly handoverMs: number;
      /** A ticker or book stream taken over within this long of its last record in Kafka leaves no gap record. */
      readonly handoverGapMs: number;
    };


/** Parses `--shard i/n` (0-based index). */
export function parseShardArg(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index >= count) throw new TickflowError('CONFIG_INVALID', `--shard expects i/n with 0 <= i < n (e.g. 0/3 for the first of three processes), got ${v}`);
  return { index, count };
}

/** Slots that stopped or started being served here. */
export interface ShardChange {
  readonly added: readonly number[];
  readonly removed: readonly number[];
  /** assigned: the group's answer (or the static split); fenced: the group may no longer count this process; closing. */
  readonly why: 'assigned' | 'fenced' | 'closing';
}

type ShardEventMap = {
  change: ShardChange;
};

/** What the gateway reads of a shard: which instruments are its own, and when that changes. */
export interface Shard {
  /** `static 1/3`, `group g (member …)`: for logs and gap reasons. */
  readonly label: string;
  /** Slot count (S). */
  readonly slotCount: number;
  /** Whether this process serves the instrument now. */
  owns(entry: string, symbol: string): boolean;
  /** The slots served now. */
  serving(): readonly number[];
  /** A ticker/book taken over within this long of its last record leaves no gap record. */
  readonly handoverGapMs: number;
  readonly events: TypedEvents<ShardEventMap>;
  /** Static: at once. Group: once the first assignment is being served (or `timeoutMs` passed). */
  start(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** `--shard i/n`: slot s is served by process s % n. */
export function staticShard(index: number, count: number, slotCount: number = SHARD_GROUP_DEFAULTS.slots): Shard {
  const mine = Array.from({ length: slotCount }, (_, s) => s).filter((s) => s % count === index);
  const set = new Set(mine);
  return {
    label: `static ${index}/${count}`,
    slotCount,
    handoverGapMs: 0,
    owns: (entry, symbol) => set.has(slotOf(entry, symbol, slotCount)),
    serving: () => mine,
    events: new TypedEvents<ShardEventMap>(),
    start: async () => undefined,
    close: async () => undefined,
  };
}

/**
 * The leader's assignment: every slot to exactly one member, each member `floor(S/n)` or
 * `ceil(S/n)` slots, keeping what each held (as it said in its join) where that fits. A slot two
 * members both claim (one was expired and has not heard yet) stays with the first by member id.
 */
export function stickyAssign(members: ReadonlyArray<{ readonly memberId: string; readonly held: readonly number[] }>, slots: readonly number[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  if (members.length === 0) return out;
  const ids = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  const valid = new Set(slots);
  const claimed = new Set<number>();
  const kept = new Map<string, number[]>();
  for (const m of ids) {
    const mine = [...new Set(m.held)].filter((s) => valid.has(s) && !claimed.has(s)).sort((a, b) => a - b);
    for (const s of mine) claimed.add(s);
    kept.set(m.memberId, mine);
  }
  const base = Math.floor(slots.length / ids.length);
  let extra = slots.length % ids.length;
  // The larger shares go to those holding the most already (fewer moves), ties by member id.
  const byHeld = [...ids].sort((a, b) => kept.get(b.memberId)!.length - kept.get(a.memberId)!.length);
  const target = new Map<string, number>();
  for (const m of byHeld) target.set(m.memberId, base + (extra-- > 0 ? 1 : 0));
  const pool: number[] = [];
  for (const m of ids) {
    const mine = kept.get(m.memberId)!;
    const t = target.get(m.memberId)!;
    if (mine.length > t) pool.push(...mine.splice(t));
  }
  for (const s of slots) if (!claimed.has(s)) pool.push(s);
  pool.sort((a, b) => a - b);
  for (const m of ids) {
    const mine = kept.get(m.memberId)!;
    while (mine.length < target.get(m.memberId)! && pool.length > 0) mine.push(pool.shift()!);
    out.set(m.memberId, mine.sort((a, b) => a - b));
  }
  return out;
}

const encodeHeld = (slots: Iterable<number>): Buffer => Buffer.from(JSON.stringify([...slots]));
function decodeHeld(b: Buffer): number[] {
  try {
    const v: unknown = JSON.parse(b.toString('utf8') || '[]');
    return Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : [];
  } catch {
    return [];
  }
}

export interface GroupShardOptions {
  readonly kafka: Pick<KafkaSettings, 'brokers' | 'clientId' | 'connectionTimeoutMs' | 'requestTimeoutMs' | 'topicPrefix' | 'replicationFactor' | 'retentionMs'>;
  readonly group: string;
  readonly slots?: number;
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly handoverMs?: number;
  readonly handoverGapMs?: number;
  readonly log: Logger;
}

/** What the membership (in its worker thread) tells the gateway's thread. */
export type MembershipMessage =
  | { readonly t: 'joined' }
  | { readonly t: 'error'; readonly error: string }
  | { readonly t: 'assigned'; readonly memberId: string; readonly partitions: readonly number[]; readonly partitionCount: number }
  | { readonly t: 'rebalancing' }
  | { readonly t: 'fenced' }
  | { readonly t: 'left' }
  | { readonly t: 'log'; readonly level: 'info' | 'warn'; readonly fields: Record<string, unknown>; readonly msg: string };

/** What the membership needs (plain data: it crosses to a worker thread). */
export interface MembershipJob {
  readonly kafka: GroupShardOptions['kafka'];
  readonly group: string;
  readonly topic: string;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
}

/**
 * The group membership and its fencing clock: the kafkajs consumer of the coordination topic, the
 * sticky assignor, and the decision to stop serving (no heartbeat accepted for the session
 * timeout). Run in a worker thread of its own (shard-worker.ts): kafkajs heartbeats only from its
 * consumer's fetch loop, whose every step (the fetch's answer, the heartbeat's request and
 * answer, the HEARTBEAT event that resets the clock) waits a turn of the event loop it runs on; a
 * gateway thread busy taking over hundreds of instruments gives it too few turns, so heartbeats
 * went unaccepted (or accepted, but not yet read when the clock looked) for the whole session
 * timeout without any single long stall, and the process fenced itself. Here both the heartbeats
 * and the clock run on a thread that does nothing else. A whole-process stall (SIGSTOP, a long
 * GC pause) stops this thread too, so it still fences.
 */
export async function runMembership(job: MembershipJob, post: (m: MembershipMessage) => void): Promise<GroupMembership> {
  const { group } = job;
  const info = (fields: Record<string, unknown>, msg: string) => post({ t: 'log', level: 'info', fields, msg });
  const warn = (fields: Record<string, unknown>, msg: string) => post({ t: 'log', level: 'warn', fields, msg });
  /** The slots of the latest assignment, until fenced: sent with each join. */
  let held = new Set<number>();
  let lastOkAt = Date.now();
  let joiningSince: number | undefined;
  let closed = false;
  const fence = () => {
    held = new Set();
    post({ t: 'fenced' });
  };
  const membership = await joinGroupMembership(createKafka(job.kafka), {
    groupId: shardGroupId(group),
    topic: job.topic,
    sessionTimeoutMs: job.sessionTimeoutMs,
    heartbeatIntervalMs: job.heartbeatIntervalMs,
    rebalanceTimeoutMs: job.sessionTimeoutMs,
    userData: () => encodeHeld(held),
    assign: (members, partitions) => {
      const out = stickyAssign(members.map((m) => ({ memberId: m.memberId, held: decodeHeld(m.userData) })), partitions);
      info({ group, members: members.length, slots: partitions.length }, `shard group ${group}: assigning ${partitions.length} slots to ${members.length} gateway process(es)`);
      return out;
    },
    onAssigned: (a) => {
      if (closed) return;
      lastOkAt = Date.now();
      joiningSince = undefined;
      held = new Set(a.partitions);
      post({ t: 'assigned', memberId: a.memberId, partitions: a.partitions, partitionCount: a.partitionCount });
    },
    onRebalancing: () => {
      lastOkAt = Date.now();
      joiningSince ??= Date.now();
      post({ t: 'rebalancing' });
    },
    onHeartbeat: () => {
      lastOkAt = Date.now();
    },
    onCrash: (e, restarting) => {
      warn({ group, err: messageOf(e), restarting }, `shard group ${group}: membership lost (${messageOf(e)}); serving nothing until it rejoins`);
      fence();
    },
  });
  const everyMs = Math.max(100, Math.floor(job.heartbeatIntervalMs / 2));
  let lastTick = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    const lateMs = now - lastTick - everyMs;
    lastTick = now;
    // A late tick is this thread stalled (the whole process: a stop, a long GC pause).
    if (lateMs >= 1_000) warn({ group, lateMs }, `shard group ${group}: the membership thread stalled for ${lateMs} ms (no heartbeat could be sent meanwhile)`);
    if (closed || held.size === 0) return;
    const unsure = joiningSince !== undefined ? now - joiningSince > 2 * job.sessionTimeoutMs : now - lastOkAt > job.sessionTimeoutMs;
    if (!unsure) return;
    warn({ group, sinceMs: now - lastOkAt }, `shard group ${group}: no heartbeat accepted for ${now - lastOkAt} ms (session timeout ${job.sessionTimeoutMs} ms); the group may have moved this process's slots, serving nothing until it rejoins`);
    fence();
  }, everyMs);
  return {
    async leave() {
      closed = true;
      clearInterval(timer);
      await membership.leave();
    },
  };
}

/** Membership through a Kafka consumer group (see the module comment). */
export class GroupShard implements Shard {
  private readonly opts: GroupShardOptions;
  readonly label: string;
  readonly events = new TypedEvents<ShardEventMap>();
  readonly handoverGapMs: number;
  slotCount: number;
  /** The group's latest answer. */
  private assigned = new Set<number>();
  /** Announced as served (assigned, past the handover wait). */
  private served = new Set<number>();
  /** Leaves the group (and ends the membership's thread). */
  private leave: (() => Promise<void>) | undefined;
  private handover: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private memberId = '';
  private closed = false;
  private firstServed!: () => void;
  private readonly first = new Promise<void>((r) => (this.firstServed = r));
  private readonly o: Required<Omit<GroupShardOptions, 'kafka' | 'log' | 'group'>>;

  constructor(opts: GroupShardOptions) {
    this.opts = opts;
    this.o = { ...SHARD_GROUP_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof this.o;
    this.slotCount = this.o.slots;
    this.handoverGapMs = this.o.handoverGapMs;
    this.label = `group ${opts.group}`;
  }

  owns(entry: string, symbol: string): boolean {
    return this.served.has(slotOf(entry, symbol, this.slotCount));
  }

  serving(): readonly number[] {
    return [...this.served].sort((a, b) => a - b);
  }

  /** The member id the group gave this process ('' before the first join). */
  get member(): string {
    return this.memberId;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const { kafka: k, log, group } = this.opts;
    const topic = shardTopic(k.topicPrefix);
    await ensureNamedTopics(createKafka(k), [topic], { partitions: this.o.slots, replicationFactor: k.replicationFactor, retentionMs: k.retentionMs });
    const job: MembershipJob = { kafka: { ...k, brokers: [...k.brokers] }, group, topic, sessionTimeoutMs: this.o.sessionTimeoutMs, heartbeatIntervalMs: this.o.heartbeatIntervalMs };
    let worker: Worker | undefined;
    try {
      worker = startTsWorker(new URL('./shard-worker.ts', import.meta.url), job);
    } catch (e) {
      log.warn({ group, err: messageOf(e) }, `shard group ${group}: cannot start a worker thread for the group membership; running it in the main thread (heartbeats wait on its event loop)`);
    }
    if (worker) {
      const w = worker;
      const joined = new Promise<void>((resolve, reject) => {
        w.on('message', (m: MembershipMessage) => {
          if (m.t === 'joined') resolve();
          else if (m.t === 'error') reject(new TickflowError('KAFKA_UNREACHABLE', `shard group ${group}: joining: ${m.error}`, { retriable: true }));
          else this.onMessage(m);
        });
        w.once('error', (e) => reject(e));
        w.once('exit', (code) => {
          reject(new TickflowError('KAFKA_UNREACHABLE', `shard group ${group}: the membership thread exited (${code})`, { retriable: true }));
          if (!this.closed) {
            log.warn({ group, code }, `shard group ${group}: the membership thread exited (${code}); serving nothing`);
            this.fence();
          }
        });
      });
      this.leave = async () => {
        const left = new Promise<void>((r) => {
          w.on('message', (m: MembershipMessage) => m.t === 'left' && r());
          w.once('exit', () => r());
        });
        w.postMessage({ t: 'leave' });
        await Promise.race([left, new Promise((r) => setTimeout(r, 10_000))]);
        await w.terminate();
      };
      try {
        await joined;
      } catch (e) {
        await w.terminate();
        throw e;
      }
    } else {
      const m = await runMembership(job, (x) => this.onMessage(x));
      this.leave = () => m.leave();
    }
    // The fencing clock runs with the membership; here only a stalled gateway thread is told.
    const everyMs = 1_000;
    let lastTick = Date.now();
    this.stallTimer = setInterval(() => {
      const now = Date.now();
      const lateMs = now - lastTick - everyMs;
      lastTick = now;
      if (lateMs >= 1_000) log.warn({ group, lateMs }, `shard group ${group}: the event loop stalled for ${lateMs} ms`);
    }, everyMs);
    this.stallTimer.unref();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.first, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  private onMessage(m: MembershipMessage): void {
    const { log, group } = this.opts;
    switch (m.t) {
      case 'assigned':
        return this.onAssigned(m.memberId, m.partitions, m.partitionCount);
      case 'rebalancing':
        log.info({ group }, `shard group ${group}: rebalancing (a gateway process joined or left); serving ${this.served.size} slots meanwhile`);
        return;
      case 'fenced':
        return this.fence();
      case 'log':
        if (m.level === 'warn') log.warn(m.fields, m.msg);
        else log.info(m.fields, m.msg);
        return;
      default:
        return;
    }
  }

  private onAssigned(memberId: string, partitions: readonly number[], partitionCount: number): void {
    if (this.closed) return;
    const { log, group } = this.opts;
    if (partitionCount > 0 && partitionCount !== this.slotCount) {
      // The topic was created with another count: the topic is what every member agrees on.
      log.warn({ group, configured: this.slotCount, topic: partitionCount }, `shard group ${group}: the coordination topic has ${partitionCount} partitions, not the configured ${this.slotCount}; using ${partitionCount} slots`);
      this.slotCount = partitionCount;
    }
    this.memberId = memberId;
    this.assigned = new Set(partitions);
    const removed = [...this.served].filter((s) => !this.assigned.has(s)).sort((a, b) => a - b);
    for (const s of removed) this.served.delete(s);
    const pending = [...this.assigned].filter((s) => !this.served.has(s));
    log.info({ group, memberId, slots: partitions.length, removed: removed.length, pending: pending.length }, `shard group ${group}: this process holds ${partitions.length} of ${this.slotCount} slots (${removed.length} moved away, ${pending.length} to start in ${this.o.handoverMs} ms)`);
    if (removed.length > 0) this.events.emit('change', { added: [], removed, why: 'assigned' });
    clearTimeout(this.handover);
    const startPending = () => {
      const added = [...this.assigned].filter((s) => !this.served.has(s)).sort((a, b) => a - b);
      for (const s of added) this.served.add(s);
      if (added.length > 0) this.events.emit('change', { added, removed: [], why: 'assigned' });
      this.firstServed();
    };
    if (pending.length === 0) startPending();
    else this.handover = setTimeout(startPending, this.o.handoverMs);
  }

  /** The membership decided the group may no longer count this process (its own heartbeat clock), or it crashed. */
  private fence(): void {
    clearTimeout(this.handover);
    this.assigned = new Set();
    const removed = this.serving();
    this.served = new Set();
    if (removed.length > 0) this.events.emit('change', { added: [], removed: [...removed], why: 'fenced' });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handover);
    clearInterval(this.stallTimer);
    const removed = this.serving();
    this.served = new Set();
    this.assigned = new Set();
    if (removed.length > 0) this.events.emit('change', { added: [], removed: [...removed], why: 'closing' });
    this.firstServed();
    await this.leave?.();
  }
}

/** The shard a gateway runs under, from `gateway.shard` (or the CLI's flags); undefined: unsharded. */
export function buildShard(spec: ShardSpec | null | undefined, kafka: GroupShardOptions['kafka'], log: Logger): Shard | undefined {
  if (!spec) return undefined;
  if ('index' in spec) return staticShard(spec.index, spec.count);
  return new GroupShard({ kafka, log, ...spec });
}
