/**
 * Gap records: a stream that dropped (or records Kafka could not take) is data, not just a log
 * line. A stream's outage is two records: one when it starts (`to_ts` null), one when data flows
 * again (same `from_ts`, `to_ts` set, `refilled` = records recovered over REST).
 */
import type { Channel } from './config.ts';
import type { Gap } from '../schemas/index.ts';
import { nowUs } from '../core/time.ts';
import type { GatewayEvents, StreamRef } from './events.ts';
import type { Outbox } from './outbox.ts';

/** Longest `reason` a gap record carries. */
const MAX_REASON = 500;

export interface GapSpec {
  readonly exchange: string;
  readonly symbol: string;
  /** The stream's channel, or `kafka` for records lost on the way to Kafka. */
  readonly channel: Channel | 'kafka';
  /** µs: the last record before the outage. */
  readonly fromUs: number;
  /** µs: where data resumed; null while the outage lasts. */
  readonly toUs: number | null;
  readonly reason: string;
  /** Records recovered over REST. */
  readonly refilled?: number;
}

/** The one way a gap record is built; `atUs` (its `ts` and `received_at`) is when it is emitted. */
export function gapRecord(g: GapSpec, atUs: number = nowUs()): Gap {
  return {
    exchange: g.exchange,
    symbol: g.symbol,
    ts: atUs,
    received_at: atUs,
    channel: g.channel,
    from_ts: g.fromUs,
    to_ts: g.toUs,
    reason: g.reason.slice(0, MAX_REASON),
    refilled: g.refilled ?? 0,
  };
}

/** Open/close gap records of one stream. */
export class GapTracker {
  private readonly ctx: { readonly outbox: Outbox; readonly events: GatewayEvents };
  private readonly ref: StreamRef;
  private current: { fromUs: number; reason: string; openedAt: number; quietUs?: number } | undefined;
  /** A quiet gap still open this long is stated anyway (`stateAfterMs`). */
  private stateTimer: NodeJS.Timeout | undefined;

  constructor(ctx: { readonly outbox: Outbox; readonly events: GatewayEvents }, ref: StreamRef) {
    this.ctx = ctx;
    this.ref = ref;
  }

  get isOpen(): boolean {
    return this.current !== undefined;
  }

  private label(): string {
    return this.ref.timeframe ? `${this.ref.channel} ${this.ref.timeframe}` : this.ref.channel;
  }

  /**
   * `quietUs` (an instrument taken over from another gateway process, gateways/shard.ts): no open
   * record; the close writes one only when something was not recovered (a `note`) or data resumed
   * more than `quietUs` after `fromUs` (Infinity: only a note counts, for refilled channels).
   * `stateAfterMs`: a quiet gap not closed within this long (a takeover still refilling, an
   * instrument whose stream has not resumed) is stated then as an open record, and closed as any
   * other; so is one still open when its stream ends (`stateQuiet`). What a takeover could not yet
   * recover is never left unstated.
   */
  open(fromUs: number, reason: string, opts: { quietUs?: number; stateAfterMs?: number } = {}): void {
    if (this.current) return;
    this.current = { fromUs, reason: `${this.label()}: ${reason}`.slice(0, MAX_REASON), openedAt: Date.now(), ...(opts.quietUs !== undefined ? { quietUs: opts.quietUs } : {}) };
    if (opts.quietUs !== undefined) {
      if (opts.stateAfterMs !== undefined) {
        this.stateTimer = setTimeout(() => this.stateQuiet(), opts.stateAfterMs);
        this.stateTimer.unref();
      }
      return;
    }
    this.ctx.outbox.add('gap', this.record(fromUs, null, this.current.reason, 0));
    this.ctx.events.emit('stream.down', { ...this.ref, reason });
  }

  /** A quiet gap still open is stated now (an open record); it closes as any other gap. */
  stateQuiet(): void {
    clearTimeout(this.stateTimer);
    this.stateTimer = undefined;
    const c = this.current;
    if (!c || c.quietUs === undefined) return;
    delete c.quietUs;
    this.ctx.outbox.add('gap', this.record(c.fromUs, null, c.reason, 0));
    this.ctx.events.emit('stream.down', { ...this.ref, reason: c.reason });
  }

  /**
   * The stream ends for good (its instrument was delisted): a gap record from `fromUs` (or the
   * open gap's start, restated with this reason: same key, so it replaces the open record) that
   * no data will close.
   */
  end(fromUs: number, reason: string): void {
    const c = this.current;
    clearTimeout(this.stateTimer);
    this.stateTimer = undefined;
    const from = c ? c.fromUs : fromUs;
    const text = `${this.label()}: ${reason}`.slice(0, MAX_REASON);
    this.current = { fromUs: from, reason: text, openedAt: c?.openedAt ?? Date.now() };
    this.ctx.outbox.add('gap', this.record(from, null, text, 0));
    if (!c) this.ctx.events.emit('stream.down', { ...this.ref, reason });
  }

  close(toUs: number, refilled: number, note?: string): void {
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    clearTimeout(this.stateTimer);
    this.stateTimer = undefined;
    if (c.quietUs !== undefined) {
      if (!note && toUs - c.fromUs <= c.quietUs) return;
      this.ctx.events.emit('stream.down', { ...this.ref, reason: c.reason });
    }
    this.ctx.outbox.add('gap', this.record(c.fromUs, Math.max(toUs, c.fromUs), note ? `${c.reason}; ${note}` : c.reason, refilled));
    this.ctx.events.emit('stream.resumed', { ...this.ref, downMs: Date.now() - c.openedAt, refilled, ...(note ? { note } : {}) });
  }

  private record(fromUs: number, toUs: number | null, reason: string, refilled: number): Gap {
    return gapRecord({ exchange: this.ref.exchange, symbol: this.ref.symbol, channel: this.ref.channel, fromUs, toUs, reason, refilled });
  }
}
