/**
 * How fast `tickflow sink` recovers, as separate processes on the PostgreSQL server, with the
 * default session timeout: a SIGKILLed sink restarted at once is writing again well before the
 * old 30 s default would have let it (its /healthz answers from the start meanwhile); a second
 * instance joining and leaving (cleanly, then killed): how long the surviving instance stalls;
 * rebalances are not logged at error level. Every record ends up in the table exactly once.
 * The figures are printed; the assertions are about order and about not waiting for a session
 * timeout of the old default, not about performance.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Pool } from '../core/db.ts';
import { ensureTopics } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { freePort } from '../infra/process.ts';
import { createServerDatabase } from './harness/db.ts';
import { testKafka, uniquePrefix, waitFor } from './harness/sink.ts';
import { countRows, exactlyOnceReport, killSink, prepareCountedDatabase, produceOverTime, sinkConfigFile, spawnSink, type SinkProcess } from './harness/sink-process.ts';

const kafka = testKafka();

async function setup(tag: string, apiPort = 0) {
  const prefix = uniquePrefix(tag);
  const url = await createServerDatabase(tag);
  const pool = await prepareCountedDatabase(url);
  await ensureTopics(kafka, { topicPrefix: prefix, partitions: 4, replicationFactor: 1, retentionMs: 3_600_000 }, ['trade']);
  const { file, name } = sinkConfigFile(prefix, { partitions: 4, apiPort });
  return { prefix, url, pool, file, name };
}

/**
 * Samples each partition's stored next offset every 50 ms. `stalls(from, to)`: the longest time
 * no partition moved (what a surviving instance's own partitions show), and the longest time some
 * one partition did not move (a dead instance's partitions, until they are taken over).
 */
