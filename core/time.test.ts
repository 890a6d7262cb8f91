import { describe, expect, it } from 'vitest';
import { durationParser, durationSql, formatTime, formatTimeExact, msToUs, parseConfigInterval, parseIsoTime, parseTimeArg, parseTimeframe } from './time.ts';

describe('µs helpers', () => {
  it('renders microseconds exactly, and converts ccxt milliseconds', () => {
    expect(formatTimeExact(1_700_000_000_123_456)).toBe('2023-11-14T22:13:20.123456Z');
    expect(formatTimeExact(1_700_000_000_000_007)).toBe('2023-11-14T22:13:20.000007Z');
    expect(formatTime(1_700_000_000_123_000)).toBe('2023-11-14T22:13:20.123Z');
    expect(msToUs(1_700_000_000_123.5)).toBe(1_700_000_000_123_500);
  });

  it('reads ISO times with a zone, or says why not', () => {
    expect(parseIsoTime('2023-11-14T22:13:20.123456Z')).toBe(1_700_000_000_123_456);
    expect(parseIsoTime('2024-02-30T00:00:00Z')).toEqual({ problem: 'no such date: 2024-02-30' });
    expect(parseIsoTime('2024-01-01')).toMatchObject({ problem: expect.stringMatching(/^expected an ISO 8601 time with a zone/) });
  });
});

describe('durations: one grammar, each caller its units and digits', () => {
  it('config intervals: Nm/Nh/Nd/Nw, any digits', () => {
    expect(parseConfigInterval('7d')).toMatchObject({ n: 7, unit: 'd', seconds: 604_800, ms: 604_800_000 });
    expect(durationSql(parseConfigInterval('90d')!)).toBe('90 days');
    expect(parseConfigInterval('0m')?.ms).toBe(0);
    for (const bad of ['7 days', '30s', '1M', '', 'd', '-1d']) expect(parseConfigInterval(bad), bad).toBeUndefined();
  });

  it('timeframes: seconds to weeks, and months counted as 31 days', () => {
    expect(parseTimeframe('4h')?.ms).toBe(4 * 3_600_000);
    expect(parseTimeframe('1M')?.ms).toBe(31 * 86_400_000);
    expect(parseTimeframe('7x')).toBeUndefined();
  });

  it('positive N without leading zeros, bounded digits, when the grammar says so', () => {
    const p = durationParser({ units: 'smhdw', maxDigits: 2 });
    expect(p('99s')?.seconds).toBe(99);
    for (const bad of ['0m', '05m', '100m', '1M']) expect(p(bad), bad).toBeUndefined();
  });

  it('command-line times: ISO, epoch ms, now and now-<N><m|h|d|w>', () => {
    const now = Date.UTC(2024, 0, 2);
    expect(parseTimeArg('now', now)).toBe(now);
    expect(parseTimeArg(' now-6h ', now)).toBe(now - 6 * 3_600_000);
    expect(parseTimeArg('1700000000000', now)).toBe(1_700_000_000_000);
    expect(parseTimeArg('2024-01-01T00:00:00Z', now)).toBe(Date.UTC(2024, 0, 1));
    for (const bad of ['now-6s', 'now-', 'yesterday']) expect(parseTimeArg(bad, now), bad).toBeUndefined();
  });
});
