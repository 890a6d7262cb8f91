import cron from 'node-cron';
import { z } from 'zod';
import type { SharedConfig } from '../core/config.ts';
import { durationSql, parseConfigInterval, type Duration } from '../core/time.ts';
import { CATALOG, KIND_OF_TABLE, OHLCV_VIEWS, RECORD_KINDS, RETENTION_TABLES, TABLE_NAMES, asTuple, topicFor, type OhlcvView, type RetentionTable } from '../schemas/catalog.ts';

/**
 * The `sink` section of the config: connectors (Kafka Connect-like: topics → table), the
 * aggregate refresh and retention schedules, the TimescaleDB policies and the REST API.
 * Intervals use the API's notation (`Nm`, `Nh`, `Nd`, `Nw`); null turns a policy off.
 */

export const INSERT_MODES = ['insert', 'upsert'] as const;
export type InsertMode = (typeof INSERT_MODES)[number];
export const ERROR_TOLERANCES = ['none', 'all'] as const;
export type ErrorTolerance = (typeof ERROR_TOLERANCES)[number];

const interval = z.string().regex(parseConfigInterval.regex, 'expected an interval like 30m, 6h, 7d or 2w');
const optionalInterval = interval.nullable();

/** A validated config interval (core/time.ts notation); a RangeError names anything else. */
function configInterval(v: string): Duration {
  const d = parseConfigInterval(v);
  if (!d) throw new RangeError(`not an interval: ${v}`);
  return d;
}

/** `7d` → milliseconds. */
export function intervalMs(v: string): number {
  return configInterval(v).ms;
}

/** `7d` → `7 days`, a PostgreSQL interval literal. */
export function intervalSql(v: string): string {
  return durationSql(configInterval(v));
}

const cronExpr = z.string().refine((s) => cron.validate(s), 'expected a cron expression (5 fields, or 6 with seconds first)');

