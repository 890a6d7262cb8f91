/**
 * Fault suite, scenario 2: `tickflow sink` SIGKILLed in a loop (5 kills, each at a random point
 * 0.2–2 s after that instance started writing) and restarted at once, while the gateway keeps producing;
 * then left to catch up. The offsets stored with each batch make every replay a no-op: every
 * trade stored once, no batch written twice (the trigger counts committed insert attempts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, between, outcome, report, seconds, sleep } from '../harness/faults.ts';

const KILLS = 5;

describe('fault: sink SIGKILLed in a loop (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('5 kills at random points, then catching up: every trade once', async () => {
    rig = await Rig.start({ scenario: 'sink-kill-loop', tradesPerSecond: 100 });
    rig.startGateway();
    rig.startSink();
    await rig.warmUp();
    const count = () => rig!.withDb(async (p) => (await p.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n);
    // Each instance: once it writes (at most 30 s), killed 0.2–2 s later, mid-stream.
    const kills: { firstWriteS: number | null; killedAfterS: number }[] = [];
    for (let i = 0; i < KILLS; i++) {
      const sink = rig.sink!;
      const before = await count();
      let firstWrite: number | null = null;
      while (Date.now() - sink.startedAt < 30_000 && sink.alive()) {
        if ((await count()) > before) {
          firstWrite = Date.now();
          break;
        }
        await sleep(100);
      }
      await sleep(between(200, 2_000));
      await sink.stop('SIGKILL');
      kills.push({ firstWriteS: firstWrite && seconds(firstWrite - sink.startedAt), killedAfterS: seconds(Date.now() - sink.startedAt) });
      rig.startSink();
    }
    const restartedAt = rig.sink!.startedAt;
    const recovered = await rig.recovery(restartedAt, 90_000);
    rig.notes.kills = kills;
    rig.notes.killedWhileWriting = kills.filter((k) => k.firstWriteS !== null).length;
    const t = { scenario: 'sink-kill-loop', database: 'postgres' as const, ...(await rig.account()), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(recovered, why).not.toBeNull();
    // A crash loop still makes progress: every instance wrote before it was killed (within 30 s).
    expect(rig.notes.killedWhileWriting, why).toBe(KILLS);
  }, 300_000);
});
