/**
 * Times and intervals of the query API. Times travel as microseconds since the Unix epoch
 * (plain numbers: exact up to year 2255, the records' precision) and are written as ISO 8601
 * UTC strings; bucket grids follow TimescaleDB's time_bucket: fixed widths counted from the
 * origin 2000-01-03T00:00:00Z, a Monday, so weeks start on Mondays and days at midnight UTC.
 */
import { badRequest } from './errors.ts';

export const US_PER_MS = 1_000;
export const US_PER_S = 1_000_000;
/** time_bucket's default origin (TimescaleDB and migrations/001_extension.plain.sql). */
export const ORIGIN_US = Date.UTC(2000, 0, 3) * US_PER_MS;
/** Times written with a year outside these are refused: keeps every time exact as a JS number. */
const MIN_YEAR = 1970;
const MAX_YEAR = 2199;

const ISO = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)$/;

/**
 * What the query parameters of times accept, as a JSON Schema pattern (beside `format:
 * date-time`, which adds the calendar): RFC 3339 with seconds and a zone, years 1970–2199 — the
 * same grammar parseTime reads, so the OpenAPI document says exactly what is accepted.
 */
export const TIME_PATTERN =
  '^(?:19[7-9][0-9]|2[01][0-9]{2})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)$';

/** Parses an ISO 8601 time with a zone (Z or ±hh:mm) into microseconds; 400 naming `param` otherwise. */
export function parseTime(value: string, param: string): number {
  const m = ISO.exec(value);
  if (!m) throw badRequest(param, `${param}: expected an ISO 8601 time with a zone, like 2024-01-31T00:00:00Z, got ${JSON.stringify(value.slice(0, 60))}`);
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m;
  const month = Number(mo);
  const day = Number(d);
  // The year as written (an offset may move the instant a few hours across): one rule the
  // OpenAPI pattern can state.
  if (Number(y) < MIN_YEAR || Number(y) > MAX_YEAR) throw badRequest(param, `${param}: must lie between 1970-01-01 and 2200-01-01, got ${value}`);
  if (month < 1 || month > 12 || day < 1 || day > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) {
    throw badRequest(param, `${param}: not a valid date and time: ${JSON.stringify(value)}`);
  }
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2) || '0');
    if (oh > 23 || om > 59) throw badRequest(param, `${param}: not a valid time zone offset: ${zone}`);
    offsetMin = sign * (oh * 60 + om);
  }
  const ms = Date.UTC(Number(y), month - 1, day, Number(h), Number(mi), Number(s));
  // Date.UTC rolls 2024-02-31 over into March: refuse dates that don't exist.
  if (new Date(ms).getUTCDate() !== day && Number(s) < 60) throw badRequest(param, `${param}: no such date: ${y}-${mo}-${d}`);
  return (ms - offsetMin * 60_000) * US_PER_MS + Number((frac + '000000').slice(0, 6));
}

const DAY_MS = 86_400_000;
const PAD2 = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
/** `YYYY-MM-DDT` of recent days: a response's rows mostly share a few days. */
const dayPrefix = new Map<number, string>();

/**
 * ISO 8601 UTC; milliseconds like Date#toISOString, six fraction digits when the time has
 * microseconds. Hot (every time of every row): the date part is cached per day, the rest is
 * arithmetic, which is several times faster than Date#toISOString.
 */
export function formatTime(us: number): string {
  const ms = Math.floor(us / US_PER_MS);
  const rest = us - ms * US_PER_MS;
  const day = Math.floor(ms / DAY_MS);
  let prefix = dayPrefix.get(day);
  if (prefix === undefined) {
    prefix = new Date(day * DAY_MS).toISOString().slice(0, 11);
    if (dayPrefix.size > 4_096) dayPrefix.clear();
    dayPrefix.set(day, prefix);
  }
  let t = ms - day * DAY_MS;
  const h = Math.floor(t / 3_600_000);
  t -= h * 3_600_000;
  const m = Math.floor(t / 60_000);
  t -= m * 60_000;
  const sec = Math.floor(t / 1_000);
  const milli = t - sec * 1_000;
  return `${prefix}${PAD2[h]}:${PAD2[m]}:${PAD2[sec]}.${PAD3[milli]}${rest === 0 ? '' : PAD3[rest]}Z`;
}

/** A time as a SQL parameter: ISO with all six fraction digits, cast to timestamptz by the query. */
export function formatTimeParam(us: number): string {
  const ms = Math.floor(us / US_PER_MS);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us - ms * US_PER_MS).padStart(3, '0')}Z`;
}

export function nowUs(): number {
  return Date.now() * US_PER_MS;
}

export const INTERVAL_UNITS = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800 } as const;
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

/** `Nm|Nh|Nd|Nw` (and `Ns` where `allowSeconds`); 400 naming `param` otherwise. */
export function parseInterval(value: string, param: string, opts: { allowSeconds?: boolean } = {}): Interval {
  const m = /^([1-9]\d{0,7})([smhdw])$/.exec(value); // eight digits: MAX_INTERVAL_N
  const units = opts.allowSeconds ? 'Ns, Nm, Nh, Nd or Nw' : 'Nm, Nh, Nd or Nw';
  if (!m || (m[2] === 's' && !opts.allowSeconds)) {
    const hint = m?.[2] === 's' ? ' (sub-minute buckets: /v1/sample, which reads the raw records)' : '';
    throw badRequest(param, `${param}: expected ${units} with N a positive integer, like 5m, 4h, 1d or 1w, got ${JSON.stringify(value.slice(0, 40))}${hint}`);
  }
  const seconds = Number(m[1]) * INTERVAL_UNITS[m[2] as IntervalUnit];
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
