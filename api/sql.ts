/**
 * The SQL of the bucketed routes (/v1/ohlcv, /v1/sample). Identifiers come only from the
 * allow-lists below (tables, time columns, field expressions, aggregates); every value is a
 * parameter. Times cross the wire as ISO strings with microseconds (exact) and come back as
 * int8 microseconds.
 */
import { OHLCV_ROLLUPS, SERIES_TABLES, mapOf, specOfTable, type OhlcvView, type SeriesTable } from '../schemas/catalog.ts';
import { formatTimeParam, type Interval } from './time.ts';

/** `(extract(epoch from x) * 1e6)::int8`: a timestamptz as exact microseconds. */
export const us = (expr: string): string => `(extract(epoch from ${expr}) * 1000000)::int8`;

/** Allocates `$n` placeholders by name, so one value used twice is one parameter. */
export class Params {
  readonly values: unknown[] = [];
  private readonly slots = new Map<string, string>();

  ref(name: string, value: unknown, cast?: string): string {
    let slot = this.slots.get(name);
    if (!slot) {
      this.values.push(value);
      slot = `$${this.values.length}`;
      this.slots.set(name, slot);
    }
    return cast ? `${slot}::${cast}` : slot;
  }
}

/** The OHLCV rollups, coarsest first. */
export const ROLLUPS = [...OHLCV_ROLLUPS].reverse().map((r) => ({ table: r.view, seconds: r.seconds }));
export type RollupTable = (typeof ROLLUPS)[number]['table'];

/** The coarsest rollup whose bucket divides the interval (every Nm/Nh/Nd/Nw has one: 1m). */
export function rollupFor(iv: Interval): (typeof ROLLUPS)[number] | undefined {
  return ROLLUPS.find((r) => iv.seconds % r.seconds === 0);
}

export type SourceTable = OhlcvView | SeriesTable;
export type KeyColumn = 'exchange' | 'symbol' | 'timeframe';

export interface BucketSource {
  readonly table: SourceTable;
  readonly time: 'bucket' | 'ts';
  /** Equality filters, in this order, with their values. */
  readonly keys: ReadonlyArray<readonly [KeyColumn, string]>;
}

export interface Aggregate {
  readonly name: string;
  /** Over the source rows of one output bucket. */
  readonly rebucket: string;
  /** When one source row is one output bucket. */
  readonly direct: string;
}

export interface BucketQuery {
  readonly source: BucketSource;
  readonly aggregates: readonly Aggregate[];
  readonly interval: Interval;
  /** One source row per output bucket: select the columns, no grouping. */
  readonly direct: boolean;
  /** A row counts only where this expression is not null (raw sampling). */
  readonly nonNull?: string | undefined;
  readonly start: number;
  readonly end: number;
  readonly limit: number;
  /** Also the nearest bucket with data before `start` (k = -1) and at or after `end` (k = 1). */
  readonly lookback: boolean;
  readonly lookahead: boolean;
}

export interface BucketRow {
  /** -1: the bucket before the window, 0: inside, 1: the bucket after. */
  readonly k: number;
  /** Bucket start, µs. */
  readonly b: number;
  readonly [aggregate: string]: number | null;
}

/**
 * The parts every window query shares: the instrument's key predicate, the non-null filter and
 * the [start, end) bounds, as parameters of `p` (in that order).
 */
function windowClauses(p: Params, source: BucketSource, nonNull: string | undefined, start: number, end: number) {
  const keys = source.keys.map(([col, v]) => `${col} = ${p.ref(col, v)}`).join(' and ');
  const nn = nonNull ? ` and (${nonNull}) is not null` : '';
  return {
    t: source.time,
    table: source.table,
    keys,
    nn,
    start: p.ref('start', formatTimeParam(start), 'timestamptz'),
    end: p.ref('end', formatTimeParam(end), 'timestamptz'),
  };
}

/** One statement: the window's buckets plus, when asked, the nearest ones on either side. */
export function bucketQuery(q: BucketQuery): { text: string; values: unknown[] } {
  const p = new Params();
  const { t, table, keys, nn, start, end } = windowClauses(p, q.source, q.nonNull, q.start, q.end);
  const parts: string[] = [];
  if (q.direct) {
    const cols = q.aggregates.map((a) => `${a.direct} as ${a.name}`).join(', ');
    if (q.lookback) parts.push(`(select -1 as k, ${us(t)} as b, ${cols} from ${table} where ${keys} and ${t} < ${start}${nn} order by ${t} desc limit 1)`);
    parts.push(`(select 0 as k, ${us(t)} as b, ${cols} from ${table} where ${keys} and ${t} >= ${start} and ${t} < ${end}${nn} order by ${t} limit ${p.ref('limit', q.limit)})`);
    if (q.lookahead) parts.push(`(select 1 as k, ${us(t)} as b, ${cols} from ${table} where ${keys} and ${t} >= ${end}${nn} order by ${t} limit 1)`);
  } else {
    const iv = p.ref('interval', q.interval.sql, 'interval');
    const aggs = q.aggregates.map((a) => `${a.rebucket} as ${a.name}`).join(', ');
    const bucket = `time_bucket(${iv}, ${t})`;
    const side = (k: number, where: string, dir: 'asc' | 'desc') =>
      `(select ${k} as k, ${us('n.b')} as b, ${aggs} from ${table}, ` +
      `(select ${bucket} as b from ${table} where ${keys} and ${where}${nn} order by ${t} ${dir} limit 1) n ` +
      `where ${keys} and ${t} >= n.b and ${t} < n.b + ${iv}${nn} group by n.b)`;
    if (q.lookback) parts.push(side(-1, `${t} < ${start}`, 'desc'));
    parts.push(`(select 0 as k, ${us(bucket)} as b, ${aggs} from ${table} where ${keys} and ${t} >= ${start} and ${t} < ${end}${nn} group by ${bucket} order by ${bucket} limit ${p.ref('limit', q.limit)})`);
    if (q.lookahead) parts.push(side(1, `${t} >= ${end}`, 'asc'));
  }
  return { text: parts.join('\nunion all\n'), values: p.values };
}

