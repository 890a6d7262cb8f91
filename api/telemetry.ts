/**
 * The query API's metrics (`tickflow_api_<what>_<unit>`, core/metrics.ts), all declared here,
 * and the one subscriber that turns its events (events.ts) into metrics and log lines. The
 * per-request and per-record figures (request and statement durations, records consumed and
 * sent) are observed where they happen, through `metrics`: an event per record would cost more
 * than the count it feeds.
 */
import { logger } from '../core/log.ts';
import { counter, gauge, histogram } from '../core/metrics.ts';
import type { ApiEvents } from './events.ts';

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const metrics = {
  requestDuration: histogram('tickflow_api_request_duration_seconds', 'HTTP requests of the query API, by route, method and status', ['route', 'method', 'status'], SECONDS),
  queryDuration: histogram('tickflow_api_db_query_duration_seconds', 'Database statements of the query API, by query', ['query'], SECONDS),
  consumed: counter('tickflow_api_stream_consumed_records_total', 'Records the API consumed from Kafka for /v1/stream, by channel', ['channel']),
  undecodable: counter('tickflow_api_stream_decode_errors_total', 'Kafka records the API could not decode (skipped)', ['topic']),
  clients: gauge('tickflow_api_stream_clients', 'Open /v1/stream websocket connections'),
  sent: counter('tickflow_api_stream_sent_records_total', 'Records sent to /v1/stream clients, by channel and phase (replay, live)', ['channel', 'phase']),
  slowClients: counter('tickflow_api_stream_slow_clients_total', 'Clients disconnected for falling too far behind'),
  eventsPosted: counter('tickflow_api_events_posted_total', 'User events accepted by POST /v1/events, by outcome (created, duplicate: an idempotency key posted again)', ['outcome']),
  eventsPublishFailed: counter('tickflow_api_events_publish_failures_total', 'POST /v1/events answered 503 because Kafka did not take the records'),
};

/** Feeds metrics and logs from the events of one API. */
export function attachTelemetry(events: ApiEvents): void {
  const log = logger('api');
  const streamLog = logger('api-stream');
  events.on('request.unavailable', (e) => log.warn({ reqId: e.reqId, err: e.error, url: e.url }, 'request answered with 503'));
  events.on('request.failed', (e) => log.error({ reqId: e.reqId, err: e.err, url: e.url }, 'request failed'));
  events.on('hub.waiting', (e) => streamLog.warn({ err: e.error, attempt: e.attempt, delayMs: e.delayMs }, 'live stream: Kafka not reachable yet; retrying'));
  events.on('hub.gaveUp', (e) => streamLog.error({ err: e.error }, 'live stream: gave up connecting to Kafka'));
  events.on('hub.late', (e) => streamLog.warn({ groupId: e.groupId }, 'live stream: not caught up with the topics after 30 s; going live anyway'));
  events.on('hub.live', (e) => streamLog.info({ groupId: e.groupId, recent: e.recent }, 'live stream: consuming'));
  events.on('hub.undecodable', (e) => {
    metrics.undecodable.inc({ topic: e.topic });
    streamLog.warn({ topic: e.topic, partition: e.partition, offset: e.offset, err: e.error }, 'live stream: skipped a record it cannot decode');
  });
  events.on('hub.closeFailed', (e) => streamLog.warn({ err: e.error }, 'live stream: consumer disconnect failed'));
  events.on('session.opened', () => metrics.clients.inc());
  events.on('session.closed', () => metrics.clients.dec());
  events.on('session.slow', () => metrics.slowClients.inc());
  events.on('session.failed', (e) => streamLog.warn({ err: e.error }, 'stream subscription failed'));
  events.on('session.socketError', (e) => streamLog.debug({ err: e.error }, 'stream client socket error'));
  events.on('events.posted', (e) => {
    if (e.created) metrics.eventsPosted.inc({ outcome: 'created' }, e.created);
    if (e.duplicates) metrics.eventsPosted.inc({ outcome: 'duplicate' }, e.duplicates);
  });
  events.on('events.publishFailed', (e) => {
    metrics.eventsPublishFailed.inc();
    log.warn({ kind: e.kind, err: e.error }, 'publishing to Kafka failed; the post was answered 503');
  });
}
