/**
 * The sink's metrics (`tickflow_sink_<what>_<unit>`, core/metrics.ts), all declared here, and
 * the one subscriber that turns its events (events.ts) into them and into log lines.
 */
import { logger } from '../core/log.ts';
import { counter, gauge, histogram } from '../core/metrics.ts';
import type { SinkEmitter } from './events.ts';

const log = logger('sink');

const m = {
  rows: counter('tickflow_sink_rows_written_total', 'Rows written (inserted or updated) per table', ['connector', 'table']),
  batchRows: histogram('tickflow_sink_batch_rows', 'Kafka messages per database transaction', ['connector'], [10, 100, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000]),
  batches: counter('tickflow_sink_batches_total', 'Database transactions by why they started: idle (written at once), backlog (queued behind the previous one), full (batchMaxRows), linger (lingerMs reached)', ['connector', 'trigger']),
  batchSeconds: histogram('tickflow_sink_batch_seconds', 'Duration of one batch transaction', ['connector'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  lag: gauge('tickflow_sink_consumer_lag_records', 'Records in the partition not yet written (high watermark - stored next offset)', ['connector', 'topic', 'partition']),
  deadLettered: counter('tickflow_sink_dead_lettered_records_total', 'Records sent to the dead-letter topic', ['connector', 'topic', 'stage']),
  retries: counter('tickflow_sink_retries_total', 'Batches retried after a database, dead-letter topic or schema registry failure', ['connector']),
  refreshSeconds: histogram('tickflow_sink_refresh_seconds', 'Duration of an aggregate refresh', ['what'], [0.01, 0.05, 0.1, 0.5, 1, 5, 30]),
  refreshErrors: counter('tickflow_sink_refresh_errors_total', 'Aggregate refreshes that failed', ['what']),
  retentionRows: counter('tickflow_sink_retention_deleted_rows_total', 'Rows deleted by scheduled retention (plain PostgreSQL)', ['table']),
};

/**
 * Feeds metrics and logs from the events of one emitter. At info only what a person running the
 * sink needs (failures, outages and recoveries, rebalances); routine start-up and shutdown
 * steps (each connector's state, its first partition assignment) at debug.
 */
export function attachTelemetry(events: SinkEmitter): void {
  const registryWarned = new Map<string, number>();
  events.on('assigned', (e) => (e.rebalance ? log.info(e, 'partitions assigned') : log.debug(e, 'partitions assigned')));
  events.on('state', (e) => (e.state === 'FAILED' ? log.error(e, 'connector failed') : log.debug(e, 'connector state')));
  events.on('batch', (e) => {
    m.rows.inc({ connector: e.connector, table: e.table }, e.rows);
    m.batchRows.observe({ connector: e.connector }, e.messages);
    m.batches.inc({ connector: e.connector, trigger: e.trigger });
    m.batchSeconds.observe({ connector: e.connector }, e.seconds);
    log.debug(e, 'batch written');
  });
  events.on('commit', (e) => {
    for (const o of e.offsets) {
      if (o.lag !== undefined) m.lag.set({ connector: e.connector, topic: o.topic, partition: String(o.partition) }, o.lag);
    }
  });
  events.on('deadLetter', (e) => {
    m.deadLettered.inc({ connector: e.connector, topic: e.topic, stage: e.stage });
    log.warn(e, 'record dead-lettered');
  });
  events.on('retry', (e) => {
    m.retries.inc({ connector: e.connector });
    if (e.stage === 'write') {
      log.warn(e, 'batch write failed; retrying');
      return;
    }
    // The registry's wait: each of a connector's chunks retries on its own; one line per
    // connector at first and then about every 30 s, the rest at debug.
    const now = Date.now();
    if (now - (registryWarned.get(e.connector) ?? 0) >= 30_000) {
      registryWarned.set(e.connector, now);
      log.warn(e, 'waiting for the schema registry to decode records; nothing is committed meanwhile (retrying)');
    } else log.debug(e, 'waiting for the schema registry to decode records; retrying');
  });
  events.on('refresh', (e) => {
    m.refreshSeconds.observe({ what: e.what }, e.seconds);
    log.debug(e, 'aggregates refreshed');
  });
  events.on('refreshError', (e) => {
    m.refreshErrors.inc({ what: e.what });
    log.warn(e, 'aggregate refresh failed');
  });
  events.on('retention', (e) => {
    m.retentionRows.inc({ table: e.table }, e.deleted);
    if (e.deleted > 0) log.info(e, 'retention deleted rows');
  });
}
