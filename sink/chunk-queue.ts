import { sleep } from '../core/retry.ts';
import type { Chunk } from './writer.ts';

/**
 * The bounded queue between a connector's batch callback and its writer. The callback pushes
 * each slice of a fetched batch while it is still being decoded (in the decoding thread) and
 * returns, so kafkajs fetches the next batch meanwhile; the writer takes the chunks in queue
 * order once decoded, several per transaction. A group join or a stop drops what is queued
 * (the database's offsets say where to read again). One writer takes; one callback pushes.
 */

interface Entry {
  /** Undefined while it is being decoded. */
  chunk: Chunk | undefined;
  readonly ready: Promise<Chunk>;
}

export class ChunkQueue {
  private entries: Entry[] = [];
  /** Bumped by drop(): a decoding failure of a dropped chunk is nobody's business. */
  private epoch = 0;
  private wake: (() => void) | undefined;
  private spaceWaiters: (() => void)[] = [];

  /** `capacity`: chunks queued, decoded or still decoding. */
  constructor(private readonly capacity: number) {}

  get length(): number {
    return this.entries.length;
  }

  get full(): boolean {
    return this.entries.length >= this.capacity;
  }

  /** Queues a chunk being decoded: the writer takes it once `ready` resolves, in queue order. */
  push(ready: Promise<Chunk>): void {
    const entry: Entry = { chunk: undefined, ready };
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
    const epoch = this.epoch;
    for (;;) {
      if (epoch !== this.epoch) return [];
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
      return this.takeDecoded(maxItems);
    }
  }

  /** Drops everything queued (a group join, a stop) and wakes the writer and the callback. */
  drop(): void {
    this.epoch++;
    this.entries = [];
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
        this.entries.shift();
        take.push(head);
        n += head.items.length;
      } else {
        const part = head.items.slice(0, room);
        take.push({ ...head, items: part, nextOffset: part[part.length - 1]!.offset + 1 });
        const rest = { ...head, items: head.items.slice(room) };
        this.entries[0] = { chunk: rest, ready: Promise.resolve(rest) };
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
