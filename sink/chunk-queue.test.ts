import { describe, expect, it } from 'vitest';
import type { KafkaMessage } from '../core/kafka.ts';
import { ChunkQueue } from './chunk-queue.ts';
import type { DecodedBlock } from './decode.ts';
import type { Chunk } from './writer.ts';

/** A decoded chunk of `topic`[`partition`] holding offsets [from, to). */
function chunk(from: number, to: number, partition = 0, topic = 't'): Chunk {
  const items = Array.from({ length: to - from }, (_, i) => ({ offset: from + i, message: { offset: String(from + i) } as KafkaMessage, row: i }));
  return { topic, partition, items, block: { rows: items.length } as DecodedBlock, nextOffset: to, highWatermark: 1_000 };
}

/** A chunk still decoding: `decoded` resolves it, `failed` rejects it. */
function decoding(c: Chunk) {
  let decoded!: () => void;
  let failed!: (e: Error) => void;
  const ready = new Promise<Chunk>((resolve, reject) => {
    decoded = () => resolve(c);
    failed = reject;
  });
  return { ready, decoded, failed };
}

/** What the writer sees of a transaction: per chunk, partition and offsets. */
const offsets = (take: readonly Chunk[]) => take.map((c) => [c.partition, c.items[0]?.offset, c.nextOffset]);

/** Settles pending promise callbacks. */
const settle = () => new Promise((r) => setImmediate(r));

describe('the chunk queue between the batch callback and the writer', () => {
  it('hands chunks to the writer in queue order, whatever order they finish decoding in', async () => {
    const q = new ChunkQueue(4);
    const a = decoding(chunk(0, 3));
    const b = decoding(chunk(0, 2, 1));
    q.push(a.ready);
    q.push(b.ready);
    const taken = q.take(100);
    b.decoded();
    await settle();
    let done = false;
    void taken.then(() => (done = true));
    await settle();
    expect(done).toBe(false); // the second chunk is decoded, the first is not: nothing yet
    a.decoded();
    expect(offsets(await taken)).toEqual([
      [0, 0, 3],
      [1, 0, 2],
    ]);
    expect(q.length).toBe(0);
  });

  it('fills a transaction up to maxItems, splitting the chunk that does not fit; its rest comes next', async () => {
    const q = new ChunkQueue(4);
    q.push(Promise.resolve(chunk(0, 4)));
    q.push(Promise.resolve(chunk(10, 16)));
    await settle();
    expect(offsets(await q.take(7))).toEqual([
      [0, 0, 4],
      [0, 10, 13],
    ]);
    expect(offsets(await q.take(7))).toEqual([[0, 13, 16]]);
  });

  it('waits for a chunk when empty; a drop (rebalance, stop) wakes the writer with nothing', async () => {
    const q = new ChunkQueue(4);
    const first = q.take(10);
    q.push(Promise.resolve(chunk(5, 6)));
    expect(offsets(await first)).toEqual([[0, 5, 6]]);
    const second = q.take(10);
    q.drop();
    expect(await second).toEqual([]);
  });

  it('rejects with the decoding failure of the oldest chunk, but not of a chunk dropped meanwhile', async () => {
    const q = new ChunkQueue(4);
    const bad = decoding(chunk(0, 1));
    q.push(bad.ready);
    const taken = q.take(10);
    bad.failed(new Error('not Avro'));
    await expect(taken).rejects.toThrow('not Avro');

    const q2 = new ChunkQueue(4);
    const stale = decoding(chunk(0, 1));
    q2.push(stale.ready);
    const waiting = q2.take(10);
    q2.drop();
    stale.failed(new Error('chunk dropped'));
    expect(await waiting).toEqual([]);
    q2.push(Promise.resolve(chunk(7, 8)));
    expect(offsets(await q2.take(10))).toEqual([[0, 7, 8]]);
  });

  it('is full at its capacity; taking or dropping makes room and wakes the callback waiting for it', async () => {
    const q = new ChunkQueue(2);
    q.push(Promise.resolve(chunk(0, 1)));
    q.push(Promise.resolve(chunk(1, 2)));
    expect(q.full).toBe(true);
    let room = false;
    const space = q.waitForSpace(60_000).then(() => (room = true));
    await settle();
    expect(room).toBe(false);
    await q.take(1);
    await space;
    expect(q.full).toBe(false);

    q.push(Promise.resolve(chunk(2, 3)));
    expect(q.full).toBe(true);
    const space2 = q.waitForSpace(60_000);
    q.drop();
    await space2;
    expect(q.length).toBe(0);
  });
});
