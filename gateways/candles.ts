/**
 * Candles: ccxt does not say whether a bucket is final (it drops Binance's `x` flag), so the
 * gateway derives `closed`. A bucket is closed once a newer bucket of the same symbol and
 * timeframe has been seen on an unbroken stream, or once its end has passed by the exchange's
 * clock (plus a grace for the final update in flight). Forming updates go out at most once per
 * `formingEveryMs` per symbol/timeframe; each bucket's closed version goes out exactly once.
 * Buckets the stream cannot vouch for (after a disconnect, before the first message) are
 * requested from REST as a `fill` range instead of being closed from stale values.
 */
import type { OHLCV } from 'ccxt';
import { TickflowError } from '../core/errors.ts';
import { parseTimeframe } from '../core/time.ts';

/** Length of a timeframe in ms (months: 31 days, an upper bound used only for paging). */
export function timeframeMs(tf: string): number {
  const d = parseTimeframe(tf);
  if (!d) throw new TickflowError('CONFIG_INVALID', `not a timeframe: ${tf} (expected like 1m, 1h, 1d)`);
  return d.ms;
}

/** End of the bucket that opens at `open` (calendar months for `M`). */
export function bucketEnd(tf: string, open: number): number {
  const m = /^(\d+)M$/.exec(tf);
  if (m) {
    const d = new Date(open);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + Number(m[1]), 1);
  }
  return open + timeframeMs(tf);
}

/**
 * The exchange's clock as the gateway can know it: the local clock plus the offset from the
 * exchange's time endpoint, moved forward by the exchange times seen on its streams. Never runs
 * ahead of what the exchange has shown, so it can close a bucket late but not early.
 */
export class ExchangeClock {
  private offsetMs = 0;
  private lastTs = -Infinity;
  private lastLocal = 0;

  setOffset(exchangeNowMs: number, localMs: number): void {
    this.offsetMs = exchangeNowMs - localMs;
  }

  observe(exchangeTsMs: number, localMs: number): void {
    if (exchangeTsMs > this.lastTs) {
      this.lastTs = exchangeTsMs;
      this.lastLocal = localMs;
    }
  }

  now(localMs: number): number {
    return Math.round(Math.max(localMs + this.offsetMs, this.lastTs + (localMs - this.lastLocal)));
  }
}

export interface CandleEmission {
  readonly row: OHLCV;
  readonly closed: boolean;
}

/** Bucket opens [from, to) that must come from REST. */
export interface FillRange {
  readonly from: number;
  readonly to: number;
}

export interface TrackerResult {
  readonly emit: CandleEmission[];
  readonly fill: FillRange | undefined;
}

export interface CandleTrackerOptions {
  readonly formingEveryMs?: number;
  readonly closeGraceMs?: number;
  /** Closed bucket opens remembered to keep each closed candle unique. */
  readonly rememberClosed?: number;
}

export class CandleTracker {
  readonly timeframe: string;
  private forming: { row: OHLCV; dirty: boolean; endSeenAt?: number } | undefined;
  /** Last forming update sent (local ms), across buckets: the throttle is per symbol/timeframe. */
  private formingEmittedAt = -Infinity;
  private readonly closedSet = new Set<number>();
  /** Earliest bucket the stream cannot vouch for; the next stream row requests [pendingFrom, row). */
  private pendingFrom: number | undefined;
  private readonly formingEveryMs: number;
  private readonly closeGraceMs: number;
  private readonly rememberClosed: number;

  constructor(timeframe: string, opts: CandleTrackerOptions = {}) {
    this.timeframe = timeframe;
    this.formingEveryMs = opts.formingEveryMs ?? 1_000;
    this.closeGraceMs = opts.closeGraceMs ?? 2_000;
    this.rememberClosed = opts.rememberClosed ?? 100_000;
    timeframeMs(timeframe); // validates
  }

  isClosed(open: number): boolean {
    return this.closedSet.has(open);
  }

  private markClosed(open: number): void {
    this.closedSet.add(open);
    if (this.closedSet.size > this.rememberClosed) {
      const oldest = this.closedSet.values().next().value;
      if (oldest !== undefined) this.closedSet.delete(oldest);
    }
  }

