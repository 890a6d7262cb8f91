import { describe, expect, it } from 'vitest';
import { writeDecision, type QueueState } from './batching.ts';
import { ChunkQueue } from './chunk-queue.ts';
import { connectorSchema, resolveConnector } from './config.ts';
import { consumerConfig } from './connector.ts';
import type { DecodedBlock } from './decode.ts';
import type { KafkaMessage } from '../core/kafka.ts';
import type { Chunk } from './writer.ts';

const idle: QueueState = { readyMessages: 1, full: false, queuedDuringWrite: false, oldestAgeMs: 0 };
const defaults = { batchMaxRows: 5_000, lingerMs: 0 };

function chunk(from: number, to: number): Chunk {
  const items = Array.from({ length: to - from }, (_, i) => ({ offset: from + i, message: { offset: String(from + i) } as KafkaMessage, row: i }));
  return { topic: 't', partition: 0, items, block: { rows: items.length } as DecodedBlock, nextOffset: to, highWatermark: 1_000 };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('adaptive batching: when the writer writes', () => {
  it('writes a single record at once when idle, without waiting for batchMaxRows', () => {
    expect(writeDecision(idle, defaults)).toEqual({ write: 'idle' });
  });

  it('writes what queued behind a transaction in flight at once, even with a latency target', () => {
    expect(writeDecision({ ...idle, readyMessages: 40, queuedDuringWrite: true }, { batchMaxRows: 5_000, lingerMs: 50 })).toEqual({ write: 'backlog' });
  });

  it('writes a full batch or a full queue at once', () => {
    expect(writeDecision({ ...idle, readyMessages: 5_000 }, { batchMaxRows: 5_000, lingerMs: 50 })).toEqual({ write: 'full' });
    expect(writeDecision({ ...idle, full: true }, { batchMaxRows: 5_000, lingerMs: 50 })).toEqual({ write: 'full' });
  });

  it('with a latency target, an idle writer holds a small batch until its oldest record waited that long', () => {
    expect(writeDecision({ ...idle, oldestAgeMs: 20 }, { batchMaxRows: 5_000, lingerMs: 50 })).toEqual({ waitMs: 30 });
    expect(writeDecision({ ...idle, oldestAgeMs: 50 }, { batchMaxRows: 5_000, lingerMs: 50 })).toEqual({ write: 'linger' });
  });

  it('the default connector does not linger, and its fetches are answered as soon as a record is there', () => {
    const c = connectorSchema.parse({ name: 'x', table: 'trades' });
    expect(c.lingerMs).toBe(0);
    const consumer = consumerConfig('g', resolveConnector(c, 'tickflow'));
    // The broker must not hold a fetch for a batch to fill (it held it up to lingerMs for ~80 KB).
    expect(consumer.minBytes).toBe(1);
  });
});

describe('the chunk queue under the batching policy', () => {
  it('hands a single decoded record to an idle writer at once', async () => {
    const q = new ChunkQueue(4);
    const taken = q.takeBatch(defaults);
    q.push(Promise.resolve(chunk(0, 1)));
    const t = await taken;
    expect(t.trigger).toBe('idle');
    expect(t.chunks.map((c) => c.items.length)).toEqual([1]);
  });

  it('gives the writer everything queued while its transaction was in flight, in one take', async () => {
    const q = new ChunkQueue(4);
    q.writing = true;
    q.push(Promise.resolve(chunk(0, 2)));
    q.push(Promise.resolve(chunk(2, 5)));
    q.writing = false;
    await settle();
    const t = await q.takeBatch({ batchMaxRows: 5_000, lingerMs: 1_000 });
    expect(t.trigger).toBe('backlog');
    expect(t.chunks.map((c) => c.nextOffset)).toEqual([2, 5]);
  });

  it('with lingerMs, waits for company until the oldest chunk waited that long (on its clock)', async () => {
    let clock = 0;
    const q = new ChunkQueue(4, () => clock);
    q.push(Promise.resolve(chunk(0, 1)));
    let done: string | undefined;
    const taken = q.takeBatch({ batchMaxRows: 5_000, lingerMs: 40 }).then((t) => ((done = t.trigger), t));
    await settle();
    expect(done).toBeUndefined(); // 0 of 40 ms waited: held
    clock = 10;
    q.push(Promise.resolve(chunk(1, 3))); // company wakes it; still young
    await settle();
    expect(done).toBeUndefined();
    clock = 40;
    const t = await taken; // its timer (30 ms left at the last look) ends the wait
    expect(t.trigger).toBe('linger');
    expect(t.chunks.map((c) => c.nextOffset)).toEqual([1, 3]);
  });

  it('holds many small chunks (a trickle fetched at once) up to its message bound, and is full there', async () => {
    const q = new ChunkQueue(64, undefined, 10);
    for (let i = 0; i < 9; i++) q.push(Promise.resolve(chunk(i, i + 1)), 1);
    expect(q.full).toBe(false); // 9 chunks: a chunk count of 4 would have stopped the fetches at 4
    q.push(Promise.resolve(chunk(9, 12)), 3);
    expect(q.full).toBe(true); // 12 messages of 10
    await settle();
    const t = await q.takeBatch({ batchMaxRows: 11, lingerMs: 0 }); // splits the last chunk: 1 of its 3 left
    expect(t.chunks.map((c) => c.nextOffset)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    expect(q.full).toBe(false);
    expect((await q.takeBatch({ batchMaxRows: 11, lingerMs: 0 })).chunks.map((c) => [c.items[0]!.offset, c.nextOffset])).toEqual([[11, 12]]);
  });
});
