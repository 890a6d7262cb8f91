/**
 * The sink's adaptive batching end to end (real broker, PostgreSQL server): at a low rate a
 * record is written as soon as it is in Kafka, in a transaction of its own, without waiting for
 * batchMaxRows records or for a fetch to fill (sink/batching.ts). Asserted on what the sink did
 * (its transactions, why each started, the rows visible after each commit), never on timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../core/metrics.ts';
import { topicFor } from '../schemas/index.ts';
import type { SinkEvents } from '../sink/events.ts';
import { buildSink } from '../sink/index.ts';
import { openTestDb, type TestDb } from './harness/db.ts';
import { codecFor, makeTrades, produce, sinkTestConfig, testKafka, uniquePrefix } from './harness/sink.ts';

const kafka = testKafka();

describe('the sink at a low rate (PostgreSQL server)', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await openTestDb('postgres');
  });
  afterAll(async () => {
    await db?.close();
  });

  it('writes each record alone as soon as it is there: no wait for a batch to fill', async () => {
    const prefix = uniquePrefix('lowrate');
    const codec = codecFor(prefix);
    const name = `${prefix}-trades`;
    // The defaults a deployment has: batchMaxRows 5,000, lingerMs 0.
    const config = sinkTestConfig(prefix, { sink: { connectors: [{ name, table: 'trades', insertMode: 'insert' }] } });
    expect(config.sink.connectors![0]).toMatchObject({ batchMaxRows: 5_000, lingerMs: 0 });
    const sink = buildSink(config, { pool: db.pool, listen: false, schedule: false });
    const batches: SinkEvents['batch'][] = [];
    sink.events.on('batch', (e) => batches.push(e));
    const assigned = new Promise<void>((r) => {
      const off = sink.events.on('assigned', () => (off(), r()));
    });
    await sink.start();
    try {
      await assigned;
      const trades = makeTrades(5, { idPrefix: prefix });
      for (const [i, t] of trades.entries()) {
        // One record, then wait for the sink to commit it before the next: a trickle.
        const committed = new Promise<void>((r) => {
          const off = sink.events.on('commit', () => (off(), r()));
        });
        await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', [t]);
        await committed;
        // Visible once its transaction committed; the one before it did not wait for it.
        const r = await db.pool.query<{ n: number }>('select count(*)::int as n from trades where id like $1', [`${prefix}%`]);
        expect(r.rows[0]!.n).toBe(i + 1);
      }
      // One transaction per record, each started because the writer was idle (not because a
      // batch filled or a linger ran out), each holding that record alone.
      expect(batches.map((b) => [b.messages, b.trigger])).toEqual(trades.map(() => [1, 'idle']));
      const metrics = await registry.getSingleMetricAsString('tickflow_sink_batches_total');
      expect(metrics).toMatch(new RegExp(`tickflow_sink_batches_total\\{connector="${name}",trigger="idle"[^}]*\\} 5$`, 'm'));
    } finally {
      await sink.close();
    }
  });
});
