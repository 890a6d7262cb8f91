/**
 * A database outage under load: the PostgreSQL server (a server of this test's own) is stopped
 * while records flow. The sink stops writing and pauses its consumer, retries with backoff,
 * and resumes when the server is back; every record ends up in the table, once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../core/db.ts';
import { sleep } from '../core/retry.ts';
import { startPostgresServer, type PostgresServer } from '../infra/postgres-server.ts';
import { topicFor } from '../schemas/index.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { codecFor, makeTrades, produce, sinkTestConfig, testKafka, uniquePrefix, waitFor } from './harness/sink.ts';

const kafka = testKafka();

describe('the sink through a database outage', () => {
  let server: PostgresServer | undefined;
  let sink: Sink | undefined;
  let pool: Pool | undefined;
  afterAll(async () => {
    await sink?.close();
    await pool?.end();
    await server?.stop();
  });

  it('pauses while the PostgreSQL server is down, resumes when it is back, loses nothing', async () => {
    server = await startPostgresServer();
    const prefix = uniquePrefix('outage');
    const name = `${prefix}-trades`;
    const config = sinkTestConfig(prefix, {
      database: { url: server.url, connectTimeoutMs: 2_000 },
      sink: { connectors: [{ name, table: 'trades', insertMode: 'insert', batchMaxRows: 500, lingerMs: 20 }] },
    });
    sink = buildSink(config, { listen: false, schedule: false });
    const timeline: { event: 'batch' | 'retry'; at: number }[] = [];
    sink.events.on('batch', () => timeline.push({ event: 'batch', at: Date.now() }));
    sink.events.on('retry', () => timeline.push({ event: 'retry', at: Date.now() }));
    await sink.start();
    const reader = createPool(server.url, { max: 1 });
    pool = reader;
    const count = async () => (await reader.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;

    const total = 15_000;
    const trades = makeTrades(total, { idPrefix: `${prefix}-` });
    const codec = codecFor(prefix);
    let sent = 0;
    const producing = (async () => {
      for (; sent < total; sent += 500) {
        await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(sent, sent + 500));
        await sleep(200);
      }
    })();

    await waitFor('the first rows', async () => (await count()) >= 2_000);
    await server.stop({ keepData: true });
    const downAt = Date.now();
    await sleep(6_000);
    const sentDuringOutage = sent;
    const status = sink.connectors.get(name).status();
    await server.start();
    const upAt = Date.now();

    await producing;
    await waitFor('every record after the outage', async () => (await count().catch(() => 0)) >= total, 60_000);
    await sleep(300);

    const ids = (await reader.query<{ id: string }>('select id from trades order by id')).rows.map((r) => r.id);
    expect(ids).toEqual(trades.map((t) => t.id).sort());
    // During the outage: retries, no committed batch; records kept arriving in Kafka meanwhile.
    expect(status.retries).toBeGreaterThan(0);
    expect(status.lastError).toMatch(/ECONNREFUSED|terminat|shut|connect/i);
    expect(timeline.some((e) => e.event === 'retry' && e.at >= downAt && e.at < upAt)).toBe(true);
    expect(timeline.filter((e) => e.event === 'batch' && e.at > downAt + 500 && e.at < upAt)).toEqual([]);
    expect(sentDuringOutage).toBeGreaterThan(total / 3);
    // Afterwards it writes again, and the offsets stored cover every record.
    expect(timeline.some((e) => e.event === 'batch' && e.at > upAt)).toBe(true);
    const stored = await reader.query<{ n: number }>('select sum(next_offset)::int as n from sink_offsets where connector = $1', [name]);
    expect(stored.rows[0]!.n).toBe(total);
    expect(sink.connectors.get(name).currentState).toBe('RUNNING');
  }, 120_000);
});
