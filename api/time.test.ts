import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.ts';
import { ceilTo, decimalRangePattern, floorTo, formatTime, formatTimeParam, intervalPattern, parseInterval, parseTime, TIME_PATTERN } from './time.ts';

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

describe('the patterns the OpenAPI document declares', () => {
  const accepts = (f: () => unknown) => {
    try {
      f();
      return true;
    } catch {
      return false;
    }
  };

  it('decimalRangePattern(max) matches exactly the integers 1..max without leading zeros', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 0, max: 2e9 }), (max, n) => {
        const re = new RegExp(`^(?:${decimalRangePattern(max)})$`);
        for (const v of [n, max, max + 1, max - 1, Math.floor(max / 10), max * 10]) expect(re.test(String(v)), `${v} of 1..${max}`).toBe(v >= 1 && v <= max);
        expect(re.test(`0${max}`)).toBe(false);
      }),
    );
    for (let max = 1; max <= 200; max++) {
      const re = new RegExp(`^(?:${decimalRangePattern(max)})$`);
      for (let v = 0; v <= 2_100; v += max < 50 ? 1 : 13) expect(re.test(String(v)), `${v} of 1..${max}`).toBe(v >= 1 && v <= max);
    }
  });

  it('the interval patterns accept exactly what parseInterval accepts', () => {
    for (const allowSeconds of [false, true]) {
      const re = new RegExp(intervalPattern({ allowSeconds }), 'u');
      const values = fc.sample(
        fc.oneof(
          fc.tuple(fc.integer({ min: 0, max: 400_000_000 }), fc.constantFrom('s', 'm', 'h', 'd', 'w', 'M', 'y')).map(([n, u]) => `${n}${u}`),
          fc.tuple(fc.integer({ min: 0, max: 6_000 }), fc.constantFrom('s', 'm', 'h', 'd', 'w')).map(([n, u]) => `${n}${u}`),
          fc.constantFrom('3650d', '3651d', '521w', '522w', '87600h', '87601h', '5256000m', '5256001m', '99999999s', '100000000s', '01m', ' 5m', '5m '),
        ),
        { numRuns: 20_000, seed: 42 },
      );
      for (const v of values) expect(re.test(v), `${v} (allowSeconds ${allowSeconds})`).toBe(accepts(() => parseInterval(v, 'interval', { allowSeconds })));
    }
  });

  it('every time the time pattern admits (with a date that exists), parseTime reads the same as Date does', () => {
    const re = new RegExp(TIME_PATTERN, 'u');
    fc.assert(
      fc.property(fc.date({ min: new Date('1950-01-01T00:00:00Z'), max: new Date('2250-01-01T00:00:00Z'), noInvalidDate: true }), fc.constantFrom('Z', '+02:00', '-0530', '+23', 'z'), (d, zone) => {
        const text = `${d.toISOString().slice(0, -1)}${zone}`;
        const year = d.getUTCFullYear();
        expect(re.test(text), text).toBe(year >= 1970 && year <= 2199);
        if (re.test(text)) expect(accepts(() => parseTime(text, 't')), text).toBe(true);
      }),
    );
    for (const bad of ['2024-01-01T00:00Z', '2024-01-01', '1969-12-31T23:59:59Z', '2200-01-01T00:00:00Z', '2024-01-01\t00:00:00Z', '2024-01-01T24:00:00Z', '2024-01-01T00:00:00+24:00']) expect(re.test(bad), bad).toBe(false);
  });
});
