/**
 * Fault suite, scenario 4 on the embedded TimescaleDB: the server `tickflow infra up` runs (its
 * own process, one client at a time) is stopped under a writing sink and started again 5 s later
 * on the same data dir and port. The sink must wait and resume: every trade stored once. The
 * harness reads the database only once the sink has stopped; recovery is read from the sink's
 * status API (stored offsets reaching the topic's end as of the restart).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, seconds, sleep } from '../harness/faults.ts';

describe('fault: embedded TimescaleDB server restarted under the sink (`tickflow infra up`)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('stopped for 5 s and started again: every trade once', async () => {
    rig = await Rig.start({ scenario: 'database-restart', database: 'embedded', tradesPerSecond: 50 });
    rig.startGateway();
    // The window's start: trades the gateway produced before the sink's first write are in it.
    rig.startSink();
    const url = await rig.sinkUrl();
    for (let i = 0; ; i++) {
      const s = await fetch(`${url}/connectors/trades/status`).then((r) => r.json() as Promise<{ rowsWritten?: number }>).catch(() => ({ rowsWritten: 0 }));
      if ((s.rowsWritten ?? 0) > 0) break;
      if (i > 480) throw new Error(`the sink wrote nothing in 120 s\n${rig.sink!.tail()}`);
      await sleep(250);
    }
    await sleep(3_000);
    const t0 = Date.now();
    await rig.restartEmbedded(5_000);
    rig.notes.serverRestartS = seconds(Date.now() - t0);
    const recovered = rig.recoveryBySinkStatus(rig.sinkUrl(), Date.now(), 90_000);
    await sleep(8_000);
    const end = rig.lastIds();
    await sleep(3_000);
    rig.notes.caughtUp = await rig.waitSinkCaughtUp(await rig.topicEnds(), 60_000);
    // Recovery is read from the sink's status: let that reading finish while the sink still answers.
    await recovered;
    rig.notes.sinkAlive = rig.sink!.alive();
    await rig.sink!.stop('SIGTERM');
    await rig.fixWindowStart();
    const t = { scenario: 'database-restart', database: 'embedded' as const, ...(await rig.count(end)), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);
});
