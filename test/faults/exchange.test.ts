/**
 * Fault suite, scenario 5: the exchange misbehaves. A: every websocket dropped 4 times, 3 s
 * apart; B: REST refused (503) for 25 s, the trade streams dropped and refused for the first 3 s
 * of it, so the refills after the reconnect fail for ~20 s, until REST is back; C: the gateway restarted while REST
 * is refused (15 s): it cannot load the markets until the exchange answers. The sim keeps every
 * trade, so once REST answers everything can be refilled: every trade stored once.
 * Then, in a new window, an exchange that refuses the refill outright (REST answers 401 for 10 s
 * while the trade streams come back after 2 s): the trades lost are exactly those the gap
 * records say are missing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, sleep } from '../harness/faults.ts';

describe('fault: exchange websockets dropped, REST refused (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('every trade once through websocket drops and REST outages', async () => {
    rig = await Rig.start({ scenario: 'exchange', tradesPerSecond: 100 });
    rig.startSink();
    rig.startGateway();
    await rig.warmUp();
    await sleep(3_000);

    // A: websockets dropped repeatedly.
    const dropped: number[] = [];
    for (let i = 0; i < 4; i++) {
      dropped.push(rig.sim.dropConnections());
      await sleep(3_000);
    }
    rig.notes.socketsDropped = dropped;
    await rig.recovery(Date.now() - 3_000);

    // B: REST refused while the trade streams are down: refills fail until it answers.
    rig.sim.refuseService(25_000);
    rig.sim.pauseStream('trades', 3_000);
    await sleep(25_000);
    await rig.recovery(Date.now());

    // C: the gateway restarted while REST is refused.
    await rig.gateway!.stop('SIGTERM');
    rig.sim.refuseService(15_000);
    rig.startGateway();
    await sleep(15_000);
    void rig.recovery(Date.now());
    await sleep(5_000);

    const t = { scenario: 'exchange', database: 'postgres' as const, ...(await rig.account()), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);

  it('a refill the exchange refuses outright: the loss equals what the gap records count', async () => {
    if (!rig) throw new Error('the first scenario did not start');
    await sleep(2_000);
    rig.newWindow();
    await sleep(3_000);
    rig.sim.refuseService(10_000, 401);
    rig.sim.pauseStream('trades', 2_000);
    await sleep(15_000);
    const t = { scenario: 'exchange-refill-refused', database: 'postgres' as const, ...(await rig.account({ timeoutMs: 20_000, settleMs: 5_000 })), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(t.lost, why).toBeGreaterThan(0);
    expect({ ...verdict, lost: t.lost - t.gapMissing }, why).toEqual(CLEAN);
  }, 120_000);
});
