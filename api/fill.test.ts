import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fillGrid, type Fill } from './fill.ts';

interface R {
  b: number;
  v: number | null;
}
const grid = (rows: R[], fill: Fill, prev?: R, next?: R) =>
  fillGrid<R>({ start: 0, end: 10, width: 1, fill, rows, prev, next, bucketOf: (r) => r.b, valueOf: (r) => r.v, empty: (b, v) => ({ b, v }) }).map((r) => r.v);

describe('fill modes', () => {
  const rows = [
    { b: 2, v: 10 },
    { b: 5, v: 40 },
  ];
  it('none keeps only buckets with data; null fills with null', () => {
    expect(grid(rows, 'none')).toEqual([10, 40]);
    expect(grid(rows, 'null')).toEqual([null, null, 10, null, null, 40, null, null, null, null]);
  });
  it('prev carries the last value, from before the window too', () => {
    expect(grid(rows, 'prev')).toEqual([null, null, 10, 10, 10, 40, 40, 40, 40, 40]);
    expect(grid(rows, 'prev', { b: -3, v: 7 })).toEqual([7, 7, 10, 10, 10, 40, 40, 40, 40, 40]);
  });
  it('linear interpolates in time between the nearest buckets with data, beyond the window too', () => {
    expect(grid(rows, 'linear')).toEqual([null, null, 10, 20, 30, 40, null, null, null, null]);
    expect(grid(rows, 'linear', { b: 0, v: 0 }, { b: 15, v: 140 })).toEqual([0, 5, 10, 20, 30, 40, 50, 60, 70, 80]);
  });
  it('gives every bucket the same value whichever window it is computed in (pages agree)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 40 }), { maxLength: 15 }), fc.integer({ min: 1, max: 39 }), fc.constantFrom<Fill>('null', 'prev', 'linear'), (bs, cut, fill) => {
        const data = bs.sort((a, b) => a - b).map((b) => ({ b, v: b * 3 + 1 }));
        const whole = fillGrid<R>({ start: 0, end: 40, width: 1, fill, rows: data.filter((r) => r.b < 40), next: data.find((r) => r.b >= 40), bucketOf: (r) => r.b, valueOf: (r) => r.v, empty: (b, v) => ({ b, v }) });
        const part = (s: number, e: number) =>
          fillGrid<R>({
            start: s,
            end: e,
            width: 1,
            fill,
            rows: data.filter((r) => r.b >= s && r.b < e),
            prev: data.filter((r) => r.b < s).at(-1),
            next: data.find((r) => r.b >= e),
            bucketOf: (r) => r.b,
            valueOf: (r) => r.v,
            empty: (b, v) => ({ b, v }),
          });
        expect([...part(0, cut), ...part(cut, 40)]).toEqual(whole);
      }),
    );
  });
});
