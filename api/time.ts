/**
 * Times and intervals of the query API. Times travel as microseconds since the Unix epoch
 * (plain numbers: exact up to year 2255, the records' precision) and are written as ISO 8601
 * UTC strings; bucket grids follow TimescaleDB's time_bucket: fixed widths counted from the
 * origin 2000-01-03T00:00:00Z, a Monday, so weeks start on Mondays and days at midnight UTC.
 */
import { DURATION_UNITS, durationParser, parseIsoTime, US_PER_MS, US_PER_S } from '../core/time.ts';
import { badRequest } from './errors.ts';

export { formatTime, nowUs, TIME_PATTERN, US_PER_MS, US_PER_S } from '../core/time.ts';
/** A time as a SQL parameter: ISO with all six fraction digits, cast to timestamptz by the query. */
export { formatTimeExact as formatTimeParam } from '../core/time.ts';

/** time_bucket's default origin (TimescaleDB and migrations/001_extension.plain.sql). */
export const ORIGIN_US = Date.UTC(2000, 0, 3) * US_PER_MS;

/** Parses an ISO 8601 time with a zone (Z or ±hh:mm) into microseconds (core/time.ts); 400 naming `param` otherwise. */
export function parseTime(value: string, param: string): number {
  const t = parseIsoTime(value);
  if (typeof t !== 'number') throw badRequest(param, `${param}: ${t.problem}`);
  return t;
}

/** The units of API intervals: fixed widths, no months. */
export const INTERVAL_UNITS = { s: DURATION_UNITS.s, m: DURATION_UNITS.m, h: DURATION_UNITS.h, d: DURATION_UNITS.d, w: DURATION_UNITS.w } as const;
export type IntervalUnit = keyof typeof INTERVAL_UNITS;
/** Ten years: beyond it a bucket is the whole history anyway. */
export const MAX_INTERVAL_S = 3_650 * 86_400;
/** N has at most eight digits. */
const MAX_INTERVAL_N = 99_999_999;

export interface Interval {
  /** As written, e.g. `5m`. */
  readonly text: string;
  readonly seconds: number;
  readonly us: number;
  /** The PostgreSQL interval literal, always in seconds (fixed width: no months, days as 24 h). */
  readonly sql: string;
}

/**
 * A regular expression source matching the decimal integers 1..max written without leading
 * zeros, e.g. 3650 → `[1-9][0-9]{0,2}|[1-2][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650`.
 */
export function decimalRangePattern(max: number): string {
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`decimalRangePattern: ${max} is not a positive integer`);
  const d = String(max);
  const alts: string[] = [];
  const digits = (n: number) => (n === 0 ? '' : n === 1 ? '[0-9]' : `[0-9]{${n}}`);
  // Every shorter number, then those of max's length digit by digit, then max itself.
  if (d.length === 2) alts.push('[1-9]');
  else if (d.length > 2) alts.push(`[1-9][0-9]{0,${d.length - 2}}`);
  for (let i = 0; i < d.length; i++) {
    const lo = i === 0 ? 1 : 0;
    const hi = Number(d[i]) - 1;
    if (hi < lo) continue;
    alts.push(`${d.slice(0, i)}${lo === hi ? String(lo) : `[${lo}-${hi}]`}${digits(d.length - i - 1)}`);
  }
  alts.push(d);
  return alts.join('|');
}

/**
 * The intervals parseInterval accepts, as a JSON Schema pattern: N a positive integer without
 * leading zeros and the bucket at most ten years (MAX_INTERVAL_S), per unit.
 */
export function intervalPattern(opts: { allowSeconds?: boolean } = {}): string {
  const units = (Object.entries(INTERVAL_UNITS) as Array<[IntervalUnit, number]>).filter(([u]) => u !== 's' || opts.allowSeconds);
  return `^(?:${units.map(([u, s]) => `(?:${decimalRangePattern(Math.min(MAX_INTERVAL_N, Math.floor(MAX_INTERVAL_S / s)))})${u}`).join('|')})$`;
}

const parseApiInterval = durationParser({ units: 'smhdw', maxDigits: 8 }); // eight digits: MAX_INTERVAL_N

/** `Nm|Nh|Nd|Nw` (and `Ns` where `allowSeconds`); 400 naming `param` otherwise. */
export function parseInterval(value: string, param: string, opts: { allowSeconds?: boolean } = {}): Interval {
  const d = parseApiInterval(value);
  const units = opts.allowSeconds ? 'Ns, Nm, Nh, Nd or Nw' : 'Nm, Nh, Nd or Nw';
  if (!d || (d.unit === 's' && !opts.allowSeconds)) {
    const hint = d?.unit === 's' ? ' (sub-minute buckets: /v1/sample, which reads the raw records)' : '';
    throw badRequest(param, `${param}: expected ${units} with N a positive integer, like 5m, 4h, 1d or 1w, got ${JSON.stringify(value.slice(0, 40))}${hint}`);
  }
  const seconds = d.seconds;
  if (seconds > MAX_INTERVAL_S) throw badRequest(param, `${param}: at most 3650d (ten years), got ${value}`);
  return { text: value, seconds, us: seconds * US_PER_S, sql: `${seconds} seconds` };
}

/** Start of the bucket holding `us` (exact integer arithmetic: no float division). */
export function floorTo(us: number, widthUs: number): number {
  let r = (us - ORIGIN_US) % widthUs;
  if (r < 0) r += widthUs;
  return us - r;
}

/** Smallest bucket start >= `us`. */
export function ceilTo(us: number, widthUs: number): number {
  const f = floorTo(us, widthUs);
  return f === us ? us : f + widthUs;
}
