/**
 * One exchange entry's bounded buffer on the way to Kafka. Records are encoded as they are
 * added (`encode`, injected: the publisher's topics, keys and codec); past `maxRecords` the
 * oldest data record goes and each symbol's loss becomes one `kafka` gap record, taken first.
 * Gap and instrument records are never dropped.
 */
import { CATALOG, type RecordKind, type RecordOf } from '../schemas/catalog.ts';
import type { GatewayEvents, QueuedRecord } from './events.ts';
import { gapRecord } from './gaps.ts';

/** A record as the outbox takes it: every kind has these fields. */
export type OutboxRecord<K extends RecordKind> = RecordOf[K] & { exchange: string; symbol: string; ts: number; received_at: number };

/** Encodes a record for its topic (Publisher.encode). */
export type Encode = <K extends RecordKind>(kind: K, record: OutboxRecord<K>) => QueuedRecord;

export interface OutboxDeps {
  readonly encode: Encode;
  /** A record was added (the publisher's loop wakes up). */
  readonly added: () => void;
  readonly events: GatewayEvents;
}

interface Loss {
  count: number;
  fromTs: number;
  toTs: number;
  readonly byKind: Map<RecordKind, number>;
}

/** One exchange entry's bounded buffer. */
export class Outbox {
  readonly exchange: string;
  readonly maxRecords: number;
  private readonly deps: OutboxDeps;
  private items: QueuedRecord[] = [];
  private head = 0;
  /** Records the catalog says are never dropped (gaps, instruments): small. */
  private priority: QueuedRecord[] = [];
  private readonly losses = new Map<string, Loss>();
  private roomWaiters: Array<() => void> = [];
  dropped = 0;

  constructor(exchange: string, maxRecords: number, deps: OutboxDeps) {
    this.exchange = exchange;
    this.maxRecords = maxRecords;
    this.deps = deps;
  }

  get size(): number {
    return this.items.length - this.head + this.priority.length;
  }

  /** Encodes and queues a record; the oldest droppable record goes when the buffer is full. */
  add<K extends RecordKind>(kind: K, record: OutboxRecord<K>): void {
    const q = this.deps.encode(kind, record);
    if (!CATALOG[kind].droppable) this.priority.push(q);
    else {
      this.items.push(q);
      if (this.items.length - this.head > this.maxRecords) this.dropOldest();
    }
    this.deps.added();
  }

  private dropOldest(): void {
    const r = this.items[this.head]!;
    this.items[this.head] = undefined as unknown as QueuedRecord;
    this.head++;
    this.dropped++;
    let loss = this.losses.get(r.symbol);
    if (!loss) {
      loss = { count: 0, fromTs: r.ts, toTs: r.ts, byKind: new Map() };
      this.losses.set(r.symbol, loss);
    }
    loss.count++;
    if (r.ts < loss.fromTs) loss.fromTs = r.ts;
    if (r.ts > loss.toTs) loss.toTs = r.ts;
    loss.byKind.set(r.kind, (loss.byKind.get(r.kind) ?? 0) + 1);
    if (this.dropped % 1000 === 1) this.deps.events.emit('buffer.drop', { exchange: this.exchange, count: this.dropped });
    this.compact();
  }

  private compact(): void {
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Takes up to `n` records, oldest first: loss reports, then status records, then data. */
  take(n: number, nowUs: number): QueuedRecord[] {
    const out: QueuedRecord[] = [];
    for (const [symbol, loss] of this.losses) {
      const kinds = [...loss.byKind].map(([k, c]) => `${c} ${k}`).join(', ');
      const reason = `kafka unreachable: buffer full (maxBufferedRecords=${this.maxRecords}), dropped ${loss.count} records (${kinds}), oldest first`;
      out.push(this.deps.encode('gap', gapRecord({ exchange: this.exchange, symbol, channel: 'kafka', fromUs: loss.fromTs, toUs: loss.toTs, reason }, nowUs)));
    }
    this.losses.clear();
    if (this.priority.length > 0) {
      const p = this.priority.splice(0, Math.max(0, n - out.length));
      for (const r of p) out.push(r);
    }
    const avail = this.items.length - this.head;
    const k = Math.min(avail, Math.max(0, n - out.length));
    for (let i = 0; i < k; i++) {
      out.push(this.items[this.head]!);
      this.items[this.head] = undefined as unknown as QueuedRecord;
      this.head++;
    }
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else this.compact();
    this.notifyRoom();
    return out;
  }

  get pendingLoss(): boolean {
    return this.losses.size > 0;
  }

  /** Resolves once the buffer is at most half full: REST backfills wait here instead of overflowing it. */
  waitForRoom(): Promise<void> {
    if (this.size <= this.maxRecords / 2) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  notifyRoom(): void {
    if (this.roomWaiters.length === 0 || this.size > this.maxRecords / 2) return;
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const f of w) f();
  }
}

