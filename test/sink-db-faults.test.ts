/**
 * Database faults under a running `tickflow sink` process (a PostgreSQL server of this file's
 * own, so it can be stopped): its connections killed from another session while it writes, the
 * server stopped for seconds, the sink started while the server is down. Each time the process
 * stays up, and every produced record ends up in the table exactly once (an insert trigger
 * counts every committed insert attempt, so a batch written twice would show).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../core/db.ts';
import { ensureTopics } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { freePort } from '../infra/process.ts';
import { startPostgresServer, type PostgresServer } from '../infra/postgres-server.ts';
import { testKafka, uniquePrefix, waitFor } from './harness/sink.ts';
import { countRows, exactlyOnceReport, killSink, prepareCountedDatabase, produceOverTime, sinkConfigFile, spawnSink, type SinkProcess } from './harness/sink-process.ts';

const kafka = testKafka();

describe('tickflow sink through database faults (a process of its own, a PostgreSQL server of the test)', () => {
  let server: PostgresServer;
  const procs: SinkProcess[] = [];
  const pools: Pool[] = [];
  beforeAll(async () => {
    server = await startPostgresServer();
  }, 60_000);
  afterAll(async () => {
    for (const p of procs) await killSink(p);
    for (const p of pools) await p.end().catch(() => undefined);
    await server?.stop();
  });

  async function scenario(tag: string, apiPort = 0) {
    const prefix = uniquePrefix(tag);
    const url = await server.createDatabase(prefix.toLowerCase());
    const pool = await prepareCountedDatabase(url);
    pools.push(pool);
    await ensureTopics(kafka, { topicPrefix: prefix, partitions: 3, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
    const { file, name } = sinkConfigFile(prefix, { apiPort });
    return { prefix, url, pool, file, name };
  }

  it("survives its connections being killed (pg_terminate_backend) again and again while it writes", async () => {
    const total = 16_000;
    const { prefix, url, pool, file, name } = await scenario('dbkill');
    const sink = spawnSink(file, url);
    procs.push(sink);
    const producing = produceOverTime(kafka, prefix, total, 400, 250);
    await waitFor('the sink to write', async () => (await countRows(pool)) > 0 || !sink.alive(), 60_000, 100);
    const killer = createPool(server.url, { max: 1 });
    pools.push(killer);
    await killer.query('select 1');
    // Rounds while records flow, each killing every connection the sink has at that moment.
    const rounds: number[] = [];
    let finished = false;
    void producing.done.then(() => (finished = true));
    while (!finished || rounds.filter((n) => n > 0).length < 8) {
      await sleep(300 + Math.round(Math.random() * 700));
      // Odd rounds: pg_terminate_backend (the backend says FATAL, then closes). Even rounds: the
      // backends are SIGKILLed, as the OOM killer would: the socket just closes under the query
      // in flight (the server then restarts its other backends too).
      // The SIGKILL waits (a little) for a backend in a transaction: a client checked out of the pool.
      let pids: number[] = [];
      for (let i = 0; i < 100; i++) {
        const r = await killer.query<{ pid: number; state: string }>("select pid, state from pg_stat_activity where application_name = 'tickflow-sink' and datname = $1", [prefix.toLowerCase()]);
        pids = r.rows.map((row) => row.pid);
        if (rounds.length % 2 === 0 || r.rows.some((row) => row.state !== 'idle')) break;
        await sleep(10);
      }
      if (rounds.length % 2 === 0) await killer.query('select pg_terminate_backend(pid) from unnest($1::int[]) pid', [pids]);
      else for (const pid of pids) process.kill(pid, 'SIGKILL');
      rounds.push(pids.length);
      if (!sink.alive()) break;
    }
    await producing.done;
    await waitFor('every record', async () => (await countRows(pool).catch(() => 0)) >= total || !sink.alive(), 90_000);
    await sleep(500);
    expect(rounds.filter((n) => n > 0).length, sink.output()).toBeGreaterThanOrEqual(8);
    expect(sink.alive(), sink.output()).toBe(true);
    expect(await exactlyOnceReport(pool, kafka, prefix, name, total)).toEqual({ rows: total, lost: 0, unexpected: 0, insertAttempts: total, doubled: 0, offsetsAtEnd: true });
    await killSink(sink, 'SIGTERM');
  }, 180_000);

  it('pauses while the server is stopped for seconds, and writes everything once it is back', async () => {
    const total = 12_000;
    const { prefix, url, pool, file, name } = await scenario('dbstop');
    const sink = spawnSink(file, url);
    procs.push(sink);
    const producing = produceOverTime(kafka, prefix, total, 400, 200);
    await waitFor('the sink to write', async () => (await countRows(pool)) > 0 || !sink.alive(), 60_000, 100);
    for (let round = 0; round < 2; round++) {
      await server.stop({ keepData: true });
      await sleep(4_000);
      expect(sink.alive(), sink.output()).toBe(true);
      await server.start();
      await sleep(1_500);
    }
    await producing.done;
    await waitFor('every record', async () => (await countRows(pool).catch(() => 0)) >= total || !sink.alive(), 90_000);
    await sleep(500);
    expect(sink.alive(), sink.output()).toBe(true);
    expect(await exactlyOnceReport(pool, kafka, prefix, name, total)).toEqual({ rows: total, lost: 0, unexpected: 0, insertAttempts: total, doubled: 0, offsetsAtEnd: true });
    await killSink(sink, 'SIGTERM');
  }, 180_000);

  it('started while the server is down, waits (health says so, password masked), then writes everything', async () => {
    const total = 6_000;
    const apiPort = await freePort();
    const { prefix, url, pool, file, name } = await scenario('dbdown', apiPort);
    const producing = produceOverTime(kafka, prefix, total, 500, 100);
    await server.stop({ keepData: true });
    const withPassword = url.replace('postgres@', 'postgres:s3cret-pw@');
    const sink = spawnSink(file, withPassword, { LOG_LEVEL: 'info' });
    procs.push(sink);
    const health = await waitFor(
      'the health endpoint while the database is down',
      async () => {
        const r = await fetch(`http://127.0.0.1:${apiPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
        return { code: r.status, body: (await r.json()) as { status: string; checks: Record<string, { ok: boolean; error?: string }> } };
      },
      30_000,
      200,
    );
    await sleep(5_000);
    expect(sink.alive(), sink.output()).toBe(true);
    expect(health.code).toBe(503);
    expect(health.body.status).toBe('starting');
    expect(sink.output()).toMatch(/waiting for the database/);
    expect(sink.output()).toContain('postgres:***@');
    expect(sink.output()).not.toContain('s3cret-pw');
    expect(await countRows(pool).catch(() => -1)).toBe(-1); // the server is down indeed

    await server.start();
    await producing.done;
    await waitFor('every record', async () => (await countRows(pool).catch(() => 0)) >= total || !sink.alive(), 90_000);
    await sleep(500);
    expect(sink.alive(), sink.output()).toBe(true);
    expect(await exactlyOnceReport(pool, kafka, prefix, name, total)).toEqual({ rows: total, lost: 0, unexpected: 0, insertAttempts: total, doubled: 0, offsetsAtEnd: true });
    const ok = await fetch(`http://127.0.0.1:${apiPort}/healthz`);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { status: string }).status).toBe('ok');
    await killSink(sink, 'SIGTERM');
  }, 180_000);
});
