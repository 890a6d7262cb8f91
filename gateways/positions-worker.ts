/**
 * The positions scan (positions.ts readPositions) in a worker thread: a shard takeover reads
 * where hundreds of moved-in streams stopped while the process serves its other instruments,
 * whose event-loop turns are long under load; the scan's Kafka round trips (connect, topic
 * offsets, a consumer group's join, fetch rounds) each wait a turn there, so run in the main
 * thread it took 15-30 s at 700 instruments. Here it has an event loop of its own.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createCodec } from '../core/avro.ts';
import { logger } from '../core/log.ts';
import { readPositions, type PositionsWanted, type ReadPositionsOptions } from './positions.ts';
import type { KafkaSettings } from '../core/kafka.ts';

export interface PositionsJob {
  readonly settings: KafkaSettings & { readonly schemaRegistryUrl?: string | undefined };
  readonly wanted: readonly PositionsWanted[];
  readonly options: Omit<ReadPositionsOptions, 'log'>;
}

const job = workerData as PositionsJob;
const log = logger('gateway');
readPositions(job.settings, createCodec(job.settings), job.wanted, { ...job.options, log }).then(
  (p) => parentPort!.postMessage({ entries: p.entries() }),
  (e: unknown) => parentPort!.postMessage({ error: e instanceof Error ? e.message : String(e), code: (e as { code?: unknown }).code }),
);
