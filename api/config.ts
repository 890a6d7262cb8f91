import { z } from 'zod';
import type { SharedConfig } from '../core/config.ts';

/**
 * The `api:` section of the config (composed with the others in config/schema.ts). Every limit that keeps a request bounded
 * lives here, with its unit in the name: a request the limits cannot answer in one response is
 * paged (`next` cursor) or refused with a 400 naming the limit, never left to run unbounded.
 */
const streamSchema = z
  .strictObject({
    /** Serve `/v1/stream` (needs Kafka); false: the route answers with an error message. */
    enabled: z.boolean().default(true),
    /**
     * Records the API's consumer keeps from the last this-many ms (by Kafka timestamp), and the
     * look-back it starts from. A `since` replay is seamless as long as the sink lags Kafka by
     * less than this (see api/stream/session.ts).
     */
    recentWindowMs: z.int().min(0).max(3_600_000).default(120_000),
    /**
     * Cap on the records held for that window, whatever their age (memory bound): about 0.2 KB of
     * heap and 0.15 KB of buffers each (a record is held as its Kafka value), so the default holds
     * up to ~35 MB. Past it the oldest go first, and a `since`
     * replay is seamless only while the sink lags Kafka by less than what the cap still holds.
     */
    recentMaxRecords: z.int().min(1_000).max(10_000_000).default(100_000),
    /** A `since` replay larger than this is refused (fetch older history from the REST routes). */
    replayMaxRows: z.int().min(1).max(10_000_000).default(500_000),
    /** Rows per replay message; the replay waits for the socket to drain between them. */
    replayPageRows: z.int().min(1).max(100_000).default(2_000),
    /** A client whose unsent backlog exceeds this is disconnected (close 1013). */
    maxBufferedBytes: z.int().min(65_536).default(32 * 1024 * 1024),
    /** Instruments one subscription may name. */
    maxInstruments: z.int().min(1).max(10_000).default(200),
  })
  .prefault({});

/** POST /v1/events: user events, produced to Kafka (`<prefix>.events`) and written by the sink. */
const eventsSchema = z
  .strictObject({
    /** An event's `data` (the JSON payload, as JSON text) at most this many bytes; larger is a 400 naming `data`. */
    maxDataBytes: z.int().min(256).max(1_048_576).default(65_536),
    /** Events in one POST at most (a JSON array); more is a 400 naming the body. */
    maxBatch: z.int().min(1).max(10_000).default(1_000),
    /** A POST body at most this many bytes (413 beyond). */
    maxBodyBytes: z.int().min(4_096).max(67_108_864).default(4_194_304),
  })
  .prefault({});

export const apiSchema = z
  .strictObject({
    /** Interface the HTTP server binds. */
    host: z.string().min(1).default('127.0.0.1'),
    /** TCP port; 0 picks a free one. */
    port: z.int().min(0).max(65535).default(8080),
    /** Rows in one response at most (and the default `limit`); longer ranges are paged. */
    maxRows: z.int().min(1).max(1_000_000).default(10_000),
    /**
     * Rows one query may read to build a page: rollup rows when re-bucketing (e.g. 1m rows
     * for 5m candles), raw rows when sampling a raw table. Pages shrink to stay under it.
     */
    maxScanRows: z.int().min(1_000).max(100_000_000).default(1_000_000),
    /**
     * Server-side statement timeout of the API's own database connections, and the client-side
     * bound after which a request gets its answer even if the database keeps working (the
     * embedded database cannot cancel a statement).
     */
    statementTimeoutMs: z.int().min(100).max(600_000).default(10_000),
    /**
     * Bearer token (env TICKFLOW_API_TOKEN): when set, every request other than GET/HEAD/OPTIONS,
     * and every request to /v1/broadcasters and /v1/registrations, needs `Authorization: Bearer
     * <token>` (401 otherwise). null: open, for a local setup.
     */
    token: z.string().min(8, 'expected at least 8 characters').nullable().default(null),
    /** The OpenAPI document at /docs/json and its UI at /docs. */
    docs: z.boolean().default(true),
    stream: streamSchema,
    events: eventsSchema,
  })
  .prefault({});

export type ApiConfig = z.infer<typeof apiSchema>;

/** The config as the API reads it. */
export type ConfigForApi = SharedConfig & {
  readonly api: ApiConfig;
  /** The events retention (`sink.policies.retention.events`): idempotency keys expire with it (api/event-keys.ts). */
  readonly sink?: { readonly policies?: { readonly retention?: { readonly events?: string | null } } };
};
