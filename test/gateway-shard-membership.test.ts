/**
 * Shard groups (gateways/shard.ts) on the real broker, each member its own process: three
 * members hold every slot exactly once; one killed with SIGKILL loses its slots to the others once
 * its session times out; a fourth that joins takes a fair share, the others keeping the rest; one
 * that stalls past its session timeout serves nothing once it runs again, until it has rejoined.
 * Every member prints when it starts and stops serving each slot; laid side by side, no slot is
 * ever served by two processes at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { sleep, uniquePrefix } from './harness/gateway.ts';


const REPO = path.resolve(import.meta.dirname, '..');
const SLOTS = 64;
const SESSION_MS = 6_000;

interface Member {
  readonly name: string;
  readonly child: ChildProcess;
  /** Each report: when, and the slots served from then on. */
  readonly reports: Array<{ t: number; slots: Set<number> }>;
  endedAt?: number;
  out: string;
}

describe('shard group membership (real broker, member processes)', () => {
  const members: Member[] = [];
  const prefix = uniquePrefix('shard');
  const group = prefix;
  afterAll(() => {
    for (const m of members) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
  });

  const start = (name: string): Member => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/harness/shard-member.ts')], {
      cwd: REPO,
      env: { ...process.env, KAFKA_BROKERS: inject('kafkaBrokers').join(','), SHARD_PREFIX: prefix, SHARD_GROUP: group, SHARD_SLOTS: String(SLOTS), SHARD_SESSION_MS: String(SESSION_MS), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const m: Member = { name, child, reports: [], out: '' };
    child.stdout!.on('data', (d: Buffer) => {
      m.out += d.toString();
      for (const line of d.toString().split('\n')) {
        const r = /^SERVING (\d+) (\[.*\])$/.exec(line);
        if (r) m.reports.push({ t: Number(r[1]), slots: new Set(JSON.parse(r[2]!) as number[]) });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (m.out += d.toString()));
    child.on('exit', () => (m.endedAt ??= Date.now()));
    members.push(m);
    return m;
  };
  const live = () => members.filter((m) => m.endedAt === undefined);
  const current = (m: Member) => m.reports.at(-1)?.slots ?? new Set<number>();
  /** Every slot held by exactly one live member. */
  const exactlyOnce = () => {
    const count = new Map<number, number>();
    for (const m of live()) for (const s of current(m)) count.set(s, (count.get(s) ?? 0) + 1);
    return count.size === SLOTS && [...count.values()].every((n) => n === 1);
  };
  const until = async (pred: () => boolean, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${members.map((m) => `${m.name} ${[...current(m)].length} slots${m.endedAt ? ' (ended)' : ''}\n${m.out.slice(-1500)}`).join('\n')}`);
      await sleep(100);
    }
  };
  /** The longest time any slot was served by two members at once, from their reports (ms). */
  const maxOverlapMs = () => {
    const intervals = new Map<number, Array<{ who: string; from: number; to: number }>>();
    for (const m of members) {
      m.reports.forEach((r, i) => {
        const to = m.reports[i + 1]?.t ?? m.endedAt ?? Date.now();
        for (const s of r.slots) {
          const list = intervals.get(s) ?? [];
          const prev = list.at(-1);
          if (prev && prev.who === m.name && prev.to === r.t) prev.to = to;
          else list.push({ who: m.name, from: r.t, to });
          intervals.set(s, list);
        }
      });
    }
    let worst = 0;
    for (const list of intervals.values())
      for (const a of list) for (const b of list) if (a.who !== b.who) worst = Math.max(worst, Math.min(a.to, b.to) - Math.max(a.from, b.from));
    return worst;
  };

  it('3 members hold every slot once; a killed one\'s slots move after the session timeout; a joiner takes a fair share', async () => {
    const [a, b, c] = [start('a'), start('b'), start('c')];
    await until(() => exactlyOnce() && [a, b, c].every((m) => current(m).size >= 21), 90_000, 'three members holding all slots');
    expect([a, b, c].map((m) => current(m).size).sort()).toEqual([21, 21, 22]);
    const before = { a: new Set(current(a)), b: new Set(current(b)) };

    // kill -9: nobody serves c's slots until its session times out, then a and b take them.
    const cSlots = [...current(c)];
    c.child.kill('SIGKILL');
    const killedAt = Date.now();
    c.endedAt = killedAt;
    await until(() => exactlyOnce(), 4 * SESSION_MS, 'the killed member\'s slots to move');
    const movedAfterMs = Math.max(...[a, b].map((m) => m.reports.at(-1)!.t)) - killedAt;
    // a and b kept what they had (sticky) and split c's.
    for (const [m, had] of [[a, before.a], [b, before.b]] as const) for (const s of had) expect(current(m).has(s)).toBe(true);
    expect(cSlots.every((s) => current(a).has(s) || current(b).has(s))).toBe(true);
    expect([a, b].map((m) => current(m).size).sort()).toEqual([32, 32]);

    // A joiner: 16 each; the others give up only what the joiner gets.
    const kept = { a: new Set(current(a)), b: new Set(current(b)) };
    const d = start('d');
    const e = start('e');
    await until(() => exactlyOnce() && [a, b, d, e].every((m) => current(m).size === 16), 60_000, 'the joiners\' share');
    for (const [m, had] of [[a, kept.a], [b, kept.b]] as const) for (const s of current(m)) expect(had.has(s)).toBe(true);

    // SIGTERM leaves the group: its slots move at once (no session timeout).
    const leftAt = Date.now();
    d.child.kill('SIGTERM');
    await until(() => d.endedAt !== undefined && exactlyOnce(), 30_000, 'the leaver\'s slots to move');
    const leftMovedMs = Math.max(...[a, b, e].map((m) => m.reports.at(-1)!.t)) - leftAt;

    // A member that stalls past its session timeout (SIGSTOP: as a GC pause, a lost network would):
    // the others take its slots; once it runs again it serves nothing before it has rejoined.
    const eHad = [...current(e)];
    e.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await until(() => eHad.every((s) => current(a).has(s) || current(b).has(s)), 4 * SESSION_MS, 'the stalled member\'s slots to move');
    await sleep(2_000);
    const reportsBefore = e.reports.length;
    e.child.kill('SIGCONT');
    const resumedAt = Date.now();
    await until(() => e.reports.length > reportsBefore, 10_000, 'the stalled member to report after it runs again');
    const fenced = e.reports[reportsBefore]!;
    expect([...fenced.slots], 'its first report after the stall').toEqual([]);
    expect(fenced.t - resumedAt).toBeLessThan(1_000);
    // A stopped process serves nothing: its timeline ends at the stop, until it reports again.
    e.reports.splice(reportsBefore, 0, { t: stoppedAt, slots: new Set() });
    await until(() => exactlyOnce() && current(e).size > 0, 30_000, 'the stalled member to rejoin');

    const overlap = maxOverlapMs();
    console.log(`SHARD membership: killed member's slots moved after ${movedAfterMs} ms (session timeout ${SESSION_MS} ms); a SIGTERMed member's after ${leftMovedMs} ms; a stalled member stopped serving ${fenced.t - resumedAt} ms after it ran again; longest double service ${overlap} ms`);
    expect(movedAfterMs).toBeGreaterThanOrEqual(SESSION_MS - 1_000);
    expect(leftMovedMs).toBeLessThan(SESSION_MS);
    expect(overlap).toBe(0);
  }, 240_000);
});