export const CONNECTOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** One connector, as declared in the config file or POSTed to the REST API. */
export const connectorSchema = z.strictObject({
  name: z.string().regex(CONNECTOR_NAME, 'expected 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit'),
  /** Default: the topic of the table's record kind, `<kafka.topicPrefix>.<topic>` (schemas/catalog.ts). */
  topics: z.array(z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name')).min(1).optional(),
  table: z.enum(asTuple(TABLE_NAMES)),
  /** insert: the first version of a key wins (on conflict do nothing); upsert: the latest wins. */
  insertMode: z.enum(INSERT_MODES).default('upsert'),
  /** The conflict key; default the table's primary key. Needs a unique index on exactly these columns. */
  keyFields: z.array(z.string().min(1)).min(1).optional(),
  /** Rows per database transaction (also sizes the Kafka fetch). */
  batchMaxRows: z.int().min(1).max(100_000).default(5_000),
  /**
   * Latency target of the adaptive batching (batching.ts): 0 writes what is there as soon as the
   * writer is idle (what arrives during a transaction goes in the next); above 0 an idle writer
   * may hold a small batch until its oldest record waited this long (fewer transactions).
   */
  lingerMs: z.int().min(0).max(60_000).default(0),
  /** none: a bad record stops the connector (FAILED); all: it goes to the dead-letter topic. */
  errorTolerance: z.enum(ERROR_TOLERANCES).default('all'),
  /**
   * A consumer silent this long leaves the group and its partitions move (Kafka's
   * session.timeout.ms). It bounds recovery after an unclean death: the killed instance's
   * partitions, and a restarted instance's join, wait for it (kafkajs has no static membership).
   * 6 s is the broker's default minimum (group.min.session.timeout.ms); the sink heartbeats every
   * second from its own thread, its decoding and database writes don't block that.
   */
  sessionTimeoutMs: z.int().min(6_000).max(300_000).default(6_000),
  /** Default `<kafka.topicPrefix>.dlq`. */
  deadLetterTopic: z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name').optional(),
});
export type ConnectorInput = z.input<typeof connectorSchema>;
export type ConnectorSpec = z.infer<typeof connectorSchema>;

/** A connector with every default filled in (topics and dead-letter topic resolved). */
export type ConnectorConfig = Readonly<Required<Omit<ConnectorSpec, 'topics' | 'keyFields'>>> & {
  readonly topics: readonly string[];
  readonly keyFields: readonly string[] | undefined;
};

const refreshPolicy = (startOffset: string, endOffset: string, scheduleInterval: string) =>
  z
    .strictObject({ startOffset: optionalInterval.default(startOffset), endOffset: interval.default(endOffset), scheduleInterval: interval.default(scheduleInterval) })
    .prefault({});

const policiesSchema = z
  .strictObject({
    /** TimescaleDB columnstore (compression) of chunks older than this; null: none. */
    compressAfter: optionalInterval.default('7d'),
    /** Raw rows (TimescaleDB: whole chunks) older than this are dropped; null keeps them. */
    retention: z
      .strictObject(
        Object.fromEntries([...RETENTION_TABLES, ...OHLCV_VIEWS].map((t) => [t, optionalInterval.default(null)])) as Record<RetentionTable | OhlcvView, ReturnType<typeof optionalInterval.default>>,
      )
      .prefault({}),
    /** TimescaleDB refresh policies of the continuous aggregates (run by a server's background jobs). */
    refresh: z
      .strictObject({
        ohlcv_1m: refreshPolicy('3h', '1m', '1m'),
        ohlcv_1h: refreshPolicy('3d', '1h', '30m'),
        ohlcv_1d: refreshPolicy('30d', '1d', '1h'),
      } satisfies Record<OhlcvView, unknown>)
      .prefault({}),
  })
  .prefault({});

export const sinkSchema = z
  .strictObject({
    /** Absent: one connector per record kind of schemas/catalog.ts, reading its topic into its table. */
    connectors: z.array(connectorSchema).optional(),
    /** Refreshes the OHLCV aggregates (node-cron; 6 fields = with seconds). */
    refreshSchedule: cronExpr.default('*/30 * * * * *'),
    /** Plain PostgreSQL: deletes rows past their retention (TimescaleDB uses its policies). */
    retentionSchedule: cronExpr.default('7 * * * *'),
    policies: policiesSchema,
    /** The REST API (Kafka Connect-like): host, port (0: a free one), bearer token (SINK_API_TOKEN). */
    apiHost: z.string().min(1).default('127.0.0.1'),
    apiPort: z.int().min(0).max(65535).default(8083),
    apiToken: z.string().min(8, 'expected at least 8 characters').optional(),
  })
  .superRefine((s, ctx) => {
    const seen = new Set<string>();
    s.connectors?.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['connectors', i, 'name'], message: `duplicate connector name ${c.name}` });
      seen.add(c.name);
    });
  })
  .prefault({});
export type SinkConfig = z.infer<typeof sinkSchema>;

/** The config as the sink reads it. */
export type ConfigForSink = SharedConfig & { readonly sink: SinkConfig };

/** The default connectors: one per record table, reading its topic, in the catalog's insert mode. */
export function defaultConnectors(): ConnectorSpec[] {
  return RECORD_KINDS.map((k) => {
    const { table, insertMode } = CATALOG[k];
    return connectorSchema.parse({ name: table, table, insertMode });
  });
}

/** Fills in what depends on the rest of the config (the topic prefix). */
export function resolveConnector(spec: ConnectorSpec, topicPrefix: string): ConnectorConfig {
  return Object.freeze({
    ...spec,
    topics: Object.freeze([...(spec.topics ?? [topicFor(topicPrefix, KIND_OF_TABLE[spec.table])])]),
    keyFields: spec.keyFields ? Object.freeze([...spec.keyFields]) : undefined,
    deadLetterTopic: spec.deadLetterTopic ?? `${topicPrefix}.dlq`,
  });
}