/**
 * A page without fill as JSON text built by the database (the PostgREST way): the rows of the
 * window, `limit` at most, each `{"exchange","symbol","bucket",<aggregates>}` in that order,
 * joined by commas, and the start (µs) of the bucket after the page, if any. The API then sends
 * the text as it comes, doing no per-row work; the rows equal those of `bucketQuery`.
 */
export function bucketJsonQuery(q: BucketQuery, instrument: { exchange: string; symbol: string }): { text: string; values: unknown[] } {
  const p = new Params();
  const { t, table, keys, nn, start, end } = windowClauses(p, q.source, q.nonNull, q.start, q.end);
  const limit = p.ref('limit', q.limit, 'int8');
  let rows: string;
  if (q.direct) {
    rows = `select ${t} as b, ${q.aggregates.map((a) => `${a.direct} as ${a.name}`).join(', ')} from ${table} where ${keys} and ${t} >= ${start} and ${t} < ${end}${nn} order by ${t} limit ${limit} + 1`;
  } else {
    const bucket = `time_bucket(${p.ref('interval', q.interval.sql, 'interval')}, ${t})`;
    rows = `select ${bucket} as b, ${q.aggregates.map((a) => `${a.rebucket} as ${a.name}`).join(', ')} from ${table} where ${keys} and ${t} >= ${start} and ${t} < ${end}${nn} group by ${bucket} order by ${bucket} limit ${limit} + 1`;
  }
  const cols = q.aggregates.map((a) => `w.${a.name}`).join(', ');
  const iso = `to_char(w.b at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  return {
    text:
      `with w as (${rows}) select ` +
      `(select string_agg(row_to_json(j)::text, ',' order by j.bucket) from (select ${p.ref('exchange_out', instrument.exchange, 'text')} as exchange, ${p.ref('symbol_out', instrument.symbol, 'text')} as symbol, ${iso} as bucket, ${cols} from w order by w.b limit ${limit}) j) as data, ` +
      `(select ${us('w.b')} from w order by w.b offset ${limit} limit 1) as next_b`,
    values: p.values,
  };
}

/**
 * The time of the (maxRows+1)-th source row of a window (or nothing when the window holds no
 * more): where a page of raw sampling must end to read at most maxRows rows.
 */
export function scanProbeQuery(source: BucketSource, nonNull: string | undefined, start: number, end: number, maxRows: number): { text: string; values: unknown[] } {
  const p = new Params();
  const w = windowClauses(p, source, nonNull, start, end);
  return {
    text: `select ${us(w.t)} as t from ${w.table} where ${w.keys} and ${w.t} >= ${w.start} and ${w.t} < ${w.end}${w.nn} order by ${w.t} offset ${p.ref('offset', maxRows)} limit 1`,
    values: p.values,
  };
}

/**
 * A float8 sum rounded to 12 significant digits. Summing float8 amounts leaves artifacts in the
 * last digits (0.1 + 0.2 = 0.30000000000000004; a candle volume of 3.045359999999999): 12 digits
 * keep every digit exchange amounts carry, while the rounding error of a sum of even millions of
 * terms stays below the last one kept. In float8 arithmetic (a third of the cost of a numeric
 * round trip): the value scaled by a power of ten (exact up to 10^22) to a 12-digit integer,
 * rounded, scaled back — one correctly rounded operation, so the result is the float8 nearest
 * that 12-digit decimal, which the database prints as that decimal. Zero, null, NaN, infinities
 * and magnitudes below 1e-11 pass unchanged.
 */
export const sig12 = (e: string): string => {
  const mag = `floor(log(abs(${e})))`;
  return (
    `(case when ${e} = 0 or not (abs(${e}) < 'Infinity'::float8) or ${mag} < -11 then ${e} ` +
    `when ${mag} <= 11 then round(${e} * power(10::float8, 11 - ${mag})) / power(10::float8, 11 - ${mag}) ` +
    `else round(${e} / power(10::float8, ${mag} - 11)) * power(10::float8, ${mag} - 11) end)`
  );
};

// ---- /v1/ohlcv ----

/** Candles from a rollup (columns bucket, open, high, low, close, volume, trades). */
export const OHLCV_FROM_ROLLUP: readonly Aggregate[] = [
  { name: 'open', rebucket: 'first(open, bucket)', direct: 'open' },
  { name: 'high', rebucket: 'max(high)', direct: 'high' },
  { name: 'low', rebucket: 'min(low)', direct: 'low' },
  { name: 'close', rebucket: 'last(close, bucket)', direct: 'close' },
  // The rollups' volume is itself a sum of the trades' amounts.
  { name: 'volume', rebucket: sig12('sum(volume)'), direct: sig12('volume') },
  { name: 'trades', rebucket: 'sum(trades)::int8', direct: 'trades::int8' },
];

/** Candles from the exchange's own candles (table candles, one timeframe); no trade count. */
export const OHLCV_FROM_EXCHANGE: readonly Aggregate[] = [
  { name: 'open', rebucket: 'first(open, ts)', direct: 'open' },
  { name: 'high', rebucket: 'max(high)', direct: 'high' },
  { name: 'low', rebucket: 'min(low)', direct: 'low' },
  { name: 'close', rebucket: 'last(close, ts)', direct: 'close' },
  // The exchange's own volume as it is; summed when re-bucketed.
  { name: 'volume', rebucket: sig12('sum(volume)'), direct: 'volume' },
  { name: 'trades', rebucket: 'null::int8', direct: 'null::int8' },
];

// ---- /v1/sample ----

/** The market data tables (schemas/catalog.ts). */
export const SAMPLE_CHANNELS = SERIES_TABLES;
export type SampleChannel = SeriesTable;
export const AGGS = ['first', 'last', 'min', 'max', 'avg', 'sum', 'count'] as const;
export type Agg = (typeof AGGS)[number];

const bookLevel = (side: 'bids' | 'asks', key: 'price' | 'amount') => `(${side} -> 0 ->> '${key}')::float8`;

/** Fields derived from columns, beyond each table's own float8 columns. */
const DERIVED_FIELDS: Readonly<Partial<Record<SampleChannel, Readonly<Record<string, string>>>>> = {
  trades: { notional: '(price * amount)' },
  tickers: { mid: '((bid + ask) / 2)', spread: '(ask - bid)' },
  // Top of book, derived from the first level of each side.
  books: {
    best_bid: bookLevel('bids', 'price'),
    best_bid_size: bookLevel('bids', 'amount'),
    best_ask: bookLevel('asks', 'price'),
    best_ask_size: bookLevel('asks', 'amount'),
    mid: `((${bookLevel('bids', 'price')} + ${bookLevel('asks', 'price')}) / 2)`,
    spread: `(${bookLevel('asks', 'price')} - ${bookLevel('bids', 'price')})`,
  },
};

/** The numeric fields of each channel: its float8 columns (schemas/catalog.ts), then expressions derived from columns. */
export const SAMPLE_FIELDS: Readonly<Record<SampleChannel, Readonly<Record<string, string>>>> = mapOf(SAMPLE_CHANNELS, (t) => ({
  ...Object.fromEntries(specOfTable(t).columns.filter((c) => c.type === 'float8').map((c) => [c.name, c.name])),
  ...DERIVED_FIELDS[t],
}));

export function rawAggregate(agg: Agg, expr: string, time: string): Aggregate {
  const sql =
    agg === 'first' || agg === 'last' ? `${agg}(${expr}, ${time})` : agg === 'count' ? `count(${expr})::int8` : agg === 'sum' || agg === 'avg' ? sig12(`${agg}(${expr})::float8`) : `${agg}(${expr})::float8`;
  return { name: 'value', rebucket: sql, direct: sql };
}

/**
 * Samples of trades the OHLCV rollups answer exactly: (field, agg) → the rollup's aggregate.
 * The rest (avg, notional, amount's first/last/min/max) read the raw trades.
 */
export const TRADES_FROM_ROLLUP: Readonly<Record<string, Aggregate>> = {
  'price:first': { name: 'value', rebucket: 'first(open, bucket)', direct: 'open' },
  'price:last': { name: 'value', rebucket: 'last(close, bucket)', direct: 'close' },
  'price:max': { name: 'value', rebucket: 'max(high)', direct: 'high' },
  'price:min': { name: 'value', rebucket: 'min(low)', direct: 'low' },
  'amount:sum': { name: 'value', rebucket: sig12('sum(volume)'), direct: sig12('volume') },
  'price:count': { name: 'value', rebucket: 'sum(trades)::int8', direct: 'trades::int8' },
  'amount:count': { name: 'value', rebucket: 'sum(trades)::int8', direct: 'trades::int8' },
  'notional:count': { name: 'value', rebucket: 'sum(trades)::int8', direct: 'trades::int8' },
};
