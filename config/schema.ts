/**
 * The whole configuration: one YAML file (config/tickflow.yaml lists every key with its default),
 * validated once at start-up against this schema, then frozen. Environment variables override
 * endpoints and secrets (ENV_OVERRIDES).
 *
 * This module sits above the parts: it composes the shared sections (core/config.ts) with each
 * part's own (gateways/config.ts, sink/config.ts, api/config.ts, broadcast/config.ts), so core depends on no part and
 * no part on another. It lives beside the YAML files it validates rather than in cli/ because the
 * benches and tests load configs too; parts never import it (each reads its own slice,
 * `ConfigForApi`, `ConfigForSink`, `ConfigForGateway`, which the whole `Config` satisfies).
 */
import { z } from 'zod';
import { apiSchema } from '../api/config.ts';
import { broadcastSchema } from '../broadcast/config.ts';
import { applyEnv, databaseSchema, deepFreeze, describeIssues, infraSchema, kafkaSchema, readConfigFile } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { gatewaySchema, parseExchangeEntries, type ExchangeEntry, type ExchangeEntryError } from '../gateways/config.ts';
import { sinkSchema } from '../sink/config.ts';

/**
 * How `tickflow start` and `tickflow sim` run the offline exchange (sim/ itself takes plain
 * options and reads no config, so its section lives here, with the commands that map it).
 */
const simSchema = z
  .strictObject({
    /**
     * Whether `tickflow start` runs the offline exchange (sim/): auto = when an enabled exchange
     * entry is named `sim` (the default config's), so a config of live exchanges runs without it.
     */
    enabled: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    /** The port the `sim` exchange entry's urls point at. */
    port: z.int().min(0).max(65535).default(9500),
    seed: z.int().default(1),
    /** Trades per second per symbol. */
    tradesPerSecond: z.number().positive().max(1_000_000).default(5),
  })
  .prefault({});

export const configSchema = z.strictObject({
  kafka: kafkaSchema,
  database: databaseSchema,
  infra: infraSchema,
  sim: simSchema,
  gateway: gatewaySchema,
  /** Validated entry by entry (see parseConfig): one bad entry doesn't stop the others. */
  exchanges: z.array(z.unknown()).default([]),
  sink: sinkSchema,
  api: apiSchema,
  broadcast: broadcastSchema,
});

export type Config = Readonly<Omit<z.infer<typeof configSchema>, 'exchanges'>> & {
  readonly exchanges: readonly ExchangeEntry[];
  /** Entries that failed validation, reported at start-up by the gateway, skipped. */
  readonly exchangeErrors: readonly ExchangeEntryError[];
  /** The file this came from, or undefined for defaults only. */
  readonly source: string | undefined;
};

/** Environment variables that override config keys (endpoints and secrets). */
export const ENV_OVERRIDES = {
  KAFKA_BROKERS: 'kafka.brokers',
  SCHEMA_REGISTRY_URL: 'kafka.schemaRegistryUrl',
  KAFKA_TOPIC_PREFIX: 'kafka.topicPrefix',
  DATABASE_URL: 'database.url',
  TICKFLOW_DB_DIR: 'database.dataDir',
  SINK_API_TOKEN: 'sink.apiToken',
  TICKFLOW_API_TOKEN: 'api.token',
} as const;

/** Variables holding a comma-separated list. */
const LIST_OVERRIDES: ReadonlySet<string> = new Set(['KAFKA_BROKERS']);

/** Validates an already-parsed document; throws CONFIG_INVALID naming every bad key. */
export function parseConfig(raw: unknown, opts: { env?: NodeJS.ProcessEnv; source?: string } = {}): Config {
  const where = opts.source ?? 'config';
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TickflowError('CONFIG_INVALID', `${where}: expected a mapping of sections (kafka, database, exchanges, ...) at the top level`);
  }
  const copy: Record<string, unknown> = structuredClone(raw as Record<string, unknown>);
  applyEnv(copy, opts.env ?? process.env, ENV_OVERRIDES, LIST_OVERRIDES);
  const parsed = configSchema.safeParse(copy);
  if (!parsed.success) {
    throw new TickflowError('CONFIG_INVALID', `${where} is invalid:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  }
  const { exchanges, exchangeErrors } = parseExchangeEntries(parsed.data.exchanges);
  return deepFreeze({ ...parsed.data, exchanges, exchangeErrors, source: opts.source });
}

/**
 * Loads the config file: the `--config` path, else TICKFLOW_CONFIG, else config/tickflow.yaml.
 * A missing explicit path is an error; a missing default file means "all defaults".
 */
export function loadConfig(opts: { path?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  const { raw, source } = readConfigFile({ ...opts, env });
  return parseConfig(raw, { env, ...(source !== undefined ? { source } : {}) });
}
