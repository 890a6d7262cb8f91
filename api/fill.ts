/**
 * Fill modes of /v1/ohlcv and /v1/sample, like QuestDB's `SAMPLE BY ... FILL`, computed here
 * rather than with TimescaleDB's gapfill so plain PostgreSQL answers the same:
 * - none: only buckets that hold data;
 * - null: every bucket of the range; empty ones carry null;
 * - prev: empty buckets carry the value of the nearest earlier bucket with data;
 * - linear: empty buckets carry the value interpolated in time between the nearest buckets with
 *   data on either side (null when one side has none).
 * The nearest buckets are looked up beyond the requested range and the page, so a bucket's
 * filled value depends only on the data, never on where a range or a page starts.
 */
export const FILLS = ['none', 'null', 'prev', 'linear'] as const;
export type Fill = (typeof FILLS)[number];

export interface GridOptions<R> {
  /** First bucket start of the window (µs, on the grid). */
  readonly start: number;
  /** End of the window, exclusive (µs, on the grid). */
  readonly end: number;
  readonly width: number;
  readonly fill: Fill;
  /** Buckets with data inside [start, end), ascending. */
  readonly rows: readonly R[];
  /** The nearest bucket with data before `start`, and at or after `end`. */
  readonly prev?: R | undefined;
  readonly next?: R | undefined;
  bucketOf(row: R): number;
  /** The value `prev` carries and `linear` interpolates (a candle's close, a sample's value). */
  valueOf(row: R): number | null;
  /** The row of an empty bucket holding `value` (null: nothing to fill with). */
  empty(bucket: number, value: number | null): R;
}

export function fillGrid<R>(o: GridOptions<R>): R[] {
  if (o.fill === 'none') return [...o.rows];
  const out: R[] = [];
  let i = 0;
  for (let b = o.start; b < o.end; b += o.width) {
    // Rows off the grid (an exchange's own multi-day candles) are kept, in order.
    while (i < o.rows.length && o.bucketOf(o.rows[i]!) < b) out.push(o.rows[i++]!);
    const row = o.rows[i];
    if (row !== undefined && o.bucketOf(row) === b) {
      out.push(row);
      i++;
      continue;
    }
    if (o.fill === 'null') {
      out.push(o.empty(b, null));
      continue;
    }
    const before = i > 0 ? o.rows[i - 1] : o.prev;
    const pv = before === undefined ? null : o.valueOf(before);
    if (o.fill === 'prev') {
      out.push(o.empty(b, pv));
      continue;
    }
    const after = i < o.rows.length ? o.rows[i] : o.next;
    const nv = after === undefined ? null : o.valueOf(after);
    if (before === undefined || after === undefined || pv === null || nv === null) {
      out.push(o.empty(b, null));
      continue;
    }
    const b0 = o.bucketOf(before);
    const b1 = o.bucketOf(after);
    out.push(o.empty(b, pv + ((nv - pv) * (b - b0)) / (b1 - b0)));
  }
  while (i < o.rows.length && o.bucketOf(o.rows[i]!) < o.end) out.push(o.rows[i++]!);
  return out;
}
