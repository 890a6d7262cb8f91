/**
 * When a connector's writer writes (Nagle-like adaptive batching): a record is written as soon
 * as it is there while the writer is idle, so at a low rate a row is visible one fetch and one
 * transaction after it reached Kafka, without waiting for a batch to fill; while a transaction
 * is in flight the records fetched meanwhile queue up and the next transaction takes them all
 * (up to batchMaxRows), so under load transactions grow by themselves and throughput stays
 * high. `lingerMs` (per connector, default 0) is a latency target for those who prefer fewer,
 * larger transactions at moderate rates: an idle writer may then hold a small batch until its
 * oldest record has waited that long. Kafka's fetches never wait for a batch (minBytes 1,
 * connector.ts): the broker answers as soon as a record is there.
 */

/** Why a transaction was started now (the `trigger` label of tickflow_sink_batches_total). */
export const WRITE_TRIGGERS = ['idle', 'backlog', 'full', 'linger'] as const;
export type WriteTrigger = (typeof WRITE_TRIGGERS)[number];

export interface QueueState {
  /** Decoded messages at the head of the queue, ready to be written. */
  readonly readyMessages: number;
  /** The queue cannot take another chunk (the batch callback waits for space). */
  readonly full: boolean;
  /** The oldest ready chunk was queued while the previous transaction was in flight. */
  readonly queuedDuringWrite: boolean;
  /** How long the oldest ready chunk has been queued, ms. */
  readonly oldestAgeMs: number;
}

export interface BatchingPolicy {
  readonly batchMaxRows: number;
  readonly lingerMs: number;
}

/** Write now (and why), or wait at most `waitMs` for more (new chunks end the wait early). */
export type WriteDecision = { readonly write: WriteTrigger } | { readonly waitMs: number };

export function writeDecision(s: QueueState, p: BatchingPolicy): WriteDecision {
  if (s.readyMessages >= p.batchMaxRows || s.full) return { write: 'full' };
  // Nagle: what queued up behind a transaction in flight goes in the next one at once.
  if (s.queuedDuringWrite) return { write: 'backlog' };
  if (p.lingerMs <= 0) return { write: 'idle' };
  if (s.oldestAgeMs >= p.lingerMs) return { write: 'linger' };
  return { waitMs: p.lingerMs - s.oldestAgeMs };
}
