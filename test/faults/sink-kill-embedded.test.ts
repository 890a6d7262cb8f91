/**
 * Fault suite, scenario 2 on the embedded TimescaleDB: the same sink kill loop against the
 * server `tickflow infra up` leaves running (PGlite + TimescaleDB in its own process, one client
 * at a time). The harness reads the database only while no sink is connected: the window's start
 * after the first kill, the counts after the last sink stopped; recovery is read from the sink's
 * status API (stored offsets reaching the topic's end as of the last restart).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, between, outcome, report, sleep } from '../harness/faults.ts';

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
    // Writing: the connector's status counts rows.
    const url = await rig.sinkUrl();
    for (let i = 0; ; i++) {
      const s = await fetch(`${url}/connectors/trades/status`).then((r) => r.json() as Promise<{ rowsWritten?: number }>).catch(() => ({ rowsWritten: 0 }));
      if ((s.rowsWritten ?? 0) > 0) break;
      if (i > 480) throw new Error(`the sink wrote nothing in 120 s\n${rig.sink!.tail()}`);
      await sleep(250);
    }
    const kills: { afterMs: number }[] = [];
    for (let i = 0; i < KILLS; i++) {
      const afterMs = between(1_000, 4_000);
      await sleep(Math.max(0, rig.sink!.startedAt + afterMs - Date.now()));
      await rig.sink!.stop('SIGKILL');
      kills.push({ afterMs });
      if (i === 0) await rig.fixWindowStart(); // the one client is free now
      rig.startSink();
    }
    void rig.recoveryBySinkStatus(rig.sinkUrl(), rig.sink!.startedAt, 90_000);
    await sleep(3_000);
    const end = rig.lastIds();
    await sleep(3_000); // the gateway has produced them
    const caughtUp = await rig.waitSinkCaughtUp(await rig.topicEnds(), 90_000);
    await rig.sink!.stop('SIGTERM');
    rig.notes.kills = kills;
    rig.notes.caughtUp = caughtUp;
    const t = { scenario: 'sink-kill-loop', database: 'embedded' as const, ...(await rig.count(end)), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);
});
