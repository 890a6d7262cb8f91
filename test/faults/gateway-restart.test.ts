/**
 * Fault suite, scenario 1: the gateway process is SIGKILLed, then SIGTERMed, under load, and
 * started again each time after a pause. The sim keeps trading meanwhile; a restarted gateway
 * must refill from where the last process stopped (the exchange can: the sim keeps every trade),
 * so every trade emitted in the window is stored once. Then an exchange that cannot refill that
 * far back (the sim keeps 12 s of trades, the gateway is down 25 s): what is lost must be exactly
 * what the gap records say is missing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CLEAN, Rig, outcome, report, sleep } from '../harness/faults.ts';

const DOWN_MS = 10_000;

describe('fault: gateway killed and restarted under load (PostgreSQL server)', () => {
  let rig: Rig | undefined;
  afterAll(async () => {
    await rig?.close();
  });
  const closeRig = async () => {
    await rig?.close();
    rig = undefined;
  };

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

  it('down longer than the exchange keeps trades: the loss equals what the gap records count', async () => {
    await closeRig();
    rig = await Rig.start({ scenario: 'gateway-restart-unrefillable', tradesPerSecond: 50, sim: { maxStoredTrades: 600 } });
    rig.startSink();
    rig.startGateway();
    await rig.warmUp();
    await sleep(3_000);
    await rig.gateway!.stop('SIGKILL');
    await sleep(25_000);
    rig.startGateway();
    await sleep(10_000);
    const t = { scenario: 'gateway-restart-unrefillable', database: 'postgres' as const, ...(await rig.account({ timeoutMs: 20_000 })), notes: rig.notes };
    report(t);
    const { verdict, why } = outcome(t, rig);
    expect(t.lost, why).toBeGreaterThan(0);
    expect({ ...verdict, lost: t.lost - t.gapMissing }, why).toEqual(CLEAN);
  }, 300_000);
});
