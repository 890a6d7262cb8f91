/**
 * The gateway's one instrumentation point: every part reports through this typed event map
 * (core/events.ts), and `telemetry.ts` turns the events into metrics and logs (tests and the
 * benchmark listen to the same events).
 */
import type { Channel } from './config.ts';
import type { ErrorCode } from '../core/errors.ts';
import { TypedEvents } from '../core/events.ts';
import type { RecordKind } from '../schemas/index.ts';

/** A start-up or run-time problem with one exchange entry, reported by name. */
export interface Problem {
  /** The entry's name (`name`, else its id), or `exchanges[i]` when the entry has neither. */
  readonly exchange: string;
  /** Position of the entry in the config's `exchanges` list. */
  readonly index: number;
  readonly severity: 'error' | 'warning';
  readonly code: ErrorCode;
  /** One line, naming the entry and what is wrong with it. */
  readonly message: string;
  readonly symbol?: string;
  readonly channel?: Channel;
}

export interface StreamRef {
  readonly exchange: string;
  readonly channel: Channel;
  readonly symbol: string;
  /** For ohlcv: the timeframe. */
  readonly timeframe?: string;
}

/** A record queued for Kafka, already encoded. */
export interface QueuedRecord {
  readonly kind: RecordKind;
  readonly topic: string;
  readonly key: string;
  readonly value: Buffer;
  readonly exchange: string;
  readonly symbol: string;
  /** The record's `ts`, µs. */
  readonly ts: number;
  /** The record's `received_at`, µs: where receive-to-ack latency starts. */
  readonly receivedAtUs: number;
}

export interface GatewayEventMap {
  problem: Problem;
  /** An entry passed validation and its streams and polls are starting. */
  'exchange.ready': { exchange: string; symbols: readonly string[]; channels: readonly string[] };
  /** A markets re-check changed an entry's instruments (patterns, `all`): listings started, delisted ones stopped. */
  'instruments.changed': { exchange: string; listed: readonly string[]; delisted: readonly string[] };
  /** Messages received on a stream or poll (one event per batch). */
  'stream.messages': StreamRef & { count: number };
  /** A stream dropped or went silent: a gap is open. */
  'stream.down': StreamRef & { reason: string };
  /** A reconnect attempt failed; the next one waits `delayMs`. */
  'stream.retry': StreamRef & { attempt: number; delayMs: number; reason: string };
  /** The stream is back; the gap is closed with what REST recovered (`note`: what it could not). */
  'stream.resumed': StreamRef & { downMs: number; refilled: number; note?: string };
  /**
   * A websocket stream switched source: `to: 'poll'` when it kept failing (`url`/`status`: where
   * and how, as far as known) and `call` is polled every `pollIntervalMs`; `to: 'ws'` when a probe
   * got a message again.
   */
  'stream.fallback': StreamRef & { to: 'poll' | 'ws'; call: string; pollIntervalMs: number; url: string | undefined; status: number | undefined; reason: string };
  /** A REST refill failed and is tried again after `delayMs` (`refilled`: records recovered so far). */
  'refill.retry': StreamRef & { attempt: number; delayMs: number; refilled: number; reason: string };
  /** Records recovered over REST (trades refilled, candles filled). */
  refill: StreamRef & { count: number };
  'kafka.connected': { brokers: readonly string[] };
  'kafka.error': { reason: string; attempt: number; delayMs: number };
  /** A batch acknowledged by Kafka. */
  'produce.ack': { records: readonly QueuedRecord[]; ackedAtUs: number };
  /** Records dropped from a full buffer (they become a `kafka` gap record). */
  'buffer.drop': { exchange: string; count: number };
  /** Records an entry holds for Kafka (buffered and in flight) and has dropped since start; every second. */
  'buffer.size': { exchange: string; size: number; dropped: number };
  /** Candle history progress (start-up lookback, gap fills, `tickflow backfill`). */
  'backfill.progress': { exchange: string; symbol: string; timeframe: string; candles: number; fraction: number };
}

export class GatewayEvents extends TypedEvents<GatewayEventMap> {}
