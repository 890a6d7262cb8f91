/**
 * Fault suite, scenario 2 on the embedded TimescaleDB: the same sink kill loop (each instance
 * killed 0.2–2 s after its status first counts rows written) against the
 * server `tickflow infra up` leaves running (PGlite + TimescaleDB in its own process, one client
 * at a time). The harness reads the database only while no sink is connected: the window's start
 * after the first kill, the counts after the last sink stopped; recovery is read from the sink's
 * status API (stored offsets reaching the topic's end as of the last restart).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, between, outcome, report, seconds, sleep } from '../harness/faults.ts';

const KILLS = 5;

describe('fault: sink SIGKILLed in a loop (embedded TimescaleDB of `tickflow infra up`)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('5 kills at random points, then catching up: every trade once', async () => {
    rig = await Rig.start({ scenario: 'sink-kill-loop', database: 'embedded', tradesPerSecond: 50 });
    rig.startGateway();
    rig.startSink();
    // Each instance: once its status counts rows written (at most 30 s), killed 0.2–2 s later.
    const kills: { firstWriteS: number | null; killedAfterS: number }[] = [];
    for (let i = 0; i < KILLS; i++) {
      const sink = rig.sink!;
      const url = await rig.sinkUrl(sink).catch(() => undefined);
      let firstWrite: number | null = null;
      while (url && Date.now() - sink.startedAt < 30_000 && sink.alive()) {
        const s = await fetch(`${url}/connectors/trades/status`, { signal: AbortSignal.timeout(2_000) })
          .then((r) => r.json() as Promise<{ rowsWritten?: number }>)
          .catch(() => ({ rowsWritten: 0 }));
        if ((s.rowsWritten ?? 0) > 0) {
          firstWrite = Date.now();
          break;
        }
        await sleep(100);
      }
      await sleep(between(200, 2_000));
      await sink.stop('SIGKILL');
      kills.push({ firstWriteS: firstWrite && seconds(firstWrite - sink.startedAt), killedAfterS: seconds(Date.now() - sink.startedAt) });
      if (i === 0) await rig.fixWindowStart(); // the one client is free now
      rig.startSink();
    }
    const recovered = rig.recoveryBySinkStatus(rig.sinkUrl(), rig.sink!.startedAt, 90_000);
    await sleep(3_000);
    const end = rig.lastIds();
    await sleep(3_000); // the gateway has produced them
    const caughtUp = await rig.waitSinkCaughtUp(await rig.topicEnds(), 90_000);
    // Recovery is read from the sink's status: let that reading finish while the sink still answers.
    await recovered;
    await rig.sink!.stop('SIGTERM');
    rig.notes.kills = kills;
    rig.notes.killedWhileWriting = kills.filter((k) => k.firstWriteS !== null).length;
    rig.notes.caughtUp = caughtUp;
    const t = { scenario: 'sink-kill-loop', database: 'embedded' as const, ...(await rig.count(end)), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
    // A crash loop still makes progress: every instance wrote before it was killed (within 30 s).
    expect(rig.notes.killedWhileWriting, why).toBe(KILLS);
  }, 300_000);
});
