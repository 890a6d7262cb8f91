/**
 * Fault suite, scenario 3: the Kafka broker is killed with -9 under load and started again
 * 10 s later on the same port and data directory. The gateway buffers and resends, the sink
 * reconnects; every trade emitted in the window is stored once, and Kafka holds each once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, seconds, sleep } from '../harness/faults.ts';

describe('fault: Kafka broker kill -9 and restart (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('kill -9, 10 s down, restarted on the same port and data: every trade once', async () => {
    rig = await Rig.start({ scenario: 'broker-kill', tradesPerSecond: 100 });
    rig.startSink();
    rig.startGateway();
    await rig.warmUp();
    await sleep(5_000);
    await rig.killBroker();
    await sleep(10_000);
    const t0 = Date.now();
    await rig.restartBroker();
    rig.notes.brokerStartS = seconds(Date.now() - t0);
    void rig.recovery(Date.now(), 90_000);
    await sleep(10_000);
    const t = { scenario: 'broker-kill', database: 'postgres' as const, ...(await rig.account()), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);
});
