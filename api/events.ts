/**
 * The query API's typed event map (core/events.ts): requests that fail, the live stream's hub
 * (Kafka) and its websocket sessions. `telemetry.ts` turns the events into metrics and log lines;
 * tests may listen too (`api.events`).
 */
import { TypedEvents } from '../core/events.ts';

export interface ApiEventMap {
  /** A request answered with a 503: the database is unavailable or busy. */
  'request.unavailable': { reqId: string; url: string; error: string };
  /** A request failed unexpectedly (a 500: a bug). */
  'request.failed': { reqId: string; url: string; err: unknown };
  /** The hub cannot reach Kafka yet; it tries again after `delayMs`. */
  'hub.waiting': { attempt: number; delayMs: number; error: string };
  /** The hub stopped trying to reach Kafka (/v1/stream stays without live data). */
  'hub.gaveUp': { error: string };
  /** The hub had not caught up with the topics after 30 s: it goes live anyway. */
  'hub.late': { groupId: string };
  /** The hub serves live records (`recent`: records held for replay). */
  'hub.live': { groupId: string; recent: number };
  /** A Kafka record the hub cannot decode, skipped. */
  'hub.undecodable': { topic: string; partition: number; offset: number; error: string };
  'hub.closeFailed': { error: string };
  /** A /v1/stream websocket opened or closed. */
  'session.opened': Record<string, never>;
  'session.closed': Record<string, never>;
  /** A client disconnected for falling too far behind (api.stream.maxBufferedBytes). */
  'session.slow': { bufferedBytes: number };
  /** A subscription failed (the client is told why; the session stays open). */
  'session.failed': { error: string };
  'session.socketError': { error: string };
  /** POST /v1/events answered: events made now, and those an earlier post of their idempotency key made. */
  'events.posted': { created: number; duplicates: number };
  /** Kafka did not take records the API publishes (the post is answered 503). */
  'events.publishFailed': { kind: string; error: string };
}

export class ApiEvents extends TypedEvents<ApiEventMap> {}

declare module 'fastify' {
  interface FastifyInstance {
    /** The API's events (decorated by buildApi before any plugin). */
    events: ApiEvents;
  }
}
