/**
 * One page of a bucketed range (/v1/ohlcv, /v1/sample), bounded three ways: at most `limit`
 * rows out, at most `maxScanRows` source rows read (rollup rows when re-bucketing; raw rows,
 * found by a probe, when sampling a raw table), and the statement timeout. A page whose window
 * had to shrink ends early with a `next` position; a page may then hold fewer than `limit` rows.
 */
import type { ApiDatabase } from './plugins/database.ts';
import { badRequest } from './errors.ts';
import { fillGrid, type Fill } from './fill.ts';
import { bucketJsonQuery, bucketQuery, scanProbeQuery, type Aggregate, type BucketRow, type BucketSource } from './sql.ts';
import { floorTo, type Interval } from './time.ts';

export interface BucketPageRequest {
  readonly label: string;
  readonly source: BucketSource;
  readonly aggregates: readonly Aggregate[];
  readonly interval: Interval;
  /** Width of one source row when the source is a rollup or candles of one timeframe; undefined for raw records. */
  readonly sourceSeconds: number | undefined;
  readonly nonNull?: string | undefined;
  /** First bucket of this page and the end of the whole range (exclusive), µs on the grid. */
  readonly start: number;
  readonly endAll: number;
  readonly limit: number;
  readonly fill: Fill;
  readonly maxScanRows: number;
  valueOf(row: BucketRow): number | null;
  empty(bucket: number, value: number | null): BucketRow;
  /** The rows are wanted as JSON (the route's JSON answer): the database writes them when it can. */
  readonly asJson?: { readonly exchange: string; readonly symbol: string } | undefined;
}

export interface BucketPage {
  readonly rows: readonly BucketRow[];
  /** Start of the next page, or undefined on the last. */
  readonly next: number | undefined;
  /** With `asJson` and fill none: the page's rows as JSON text (comma-joined objects), `rows` empty. */
  readonly json?: string;
}

export async function bucketPage(db: ApiDatabase, r: BucketPageRequest): Promise<BucketPage> {
  const iv = r.interval;
  const direct = r.sourceSeconds === iv.seconds;
  const perBucket = r.sourceSeconds === undefined ? undefined : iv.seconds / r.sourceSeconds;
  const scanBuckets = perBucket === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(r.maxScanRows / perBucket));
  const buckets = r.fill === 'none' ? scanBuckets : Math.min(r.limit, scanBuckets);
  let end = Number.isFinite(buckets) ? Math.min(r.endAll, r.start + buckets * iv.us) : r.endAll;

  if (r.sourceSeconds === undefined) {
    const probe = scanProbeQuery(r.source, r.nonNull, r.start, end, r.maxScanRows);
    const [hit] = await db.query<{ t: number }>(`${r.label}_probe`, probe.text, probe.values);
    if (hit) {
      const cut = floorTo(hit.t, iv.us);
      if (cut <= r.start) {
        throw badRequest('interval', `interval: one ${iv.text} bucket of ${r.source.table} holds more than ${r.maxScanRows} rows (api.maxScanRows); choose a shorter interval`);
      }
      end = cut;
    }
  }

  const moreAfterWindow = end < r.endAll ? end : undefined;
  if (r.fill === 'none' && r.asJson) {
    const q = bucketJsonQuery({ source: r.source, aggregates: r.aggregates, interval: iv, direct, nonNull: r.nonNull, start: r.start, end, limit: r.limit, lookback: false, lookahead: false }, r.asJson);
    const [row] = await db.query<{ data: string | null; next_b: number | null }>(`${r.label}_json`, q.text, q.values);
    return { rows: [], json: row?.data ?? '', next: row?.next_b ?? moreAfterWindow };
  }

  const gridBuckets = Math.round((end - r.start) / iv.us);
  const wantNeighbours = r.fill === 'prev' || r.fill === 'linear';
  const q = bucketQuery({
    source: r.source,
    aggregates: r.aggregates,
    interval: iv,
    direct,
    nonNull: r.nonNull,
    start: r.start,
    end,
    limit: r.fill === 'none' ? r.limit + 1 : gridBuckets,
    lookback: wantNeighbours,
    lookahead: r.fill === 'linear',
  });
  const all = await db.query<BucketRow>(r.label, q.text, q.values);
  const inside = all.filter((x) => x.k === 0).sort((a, b) => a.b - b.b);
  const prev = all.find((x) => x.k === -1);
  const nextRow = all.find((x) => x.k === 1);

  if (r.fill === 'none') {
    if (inside.length > r.limit) return { rows: inside.slice(0, r.limit), next: inside[r.limit]!.b };
    return { rows: inside, next: moreAfterWindow };
  }
  const rows = fillGrid<BucketRow>({
    start: r.start,
    end,
    width: iv.us,
    fill: r.fill,
    rows: inside,
    prev,
    next: nextRow,
    bucketOf: (x) => x.b,
    valueOf: r.valueOf,
    empty: r.empty,
  });
  return { rows, next: moreAfterWindow };
}
