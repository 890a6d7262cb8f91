import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.ts';
import { ceilTo, floorTo, formatTime, formatTimeParam, parseInterval, parseTime } from './time.ts';

const MIN = 60_000_000;

describe('times', () => {
  it('parses ISO 8601 with a zone to exact microseconds, and formats them back', () => {
    expect(parseTime('2024-03-04T05:06:07.123456Z', 'from')).toBe(Date.UTC(2024, 2, 4, 5, 6, 7, 123) * 1000 + 456);
    expect(parseTime('2024-03-04T07:06:07+02:00', 'from')).toBe(Date.UTC(2024, 2, 4, 5, 6, 7) * 1000);
    expect(parseTime('2024-03-04 05:06:07.1234567z', 'from')).toBe(Date.UTC(2024, 2, 4, 5, 6, 7, 123) * 1000 + 456);
    expect(formatTime(Date.UTC(2024, 2, 4, 5, 6, 7, 123) * 1000)).toBe('2024-03-04T05:06:07.123Z');
    expect(formatTime(Date.UTC(2024, 2, 4, 5, 6, 7, 123) * 1000 + 4)).toBe('2024-03-04T05:06:07.123004Z');
    expect(formatTimeParam(Date.UTC(2024, 2, 4) * 1000)).toBe('2024-03-04T00:00:00.000000Z');
  });

  it('round-trips any microsecond time between 1970 and 2200, and formats like Date#toISOString', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Date.UTC(2199, 11, 31) * 1000 }), (us) => {
        expect(parseTime(formatTime(us), 't')).toBe(us);
        expect(parseTime(formatTimeParam(us), 't')).toBe(us);
        if (us % 1000 === 0) expect(formatTime(us)).toBe(new Date(us / 1000).toISOString());
      }),
    );
  });

  it('refuses times without a zone, impossible dates and years outside 1970–2200, naming the parameter', () => {
    for (const bad of ['2024-03-04T05:06:07', '2024-03-04', 'yesterday', '2024-02-30T00:00:00Z', '2024-13-01T00:00:00Z', '1969-12-31T23:59:59Z', '2200-01-01T00:00:00Z', '2024-01-01T00:00:00+25:00']) {
      let err: unknown;
      try {
        parseTime(bad, 'to');
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ApiError);
      expect((err as ApiError).parameter).toBe('to');
      expect((err as ApiError).message).toMatch(/^to: /);
    }
  });
});

describe('intervals and the bucket grid', () => {
  it('reads Nm/Nh/Nd/Nw (and Ns where allowed) as seconds', () => {
    expect(parseInterval('5m', 'interval')).toMatchObject({ seconds: 300, sql: '300 seconds' });
    expect(parseInterval('4h', 'interval').seconds).toBe(14_400);
    expect(parseInterval('1w', 'interval').seconds).toBe(604_800);
    expect(parseInterval('30s', 'interval', { allowSeconds: true }).seconds).toBe(30);
    expect(() => parseInterval('30s', 'interval')).toThrow(/\/v1\/sample/);
    for (const bad of ['0m', '5', 'm', '1M', '1y', '5min', ' 5m', '-1m', '1.5h', '522w']) expect(() => parseInterval(bad, 'interval'), bad).toThrow(/^interval: /);
  });

  it('floors and ceils on the grid from 2000-01-03 (a Monday), exactly', () => {
    const thu = Date.UTC(2024, 2, 7, 15, 4, 5) * 1000;
    expect(new Date(floorTo(thu, 7 * 1440 * MIN) / 1000).toISOString()).toBe('2024-03-04T00:00:00.000Z');
    expect(new Date(floorTo(thu, 1440 * MIN) / 1000).toISOString()).toBe('2024-03-07T00:00:00.000Z');
    expect(new Date(ceilTo(thu, 5 * MIN) / 1000).toISOString()).toBe('2024-03-07T15:05:00.000Z');
    expect(ceilTo(floorTo(thu, 5 * MIN), 5 * MIN)).toBe(floorTo(thu, 5 * MIN));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7e15 }), fc.integer({ min: 1, max: 5_000_000 }), (us, widthS) => {
        const w = widthS * 1_000_000;
        const f = floorTo(us, w);
        expect(f).toBeLessThanOrEqual(us);
        expect(us - f).toBeLessThan(w);
        expect(Math.abs((f - Date.UTC(2000, 0, 3) * 1000) % w)).toBe(0);
      }),
    );
  });
});
