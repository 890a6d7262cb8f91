/**
 * Trade dedupe across a stream and its REST refills: by id watermark where ids grow (Binance,
 * OKX), by a bounded set of recent ids elsewhere; and id jumps on exchanges with consecutive ids.
 */
import { describe, expect, it } from 'vitest';
import { compareIds, idJump, TradeLedger } from './trades.ts';

const t = (id: string, ts = 1) => ({ id, timestamp: ts, price: 1, amount: 1, side: 'buy', symbol: 'A/B' }) as never;

describe('TradeLedger', () => {
  it('monotonic ids: anything at or below the newest produced is a duplicate', () => {
    const l = new TradeLedger(true);
    const first = l.take('x', [t('10'), t('11'), t('12')], 5).records.map((r) => r.id);
    expect(first).toEqual(['10', '11', '12']);
    // A refill page overlapping what the stream gave, then the stream catching up.
    expect(l.take('x', [t('11'), t('12'), t('13'), t('14')], 6).records.map((r) => r.id)).toEqual(['13', '14']);
    expect(l.take('x', [t('14'), t('15')], 7).records.map((r) => r.id)).toEqual(['15']);
    expect(l.cursor(0)).toEqual({ id: '15', ts: 1 });
    // Ids past 2^53 compare as integers, not as floats.
    expect(l.admit('9007199254740993', 1)).toBe(true);
    expect(l.admit('9007199254740992', 1)).toBe(false);
  });

  it('other ids: a bounded set of recent ones', () => {
    const l = new TradeLedger(false, 3);
    expect(l.take('x', [t('b'), t('a'), t('c')], 1).records).toHaveLength(3);
    expect(l.take('x', [t('a'), t('d')], 1).records.map((r) => r.id)).toEqual(['d']);
    expect(l.admit('b', 1)).toBe(true); // evicted: the window is what bounds memory
  });

  it('counts trades without price or amount as malformed', () => {
    const l = new TradeLedger(true);
    const r = l.take('x', [{ id: '1', timestamp: 1, price: undefined, amount: 1 } as never, t('2')], 1);
    expect(r).toMatchObject({ malformed: 1, records: [{ id: '2' }] });
  });
});

describe('idJump', () => {
  it('flags a batch that does not continue right after the last id', () => {
    expect(idJump('10', [t('11'), t('12')])).toBe(false);
    expect(idJump('10', [t('9'), t('10'), t('11')])).toBe(false);
    expect(idJump('10', [t('13')])).toBe(true);
    expect(idJump(undefined, [t('13')])).toBe(false);
    expect(compareIds('100', '99')).toBeGreaterThan(0);
  });
});
