/**
 * Gateway events → Prometheus metrics (`tickflow_gateway_<what>_<unit>`) and structured logs.
 * Returns a function that detaches the listeners.
 */
import type { Logger } from '../core/log.ts';
import { counter, gauge, histogram } from '../core/metrics.ts';
import type { GatewayEventMap, GatewayEvents } from './events.ts';

const messages = counter('tickflow_gateway_messages_total', 'Records received from exchanges (stream batches and polls), per exchange and channel', ['exchange', 'channel']);
const reconnects = counter('tickflow_gateway_reconnects_total', 'Failed stream attempts followed by a reconnect, per exchange and channel', ['exchange', 'channel']);
const gaps = counter('tickflow_gateway_gaps_total', 'Stream outages (gap records opened), per exchange and channel', ['exchange', 'channel']);
const refilled = counter('tickflow_gateway_refilled_records_total', 'Records recovered over REST after an outage (trades refilled, candles filled)', ['exchange', 'channel']);
const produced = counter('tickflow_gateway_produced_records_total', 'Records acknowledged by Kafka, per record kind', ['kind']);
const latency = histogram('tickflow_gateway_produce_latency_seconds', 'Receive-to-ack latency of each record (gateway receive time to Kafka acknowledgement)', [], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
const buffered = gauge('tickflow_gateway_buffered_records', 'Records held in memory waiting for Kafka (queued, or sent and not yet acknowledged), per exchange; updated every second', ['exchange']);
const dropped = gauge('tickflow_gateway_dropped_records', 'Records dropped from a full buffer since start (each loss published as a kafka gap record), per exchange', ['exchange']);
const fallbacks = counter('tickflow_gateway_fallbacks_total', 'Websocket streams switched to REST polling (to="poll") and back (to="ws"), per exchange and channel', ['exchange', 'channel', 'to']);
const kafkaErrors = counter('tickflow_gateway_kafka_errors_total', 'Failed Kafka connects and sends (retried)');

export function attachTelemetry(events: GatewayEvents, log: Logger, opts: { logProblems: boolean } = { logProblems: true }): () => void {
  const progressAt = new Map<string, number>();
  const handlers: { [K in keyof GatewayEventMap]?: (e: GatewayEventMap[K]) => void } = {
    problem: (p) => (!opts.logProblems ? log.debug(p, p.message) : p.severity === 'error' ? log.error(p, p.message) : log.warn(p, p.message)),
    'exchange.ready': (e) => log.info(e.symbols.length > 20 ? { ...e, symbols: undefined } : e, `${e.exchange}: running ${e.symbols.length > 20 ? `${e.symbols.length} instruments` : e.symbols.join(', ')} (${e.channels.join(', ')})`),
    'instruments.changed': (e) => {
      if (e.listed.length + e.delisted.length > 0) log.info(e, `${e.exchange}: markets re-check: ${e.listed.length} listed (started), ${e.delisted.length} delisted (stopped)`);
    },
    'stream.messages': (e) => messages.inc({ exchange: e.exchange, channel: e.channel }, e.count),
    'stream.down': (e) => {
      gaps.inc({ exchange: e.exchange, channel: e.channel });
      log.warn(e, `${e.exchange} ${e.symbol} ${e.channel}${e.timeframe ? ` ${e.timeframe}` : ''} stream down: ${e.reason}`);
    },
    'stream.retry': (e) => {
      reconnects.inc({ exchange: e.exchange, channel: e.channel });
      log.debug(e, 'stream retry');
    },
    'stream.resumed': (e) =>
      log[e.note ? 'warn' : 'info'](e, `${e.exchange} ${e.symbol} ${e.channel} resumed after ${(e.downMs / 1000).toFixed(1)}s, ${e.refilled} refilled${e.note ? `; ${e.note}` : ''}`),
    'stream.fallback': (e) => {
      fallbacks.inc({ exchange: e.exchange, channel: e.channel, to: e.to });
      const what = `${e.exchange} ${e.symbol} ${e.channel}${e.timeframe ? ` ${e.timeframe}` : ''}`;
      const where = `${e.url ?? 'websocket URL unknown'}${e.status !== undefined ? ` (HTTP ${e.status})` : ''}`;
      if (e.to === 'poll') log.warn(e, `${what}: websocket ${where} keeps failing; polling ${e.call} over REST every ${(e.pollIntervalMs / 1000).toFixed(1)}s until it recovers: ${e.reason}`);
      else log.info(e, `${what}: websocket ${where} is back (${e.reason}); streaming again`);
    },
    'refill.retry': (e) =>
      log.warn(e, `${e.exchange} ${e.symbol} ${e.channel} refill failing (attempt ${e.attempt}, ${e.refilled} refilled so far), retrying in ${(e.delayMs / 1000).toFixed(1)}s: ${e.reason}`),
    refill: (e) => refilled.inc({ exchange: e.exchange, channel: e.channel }, e.count),
    'kafka.connected': (e) => log.info(e, 'connected to Kafka'),
    'kafka.error': (e) => {
      kafkaErrors.inc();
      log[e.attempt <= 1 || e.attempt % 10 === 0 ? 'warn' : 'debug'](e, `Kafka: ${e.reason}`);
    },
    'produce.ack': (e) => {
      const byKind = new Map<string, number>();
      for (const r of e.records) {
        latency.observe(Math.max(0, e.ackedAtUs - r.receivedAtUs) / 1e6);
        byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1);
      }
      for (const [kind, n] of byKind) produced.inc({ kind }, n);
    },
    'buffer.size': (e) => {
      buffered.set({ exchange: e.exchange }, e.size);
      dropped.set({ exchange: e.exchange }, e.dropped);
    },
    'buffer.drop': (e) => {
      dropped.set({ exchange: e.exchange }, e.count);
      log.error(e, `${e.exchange}: buffer full while Kafka is unreachable, dropped ${e.count} records so far (reported as kafka gap records)`);
    },
    'backfill.progress': (e) => {
      const k = `${e.exchange}\u0000${e.symbol}\u0000${e.timeframe}`;
      const now = Date.now();
      if (e.fraction < 1 && now - (progressAt.get(k) ?? 0) < 5_000) return;
      progressAt.set(k, now);
      log.info(e, `${e.exchange} ${e.symbol} ${e.timeframe} history: ${e.candles} candles, ${(e.fraction * 100).toFixed(0)}%`);
    },
  };
  for (const [name, fn] of Object.entries(handlers)) events.on(name as keyof GatewayEventMap, fn as never);
  return () => {
    for (const [name, fn] of Object.entries(handlers)) events.off(name as keyof GatewayEventMap, fn as never);
  };
}