  /** The stream dropped: the forming bucket's values are no longer trustworthy. */
  markStale(): void {
    const from = this.forming?.row[0];
    if (from !== undefined) this.pendingFrom = Math.min(this.pendingFrom ?? from, from);
    this.forming = undefined;
  }

  /** Buckets from `open` on are not covered yet (e.g. where a history backfill stopped). */
  expectFrom(open: number): void {
    this.pendingFrom = Math.min(this.pendingFrom ?? open, open);
  }

  /** Rows from a websocket update, oldest first. */
  onStream(rows: readonly OHLCV[], localNow: number): TrackerResult {
    const emit: CandleEmission[] = [];
    let fill: FillRange | undefined;
    const addFill = (from: number, to: number) => {
      if (from >= to) return;
      fill = fill ? { from: Math.min(fill.from, from), to: Math.max(fill.to, to) } : { from, to };
    };
    const sorted = rows.length > 1 ? [...rows].sort((a, b) => a[0]! - b[0]!) : rows;
    for (const row of sorted) {
      const ts = row[0];
      if (ts === undefined || this.closedSet.has(ts)) continue;
      if (this.pendingFrom !== undefined) {
        addFill(this.pendingFrom, ts);
        this.pendingFrom = undefined;
      }
      const f = this.forming;
      if (!f) {
        this.forming = { row, dirty: true };
      } else if (ts === f.row[0]) {
        f.row = row;
        f.dirty = true;
      } else if (ts > f.row[0]!) {
        emit.push({ row: f.row, closed: true });
        this.markClosed(f.row[0]!);
        addFill(bucketEnd(this.timeframe, f.row[0]!), ts);
        this.forming = { row, dirty: true };
      } else {
        // An older bucket than the forming one, not closed yet: a newer one exists, so it is final.
        emit.push({ row, closed: true });
        this.markClosed(ts);
      }
    }
    const f = this.forming;
    if (f && f.dirty && localNow - this.formingEmittedAt >= this.formingEveryMs) {
      emit.push({ row: f.row, closed: false });
      this.formingEmittedAt = localNow;
      f.dirty = false;
    }
    return { emit, fill };
  }

  /**
   * Closes the forming bucket once its end has passed by the exchange clock and a grace (local
   * ms, for the final update in flight) has elapsed since; flushes a throttled forming update.
   */
  tick(exchangeNow: number, localNow: number): CandleEmission[] {
    const f = this.forming;
    if (!f) return [];
    const end = bucketEnd(this.timeframe, f.row[0]!);
    if (end <= exchangeNow) {
      f.endSeenAt ??= localNow;
      if (localNow - f.endSeenAt >= this.closeGraceMs) {
        this.markClosed(f.row[0]!);
        this.forming = undefined;
        this.pendingFrom = end;
        return [{ row: f.row, closed: true }];
      }
    }
    if (f.dirty && localNow - this.formingEmittedAt >= this.formingEveryMs) {
      this.formingEmittedAt = localNow;
      f.dirty = false;
      return [{ row: f.row, closed: false }];
    }
    return [];
  }

  /**
   * Rows from REST (oldest first). A row is closed when a newer row follows it in the answer, a
   * newer bucket is forming on the stream, or its end has passed by the exchange clock; each
   * closed bucket is emitted once. Rows at or past `before` are left to the stream. With
   * `forming` (poll mode, where REST is the only source), the newest open row goes out as a
   * forming update.
   */
  onRest(rows: readonly OHLCV[], exchangeNow: number, opts: { before?: number; forming?: boolean } = {}): CandleEmission[] {
    const out: CandleEmission[] = [];
    const before = opts.before ?? Infinity;
    const formingTs = this.forming?.row[0];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const ts = row[0];
      if (ts === undefined || ts >= before || this.closedSet.has(ts) || ts === formingTs) continue;
      const newerFollows = i + 1 < rows.length && rows[i + 1]![0]! > ts;
      const closed = newerFollows || (formingTs !== undefined && ts < formingTs) || bucketEnd(this.timeframe, ts) <= exchangeNow;
      if (closed) {
        out.push({ row, closed: true });
        this.markClosed(ts);
      } else if (opts.forming && i === rows.length - 1) {
        out.push({ row, closed: false });
      }
    }
    return out;
  }

  /** The forming bucket's open, if any. */
  get formingOpen(): number | undefined {
    return this.forming?.row[0];
  }
}
