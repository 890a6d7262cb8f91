/**
 * The broadcast runtime's metrics (`tickflow_broadcast_<what>_<unit>`, core/metrics.ts), all
 * declared here, and the one subscriber that turns its events (events.ts) into them and into log
 * lines.
 */
import { logger } from '../core/log.ts';
import { counter, gauge, histogram } from '../core/metrics.ts';
import type { BroadcastEmitter } from './events.ts';

const log = logger('broadcast');

const m = {
  delivered: counter('tickflow_broadcast_delivered_total', 'Deliveries acknowledged by the broadcaster (HTTP 2xx, Kafka ack)', ['broadcaster']),
  failed: counter('tickflow_broadcast_failed_total', 'Deliveries that exhausted their retries (sent to the dead-letter topic)', ['broadcaster']),
  retries: counter('tickflow_broadcast_retries_total', 'Delivery attempts retried (timeout, 408/429/5xx, connection error)', ['broadcaster']),
  latency: histogram('tickflow_broadcast_delivery_latency_seconds', 'Record time (exchange ts) to the delivery acknowledged', ['broadcaster'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]),
  records: counter('tickflow_broadcast_records_total', 'Records consumed and matched against the registrations', ['topic']),
  matched: counter('tickflow_broadcast_matched_total', 'Record × registration matches (deliveries queued)', ['topic']),
  lag: gauge('tickflow_broadcast_consumer_lag_records', 'Records in the partition not yet delivered and committed (high watermark - stored next offset)', ['topic', 'partition']),
  registrations: gauge('tickflow_broadcast_registrations', 'Registrations loaded (paused ones included)'),
  problems: counter('tickflow_broadcast_problems_total', 'Failures the runtime retries (database, dead-letter topic, reload) and records it skips (decode)', ['stage']),
};

/** Feeds metrics and logs from the events of one emitter (failures at warn, routine steps at debug). */
export function attachTelemetry(events: BroadcastEmitter): void {
  events.on('reload', (e) => {
    m.registrations.set(e.registrations);
    for (const s of e.skipped) log.error(s, 'registration skipped');
    log.info({ registrations: e.registrations, broadcasters: e.broadcasters, topics: e.topics }, 'registrations loaded');
  });
  events.on('assigned', (e) => (e.rebalance ? log.info(e, 'partitions assigned') : log.debug(e, 'partitions assigned')));
  events.on('delivered', (e) => {
    m.delivered.inc({ broadcaster: e.broadcaster });
    m.latency.observe({ broadcaster: e.broadcaster }, Math.max(0, e.latencyMs) / 1000);
  });
  events.on('retry', (e) => {
    m.retries.inc({ broadcaster: e.broadcaster });
    log.debug(e, 'delivery failed; retrying');
  });
  events.on('failed', (e) => {
    m.failed.inc({ broadcaster: e.broadcaster });
    log.warn(e, 'delivery failed; sent to the dead-letter topic');
  });
  events.on('batch', (e) => {
    m.records.inc({ topic: e.topic }, e.records);
    m.matched.inc({ topic: e.topic }, e.matched);
    log.debug(e, 'batch delivered');
  });
  events.on('commit', (e) => {
    for (const o of e.offsets) m.lag.set({ topic: o.topic, partition: String(o.partition) }, o.lag);
  });
  events.on('problem', (e) => {
    m.problems.inc({ stage: e.stage });
    log.warn(e, e.stage === 'decode' ? 'broadcast skipped a record it cannot decode (topic:partition:offset in error)' : 'broadcast problem; retrying');
  });
}
