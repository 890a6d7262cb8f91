import { TypedEvents } from '../core/events.ts';
import type { WriteTrigger } from './batching.ts';
import type { TableName } from './tables.ts';

/**
 * The sink's one typed event map (core/events.ts): connectors emit, and one subscriber
 * (telemetry.ts) turns each event into metrics and a log line (tests can listen too).
 */
export interface SinkEvents {
  /** A connector's consumer joined its group; partitions assigned to this instance (rebalance: not its first join). */
  assigned: { connector: string; partitions: { topic: string; partition: number; offset: number | null }[]; rebalance: boolean };
  state: { connector: string; state: ConnectorState; reason?: string };
  /** One database transaction committed. */
  batch: { connector: string; table: TableName; trigger: WriteTrigger; messages: number; rows: number; skipped: number; deadLettered: number; seconds: number };
  /** Offsets now stored in the database, with the lag behind the partition's high watermark. */
  commit: { connector: string; offsets: { topic: string; partition: number; nextOffset: number; lag: number | undefined }[] };
  deadLetter: { connector: string; topic: string; partition: number; offset: string; stage: DeadLetterStage; reason: string };
  /**
   * A batch failed for a reason that is not the records': its write (database or DLQ
   * unreachable) or its decoding (schema registry unreachable); retried.
   */
  retry: { connector: string; stage: 'decode' | 'write'; attempt: number; delayMs: number; error: string };
  refresh: { what: string; seconds: number; from: string | null; to: string };
  refreshError: { what: string; error: string };
  retention: { table: string; deleted: number };
}

export const CONNECTOR_STATES = ['RUNNING', 'PAUSED', 'FAILED', 'STOPPED'] as const;
export type ConnectorState = (typeof CONNECTOR_STATES)[number];
export const DEAD_LETTER_STAGES = ['decode', 'validate', 'write'] as const;
export type DeadLetterStage = (typeof DEAD_LETTER_STAGES)[number];

export class SinkEmitter extends TypedEvents<SinkEvents> {}
