import { sleep } from '../core/retry.ts';
import { writeDecision, type BatchingPolicy, type WriteTrigger } from './batching.ts';
import type { Chunk } from './writer.ts';

/**
 * The bounded queue between a connector's batch callback and its writer. The callback pushes
 * each slice of a fetched batch while it is still being decoded (in the decoding thread) and
 * returns, so kafkajs fetches the next batch meanwhile; the writer takes the chunks in queue
 * order once decoded, several per transaction. A group join or a stop drops what is queued
 * (the database's offsets say where to read again). One writer takes; one callback pushes.
 * When the writer writes is batching.ts's decision: at once when it is idle, everything that
 * queued up behind a transaction in flight, or (with a latency target) once the oldest waited.
 */

interface Entry {
  /** Undefined while it is being decoded. */
  chunk: Chunk | undefined;
  readonly ready: Promise<Chunk>;
  /** When it was queued (the clock's ms) and whether a transaction was in flight then. */
  readonly queuedAt: number;
  readonly duringWrite: boolean;
  /** Messages it holds (counted against maxMessages). */
  messages: number;
}

/** A transaction's chunks and why it was started now. */
export interface Take {
  readonly chunks: Chunk[];
  readonly trigger: WriteTrigger;
}

export class ChunkQueue {
  private readonly capacity: number;
  private readonly now: () => number;
  private readonly maxMessages: number;
  private entries: Entry[] = [];
  /** Bumped by drop(): a decoding failure of a dropped chunk is nobody's business. */
  private epoch = 0;
  private wake: (() => void) | undefined;
  private spaceWaiters: (() => void)[] = [];

  /** Set by the writer while a transaction is in flight: what is queued meanwhile is its backlog. */
  writing = false;

  private messages = 0;

  /**
   * `capacity`: chunks queued, decoded or still decoding; `maxMessages`: messages they hold (the
   * memory bound when fetches are small and many: a trickle fetched as soon as it is there).
   */
  constructor(capacity: number, now: () => number = () => performance.now(), maxMessages = Infinity) {
    this.capacity = capacity;
    this.now = now;
    this.maxMessages = maxMessages;
  }

  get length(): number {
    return this.entries.length;
  }

  get full(): boolean {
    return this.entries.length >= this.capacity || this.messages >= this.maxMessages;
  }

  /** Queues a chunk being decoded: the writer takes it once `ready` resolves, in queue order. */
  push(ready: Promise<Chunk>, messages = 0): void {
    const entry: Entry = { chunk: undefined, ready, queuedAt: this.now(), duringWrite: this.writing, messages };
    this.messages += messages;
    ready.then(
      (chunk) => {
        entry.chunk = chunk;
        this.wake?.();
      },
      () => this.wake?.(),
    );
    this.entries.push(entry);
  }

  /**
   * Resolves once the writer took a chunk, the queue was dropped, or `timeoutMs` passed, whichever
   * is first (the caller heartbeats in between and checks `full` again).
   */
  async waitForSpace(timeoutMs: number): Promise<void> {
    await Promise.race([new Promise<void>((r) => this.spaceWaiters.push(r)), sleep(timeoutMs)]);
  }

  /**
   * The writer's next transaction: decoded chunks from the head, in order, up to `maxItems`
   * messages; a chunk that does not fit whole is split and its rest stays first. Waits for the
   * head to be decoded. Resolves empty only when the queue was dropped meanwhile (the writer then
   * checks whether it stops); rejects with the head's decoding failure.
   */
  async take(maxItems: number): Promise<Chunk[]> {
    return (await this.takeBatch({ batchMaxRows: maxItems, lingerMs: 0 })).chunks;
  }

  /**
   * take() as the batching policy says (batching.ts): with a latency target, a small batch of an
   * idle writer waits (new chunks end the wait early) until its oldest chunk waited `lingerMs`,
   * it reaches batchMaxRows, or the queue is full.
   */
  async takeBatch(policy: BatchingPolicy): Promise<Take> {
    const epoch = this.epoch;
    for (;;) {
      if (epoch !== this.epoch) return { chunks: [], trigger: 'idle' };
      const head = this.entries[0];
      if (!head) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      if (!head.chunk) {
        try {
          await head.ready;
        } catch (e) {
          if (epoch === this.epoch) throw e;
        }
        continue;
      }
      let ready = 0;
      for (const e of this.entries) {
        if (!e.chunk) break;
        ready += e.chunk.items.length;
      }
      const decision = writeDecision({ readyMessages: ready, full: this.full, queuedDuringWrite: head.duringWrite, oldestAgeMs: this.now() - head.queuedAt }, policy);
      if ('write' in decision) return { chunks: this.takeDecoded(policy.batchMaxRows), trigger: decision.write };
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        this.wake = r;
        timer = setTimeout(r, Math.max(1, Math.ceil(decision.waitMs)));
      });
      clearTimeout(timer);
      this.wake = undefined;
    }
  }

  /** Drops everything queued (a group join, a stop) and wakes the writer and the callback. */
  drop(): void {
    this.epoch++;
    this.entries = [];
    this.messages = 0;
    this.wake?.();
    this.notifySpace();
  }

  private takeDecoded(maxItems: number): Chunk[] {
    const take: Chunk[] = [];
    let n = 0;
    while (this.entries.length > 0 && n < maxItems) {
      const head = this.entries[0]!.chunk;
      if (!head) break;
      const room = maxItems - n;
      if (head.items.length <= room) {
        this.messages -= this.entries.shift()!.messages;
        take.push(head);
        n += head.items.length;
      } else {
        const part = head.items.slice(0, room);
        take.push({ ...head, items: part, nextOffset: part[part.length - 1]!.offset + 1 });
        const rest = { ...head, items: head.items.slice(room) };
        // What is left waited behind this transaction: the next one takes it at once.
        const entry = this.entries[0]!;
        const left = Math.max(0, entry.messages - room);
        this.messages -= entry.messages - left;
        this.entries[0] = { ...entry, chunk: rest, ready: Promise.resolve(rest), duringWrite: true, messages: left };
        n += room;
      }
    }
    this.notifySpace();
    return take;
  }

  private notifySpace(): void {
    for (const w of this.spaceWaiters.splice(0)) w();
  }
}
