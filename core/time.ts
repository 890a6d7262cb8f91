/**
 * Time units of the whole project. Records carry microseconds since the Unix epoch (plain
 * numbers: exact up to year 2255); ccxt and the local clock speak milliseconds; durations are
 * written `<N><unit>` (`5m`, `4h`, `7d`, `1w`; ccxt timeframes add `1M`, a calendar month).
 * The parts differ only in which units and which N they admit and in how they report a bad one
 * (a 400 naming the parameter, a config error naming the key), so the grammar lives here and
 * each caller keeps its own message.
 */

export const US_PER_MS = 1_000;
export const US_PER_S = 1_000_000;

export function nowUs(): number {
  return Date.now() * US_PER_MS;
}

/** Milliseconds (ccxt, Date) → microseconds; a fractional ms (some exchanges) is rounded to the µs. */
export function msToUs(ms: number): number {
  return Math.round(ms * US_PER_MS);
}

// ---- durations -------------------------------------------------------------------------------

/** Seconds of each fixed-width unit; `M` (a ccxt month) counts 31 days, an upper bound for paging. */
export const DURATION_UNITS = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800, M: 31 * 86_400 } as const;
export type DurationUnit = keyof typeof DURATION_UNITS;
/** PostgreSQL's names of the units (interval literals like `7 days`); months are not fixed-width and have none. */
export const DURATION_UNIT_SQL = { s: 'seconds', m: 'minutes', h: 'hours', d: 'days', w: 'weeks' } as const;

export interface Duration {
  /** As written. */
  readonly text: string;
  readonly n: number;
  readonly unit: DurationUnit;
  readonly seconds: number;
  readonly ms: number;
  readonly us: number;
}

export interface DurationGrammar {
  /** The units admitted, e.g. `'mhdw'`. */
  readonly units: string;
  /**
   * N positive without leading zeros and at most this many digits; without it any digits are
   * admitted (`0m` and `007d` included, as the config notations always have).
   */
  readonly maxDigits?: number;
}

export interface DurationParser {
  (text: string): Duration | undefined;
  /** The grammar as a regular expression (for a schema's `regex`/`pattern`). */
  readonly regex: RegExp;
}

/**
 * A parser of `<N><unit>` for one grammar: the expression is compiled once, the parser returns
 * undefined for anything else (the caller says what it expected, in its own error).
 */
export function durationParser(g: DurationGrammar): DurationParser {
  if (!/^[smhdwM]+$/.test(g.units)) throw new RangeError(`durationParser: unknown units ${JSON.stringify(g.units)}`);
  const re = new RegExp(`^(${g.maxDigits === undefined ? '\\d+' : `[1-9]\\d{0,${g.maxDigits - 1}}`})([${g.units}])$`);
  const parse = (text: string): Duration | undefined => {
    const m = re.exec(text);
    if (!m) return undefined;
    const n = Number(m[1]);
    const unit = m[2] as DurationUnit;
    const seconds = n * DURATION_UNITS[unit];
    return { text, n, unit, seconds, ms: seconds * 1_000, us: seconds * US_PER_S };
  };
  return Object.assign(parse, { regex: re });
}

/** The config notation of intervals (sink policies and schedules): `Nm`, `Nh`, `Nd`, `Nw`. */
export const parseConfigInterval = durationParser({ units: 'mhdw' });
/** A ccxt timeframe as the gateway pages it: `Ns` … `Nw`, and `NM` (31 days per month). */
export const parseTimeframe = durationParser({ units: 'smhdwM' });

/** `7d` → `7 days`: a PostgreSQL interval literal in the unit as written (no months). */
export function durationSql(d: Duration): string {
  if (d.unit === 'M') throw new RangeError(`durationSql: ${d.text} is not fixed-width`);
  return `${d.n} ${DURATION_UNIT_SQL[d.unit]}`;
}

/**
 * A time on a command line: an ISO time (whatever Date.parse reads), epoch ms, `now`, or
 * `now-<N><m|h|d|w>` relative to `nowMs`. Milliseconds, or undefined when unreadable.
 */
export function parseTimeArg(text: string, nowMs = Date.now()): number | undefined {
  const v = text.trim();
  let t: number;
  if (v === 'now') t = nowMs;
  else if (v.startsWith('now-')) {
    const d = parseConfigInterval(v.slice(4));
    t = d ? nowMs - d.ms : NaN;
  } else t = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  return Number.isFinite(t) ? t : undefined;
}

// ---- ISO 8601 ----------------------------------------------------------------------------------

/** Times written with a year outside these are refused: keeps every time exact as a JS number. */
const MIN_YEAR = 1970;
const MAX_YEAR = 2199;

const ISO = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)$/;

/**
 * What parseIsoTime accepts, as a JSON Schema pattern (beside `format: date-time`, which adds
 * the calendar): RFC 3339 with seconds and a zone, years 1970–2199, so an OpenAPI document can
 * say exactly what is accepted.
 */
export const TIME_PATTERN =
  '^(?:19[7-9][0-9]|2[01][0-9]{2})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)$';

/** Why a time was refused, worded to follow `<name>: `. */
export interface TimeProblem {
  readonly problem: string;
}

/** An ISO 8601 time with a zone (Z or ±hh:mm) → exact microseconds, or why not. */
export function parseIsoTime(value: string): number | TimeProblem {
  const m = ISO.exec(value);
  if (!m) return { problem: `expected an ISO 8601 time with a zone, like 2024-01-31T00:00:00Z, got ${JSON.stringify(value.slice(0, 60))}` };
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m;
  const month = Number(mo);
  const day = Number(d);
  // The year as written (an offset may move the instant a few hours across): one rule the
  // OpenAPI pattern can state.
  if (Number(y) < MIN_YEAR || Number(y) > MAX_YEAR) return { problem: `must lie between 1970-01-01 and 2200-01-01, got ${value}` };
  if (month < 1 || month > 12 || day < 1 || day > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) {
    return { problem: `not a valid date and time: ${JSON.stringify(value)}` };
  }
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2) || '0');
    if (oh > 23 || om > 59) return { problem: `not a valid time zone offset: ${zone}` };
    offsetMin = sign * (oh * 60 + om);
  }
  const ms = Date.UTC(Number(y), month - 1, day, Number(h), Number(mi), Number(s));
  // Date.UTC rolls 2024-02-31 over into March: refuse dates that don't exist.
  if (new Date(ms).getUTCDate() !== day && Number(s) < 60) return { problem: `no such date: ${y}-${mo}-${d}` };
  return (ms - offsetMin * 60_000) * US_PER_MS + Number((frac + '000000').slice(0, 6));
}

const DAY_MS = 86_400_000;
const PAD2 = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
/** `YYYY-MM-DDT` of recent days: a response's rows mostly share a few days. */
const dayPrefix = new Map<number, string>();

/**
 * ISO 8601 UTC; milliseconds like Date#toISOString, six fraction digits when the time has
 * microseconds. Hot (every time of every API row): the date part is cached per day, the rest is
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

/** ISO 8601 UTC with all six fraction digits, exact: for PostgreSQL (a timestamptz parameter, COPY text). */
export function formatTimeExact(us: number): string {
  const ms = Math.floor(us / US_PER_MS);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us - ms * US_PER_MS).padStart(3, '0')}Z`;
}
