import { TypedEvents } from '../core/events.ts';

/**
 * The broadcast runtime's one typed event map (core/events.ts): the runner and the broadcasters
 * emit, and one subscriber (telemetry.ts) turns each event into metrics and a log line; tests and
 * the benchmark listen to the same events.
 */
export interface BroadcastEvents {
  /** Registrations and broadcasters (re)loaded from the database. */
  reload: { registrations: number; broadcasters: number; topics: string[]; skipped: { name: string; reason: string }[] };
  /** The consumer joined its group; partitions assigned to this instance, each with the offset it starts at. */
  assigned: { partitions: { topic: string; partition: number; offset: number }[]; rebalance: boolean };
  /** One delivery acknowledged by its broadcaster; latency from the record's time to the acknowledgement. */
  delivered: { broadcaster: string; registration: string; attempts: number; latencyMs: number };
  /** A delivery attempt failed for a reason worth retrying. */
  retry: { broadcaster: string; registration: string; id: string; attempt: number; delayMs: number; error: string };
  /** A delivery exhausted its budget (or was refused): it is in the dead-letter topic. */
  failed: { broadcaster: string; registration: string; id: string; attempts: number; error: string };
  /** One batch of one partition delivered and committed (offsets, predicate state, stats in one transaction). */
  batch: { topic: string; partition: number; records: number; matched: number; delivered: number; failed: number; seconds: number };
  /** Offsets now stored in the database, with the lag behind the partition's high watermark. */
  commit: { offsets: { topic: string; partition: number; nextOffset: number; lag: number }[] };
  /** Something the runtime retries (the database, the dead-letter topic, a reload), or a record it skips (decode: `topic:partition:offset: why`). */
  problem: { stage: 'reload' | 'commit' | 'dead-letter' | 'consumer' | 'decode'; error: string };
}

export class BroadcastEmitter extends TypedEvents<BroadcastEvents> {}