function progressSampler(pool: Pool, connector: string) {
  const samples: { at: number; offsets: Map<number, number> }[] = [];
  let on = true;
  const done = (async () => {
    while (on) {
      const r = await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from sink_offsets where connector = $1', [connector]).catch(() => undefined);
      if (r) samples.push({ at: Date.now(), offsets: new Map(r.rows.map((row) => [row.partition, Number(row.next_offset)])) });
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await done;
    },
    stalls(from: number, to: number): { anyPartitionMs: number; everyPartitionMs: number } {
      const inWindow = samples.filter((s) => s.at >= from && s.at < to);
      const partitions = new Set(inWindow.flatMap((s) => [...s.offsets.keys()]));
      const longest = (moved: (a: Map<number, number>, b: Map<number, number>) => boolean) => {
        let best = 0;
        let since = from;
        for (let i = 1; i < inWindow.length; i++) {
          if (moved(inWindow[i - 1]!.offsets, inWindow[i]!.offsets)) {
            best = Math.max(best, inWindow[i]!.at - since);
            since = inWindow[i]!.at;
          }
        }
        return Math.max(best, to - since);
      };
      const everyPartitionMs = longest((a, b) => [...partitions].some((p) => (b.get(p) ?? 0) > (a.get(p) ?? 0)));
      const anyPartitionMs = Math.max(...[...partitions].map((p) => longest((a, b) => (b.get(p) ?? 0) > (a.get(p) ?? 0))));
      return { anyPartitionMs, everyPartitionMs };
    },
  };
}

describe('tickflow sink recovery (separate processes, default session timeout)', () => {
  const procs: SinkProcess[] = [];
  const pools: Pool[] = [];
  afterAll(async () => {
    for (const p of procs) await killSink(p);
    for (const p of pools) await p.end();
  });

  it('a SIGKILLed sink restarted at once answers /healthz from the start and writes again within seconds, three times', async () => {
    const total = 36_000;
    const apiPort = await freePort();
    const { prefix, url, pool, file, name } = await setup('restart', apiPort);
    pools.push(pool);
    const producing = produceOverTime(kafka, prefix, total, 300, 150);
    let sink = spawnSink(file, url);
    procs.push(sink);
    await waitFor('the first rows', async () => (await countRows(pool)) > 0 || !sink.alive(), 60_000, 100);
    const figures: { healthzMs: number; firstRowMs: number; healthStatus: string }[] = [];
    for (let round = 0; round < 3; round++) {
      await sleep(1_500);
      await killSink(sink);
      const rowsAtKill = await countRows(pool);
      sink = spawnSink(file, url);
      procs.push(sink);
      let healthzMs: number | undefined;
      let healthStatus = '';
      let firstRowMs: number | undefined;
      while (firstRowMs === undefined && Date.now() - sink.startedAt < 60_000 && sink.alive()) {
        if (healthzMs === undefined) {
          const h = await fetch(`http://127.0.0.1:${apiPort}/healthz`, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
          if (h) {
            healthzMs = Date.now() - sink.startedAt;
            healthStatus = ((await h.json()) as { status: string }).status;
          }
        }
        if ((await countRows(pool)) > rowsAtKill) firstRowMs = Date.now() - sink.startedAt;
        else await sleep(50);
      }
      figures.push({ healthzMs: healthzMs ?? -1, firstRowMs: firstRowMs ?? -1, healthStatus });
    }
    console.log('SIGKILL, restart at once (ms from the new process start):', JSON.stringify(figures));
    await producing.done;
    await waitFor('every record', async () => (await countRows(pool)) >= total, 90_000);
    await sleep(500);
    expect(sink.alive(), sink.output()).toBe(true);
    expect(await exactlyOnceReport(pool, kafka, prefix, name, total)).toEqual({ rows: total, lost: 0, unexpected: 0, insertAttempts: total, doubled: 0, offsetsAtEnd: true });
    for (const f of figures) {
      // /healthz answered before the first row, while starting (the group join was still on).
      expect(f.healthzMs).toBeGreaterThan(0);
      expect(f.healthzMs).toBeLessThan(f.firstRowMs);
      expect(f.healthStatus).toBe('starting');
      // Not waiting for the dead member's session to expire at the old 30 s default.
      expect(f.firstRowMs).toBeGreaterThan(0);
      expect(f.firstRowMs).toBeLessThan(20_000);
    }
    await killSink(sink, 'SIGTERM');
  }, 240_000);

  it('a second instance joining, leaving cleanly, joining and being killed: brief stalls, no rebalance at error level', async () => {
    const total = 40_000;
    const { prefix, url, pool, file, name } = await setup('rebal');
    pools.push(pool);
    const stable = spawnSink(file, url, { LOG_LEVEL: 'info' });
    procs.push(stable);
    await waitFor('the stable instance to start', () => /sink: \d+ connector/.test(stable.output()) || !stable.alive(), 60_000, 100);
    const producing = produceOverTime(kafka, prefix, total, 100, 100, 4);
    await waitFor('the first rows', async () => (await countRows(pool)) > 0, 60_000, 100);
    const sampler = progressSampler(pool, name);
    const phases: { what: string; stallMs: number; partitionStallMs: number }[] = [];
    const phase = async (what: string, act: () => Promise<void>, settleMs: number) => {
      const from = Date.now();
      await act();
      await sleep(settleMs);
      const s = sampler.stalls(from, Date.now());
      phases.push({ what, stallMs: s.everyPartitionMs, partitionStallMs: s.anyPartitionMs });
    };
    await phase('steady', () => Promise.resolve(), 3_000);
    let second = spawnSink(file, url);
    procs.push(second);
    const started = () => waitFor('the second instance to start', () => /sink: \d+ connector/.test(second.output()) || !second.alive(), 60_000, 50).then(() => undefined);
    await phase('second instance joins', started, 3_000);
    await phase('second instance stops (SIGTERM)', () => killSink(second, 'SIGTERM'), 3_000);
    second = spawnSink(file, url);
    procs.push(second);
    await phase('second instance joins again', started, 3_000);
    await phase('second instance SIGKILLed', () => killSink(second), 12_000);
    await sampler.stop();
    // The figures mean something only while records were still flowing.
    expect(producing.sent()).toBeLessThan(total);
    // stallMs: no partition moved (the surviving instance stalled too); partitionStallMs: the
    // longest any one partition did not move (e.g. the killed instance's, until taken over).
    console.log('rebalance stalls (ms):', JSON.stringify(phases));
    // The killed instance's partitions were taken over within the 12 s window (the old 30 s
    // session timeout default could not).
    expect(phases.at(-1)!.partitionStallMs).toBeLessThan(12_000);
    await producing.done;
    await waitFor('every record', async () => (await countRows(pool)) >= total, 90_000);
    await sleep(500);
    expect(stable.alive(), stable.output()).toBe(true);
    expect(await exactlyOnceReport(pool, kafka, prefix, name, total)).toEqual({ rows: total, lost: 0, unexpected: 0, insertAttempts: total, doubled: 0, offsetsAtEnd: true });
    const errorLines = stable.output().split('\n').filter((l) => l.includes('"level":50'));
    expect(errorLines).toEqual([]);
    // The rebalances did happen, and were logged below error level.
    expect(stable.output()).toMatch(/"level":30[^\n]*partitions assigned/);
    await killSink(stable, 'SIGTERM');
  }, 240_000);
});
