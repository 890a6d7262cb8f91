import { describe, expect, it, vi } from 'vitest';
import { GatewayEvents } from './events.ts';
import { GapTracker } from './gaps.ts';
import type { Outbox } from './outbox.ts';
import { openRestartGap } from './positions.ts';
import { fnv1a, parseShardArg, slotOf, staticShard, stickyAssign } from './shard.ts';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const owners = (a: Map<string, number[]>) => {
  const by = new Map<number, string[]>();
  for (const [m, slots] of a) for (const s of slots) by.set(s, [...(by.get(s) ?? []), m]);
  return by;
};

describe('shard slots', () => {
  it('FNV-1a is the published one and slots are stable', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect(fnv1a('foobar')).toBe(0xbf9cf968);
    expect(slotOf('sim', 'BTC/USDT', 64)).toBe(fnv1a('sim:BTC/USDT') % 64);
  });

  it('--shard i/n: the n processes split every instrument, each to one', () => {
    const symbols = range(500).map((i) => `S${i}/USDT`);
    const shards = range(3).map((i) => staticShard(i, 3));
    for (const s of symbols) expect(shards.filter((x) => x.owns('binance', s)).length).toBe(1);
    expect(() => parseShardArg('3/3')).toThrow(/0 <= i < n/);
    expect(parseShardArg('1/3')).toEqual({ index: 1, count: 3 });
  });
});

describe('stickyAssign', () => {
  it('every slot to exactly one member, shares within one of each other', () => {
    const a = stickyAssign([{ memberId: 'b', held: [] }, { memberId: 'a', held: [] }, { memberId: 'c', held: [] }], range(64));
    const by = owners(a);
    expect(by.size).toBe(64);
    expect([...by.values()].every((m) => m.length === 1)).toBe(true);
    expect([...a.values()].map((s) => s.length).sort()).toEqual([21, 21, 22]);
  });

  it('a joiner takes only its share; the others keep the rest', () => {
    const first = stickyAssign([{ memberId: 'a', held: [] }, { memberId: 'b', held: [] }], range(64));
    const next = stickyAssign([...first].map(([memberId, held]) => ({ memberId, held })).concat({ memberId: 'c', held: [] }), range(64));
    for (const m of ['a', 'b']) for (const s of next.get(m)!) expect(first.get(m)).toContain(s);
    expect(next.get('c')!.length).toBe(21);
    expect(owners(next).size).toBe(64);
  });

  it('a dead member\'s slots go to the others, who keep theirs; a slot claimed twice goes to one', () => {
    const three = stickyAssign(['a', 'b', 'c'].map((memberId) => ({ memberId, held: [] })), range(64));
    const two = stickyAssign(['a', 'b'].map((memberId) => ({ memberId, held: three.get(memberId)! })), range(64));
    for (const m of ['a', 'b']) for (const s of three.get(m)!) expect(two.get(m)).toContain(s);
    expect(owners(two).size).toBe(64);
    const dup = stickyAssign([{ memberId: 'a', held: [1, 2, 3] }, { memberId: 'b', held: [3, 4] }], range(6));
    expect([...owners(dup).values()].every((m) => m.length === 1)).toBe(true);
    expect(owners(dup).size).toBe(6);
  });
});

describe('a takeover states only what was missed', () => {
  const tracker = (channel: 'trades' | 'ticker') => {
    const records: Array<{ from_ts: number; to_ts: number | null; reason: string }> = [];
    const ref = { exchange: 'sim', symbol: 'BTC/USDT', channel };
    const ctx = { outbox: { add: (_k: string, r: never) => void records.push(r) } as unknown as Outbox, events: new GatewayEvents() };
    return { records, ref, gap: new GapTracker(ctx, ref) };
  };
  const takeover = { by: 'group g', quietMs: 5_000 };

  it('trades fully refilled: no record; not all refilled: one closed record saying so', () => {
    const a = tracker('trades');
    openRestartGap(() => ({ tsUs: 1_000_000, id: '7', takeover }), a.ref, a.gap);
    a.gap.close(60_000_000, 120);
    expect(a.records).toEqual([]);
    const b = tracker('trades');
    openRestartGap(() => ({ tsUs: 1_000_000, id: '7', takeover }), b.ref, b.gap);
    b.gap.close(60_000_000, 100, '20 trades not refilled');
    expect(b.records).toHaveLength(1);
    expect(b.records[0]).toMatchObject({ from_ts: 1_000_000, to_ts: 60_000_000 });
    expect(b.records[0]!.reason).toMatch(/taken over by this gateway process \(shard group g\).*20 trades not refilled/);
  });

  it('trades of a takeover not recovered within 3 × quietMs (a refill queued or slow), or ending unrecovered, is stated as an open gap', () => {
    vi.useFakeTimers();
    try {
      const a = tracker('trades');
      openRestartGap(() => ({ tsUs: 1_000_000, id: '7', takeover }), a.ref, a.gap);
      vi.advanceTimersByTime(14_999);
      expect(a.records).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(a.records.map((r) => [r.from_ts, r.to_ts])).toEqual([[1_000_000, null]]);
      a.gap.close(60_000_000, 120);
      expect(a.records.map((r) => [r.from_ts, r.to_ts])).toEqual([[1_000_000, null], [1_000_000, 60_000_000]]);
      // The stream ends (closing, moved on) before the allowance: stated at once, and only once.
      const b = tracker('trades');
      openRestartGap(() => ({ tsUs: 2_000_000, takeover, unseen: true }), b.ref, b.gap);
      b.gap.stateQuiet();
      vi.advanceTimersByTime(10_000);
      expect(b.records.map((r) => [r.from_ts, r.to_ts])).toEqual([[2_000_000, null]]);
      expect(b.records[0]!.reason).toMatch(/no record of this stream in Kafka since/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('tickers: a record only when resumed later than quietMs after the last one in Kafka', () => {
    const a = tracker('ticker');
    openRestartGap(() => ({ tsUs: 1_000_000, takeover }), a.ref, a.gap);
    a.gap.close(5_500_000, 0);
    expect(a.records).toEqual([]);
    const b = tracker('ticker');
    openRestartGap(() => ({ tsUs: 1_000_000, takeover }), b.ref, b.gap);
    b.gap.close(12_000_000, 0);
    expect(b.records).toHaveLength(1);
    // Without a takeover (a restart) the gap is two records as before.
    const c = tracker('ticker');
    openRestartGap(() => ({ tsUs: 1_000_000 }), c.ref, c.gap);
    c.gap.close(1_500_000, 0);
    expect(c.records.map((r) => r.to_ts)).toEqual([null, 1_500_000]);
  });
});
