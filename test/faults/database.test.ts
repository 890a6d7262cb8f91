/**
 * Fault suite, scenario 4: the database under the sink, on a PostgreSQL server of the test's own.
 * A: the server stopped (fast shutdown) for 8 s and started again; B: the sink's connections
 * killed with pg_terminate_backend three times, 2 s apart, while it writes; C: the sink started
 * while the server is down (it must wait), the server started 6 s later. A sink that exits is a
 * crash (the harness restarts it, as a supervisor would, so the figures show what it cost).
 * Every trade emitted in the window is stored once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, sleep } from '../harness/faults.ts';

describe('fault: database stopped, connections killed, sink started while it is down (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('every trade once through three database outages', async () => {
    rig = await Rig.start({ scenario: 'database', tradesPerSecond: 100 });
    rig.startSink();
    rig.startGateway();
    await rig.warmUp();
    await sleep(4_000);

    // A: stopped and started.
    await rig.stopDb();
    await sleep(8_000);
    await rig.startDb();
    await rig.recovery(Date.now());

    // B: connections killed while writing.
    const killed: number[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(2_000);
      killed.push(await rig.killConnections());
    }
    await rig.recovery(Date.now());
    rig.notes.connectionsKilled = killed;

    // C: a sink started while the database is down waits for it.
    await rig.sink!.stop('SIGTERM');
    await rig.stopDb();
    rig.startSink();
    await sleep(6_000);
    rig.notes.sinkAliveWhileDbDown = rig.sink!.alive();
    await rig.startDb();
    void rig.recovery(Date.now());
    await sleep(5_000);

    const t = { scenario: 'database', database: 'postgres' as const, ...(await rig.account()), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);
});
