/**
 * Fault suite, scenario 1: the gateway process is SIGKILLed, then SIGTERMed, under load, and
 * started again each time after a pause. The sim keeps trading meanwhile; a restarted gateway
 * must refill from where the last process stopped (the exchange can: the sim keeps every trade),
 * so every trade emitted in the window is stored once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, sleep } from '../harness/faults.ts';

const DOWN_MS = 10_000;

describe('fault: gateway killed and restarted under load (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });

  it('SIGKILL, then SIGTERM, 10 s down each: every trade the exchange emitted is stored once', async () => {
    rig = await Rig.start({ scenario: 'gateway-restart', tradesPerSecond: 100 });
    rig.startSink();
    rig.startGateway();
    await rig.warmUp();
    await sleep(5_000);
    const exits: unknown[] = [];
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const e = await rig.gateway!.stop(signal);
      exits.push({ signal, exit: e.signal ?? e.code });
      await sleep(DOWN_MS);
      rig.startGateway();
      void rig.recovery(Date.now());
      await sleep(8_000);
    }
    rig.notes.exits = exits;
    const t = { scenario: 'gateway-restart', database: 'postgres' as const, ...(await rig.account()), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(verdict, why).toEqual(CLEAN);
    expect(t.recoverSeconds, why).not.toContain(null);
  }, 300_000);
});
