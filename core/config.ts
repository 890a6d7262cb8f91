import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { apiSchema } from '../api/config.ts';
import { TickflowError } from './errors.ts';
import { sinkSchema } from '../sink/config.ts';

/**
 * The configuration: one YAML file, validated once at start-up against this schema, then
 * frozen. Defaults live here, with units in the key names. Environment variables override
 * endpoints and secrets (see ENV_OVERRIDES); `exchanges` entries are validated one by one so a
 * bad entry is reported by name without stopping the good ones.
 */

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
export const DEFAULT_CONFIG_PATH = path.join(REPO_ROOT, 'config', 'tickflow.yaml');

export const CHANNELS = ['trades', 'ticker', 'ohlcv', 'book'] as const;
export type Channel = (typeof CHANNELS)[number];
export const CHANNEL_MODES = ['ws', 'poll'] as const;

const kafkaSchema = z
  .strictObject({
    /** Empty: tickflow runs its own local broker (see infra/kafka.ts). */
    brokers: z.array(z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port')).default([]),
    clientId: z.string().min(1).default('tickflow'),
    topicPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected letters, digits, ".", "_" or "-"').default('tickflow'),
    partitions: z.int().min(1).max(1000).default(3),
    replicationFactor: z.int().min(1).max(10).default(1),
    retentionMs: z.int().min(60_000).default(7 * 24 * 3600 * 1000),
    /** A Confluent-compatible schema registry; without one, records use Avro single-object encoding. */
    schemaRegistryUrl: z.url().optional(),
    connectionTimeoutMs: z.int().min(100).default(5_000),
    requestTimeoutMs: z.int().min(100).default(30_000),
  })
  .prefault({});

const databaseSchema = z
  .strictObject({
    /** Any PostgreSQL or TimescaleDB server; absent: the embedded TimescaleDB. */
    url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL').optional(),
    /** Embedded TimescaleDB data folder, relative to the repository root unless absolute. */
    dataDir: z.string().min(1).default('.tickflow/db'),
    /** Embedded TimescaleDB port on 127.0.0.1; 0 picks a free one. */
    embeddedPort: z.int().min(0).max(65535).default(0),
    /**
     * How V8 compiles the embedded database's WebAssembly: optimizing (TurboFan only, ~100 MB
     * less resident memory) or tiered (V8's default: a baseline compile first); see
     * infra/embedded-db.ts.
     */
    embeddedWasmCompiler: z.enum(['optimizing', 'tiered']).default('optimizing'),
    poolMax: z.int().min(1).max(100).default(10),
    connectTimeoutMs: z.int().min(100).default(10_000),
  })
  .prefault({});

const infraSchema = z
  .strictObject({
    /** Where the local Kafka broker keeps its data and pid files. */
    kafkaDataDir: z.string().min(1).default('.tickflow/kafka'),
    kafkaPort: z.int().min(0).max(65535).default(9092),
    /**
     * The KRaft controller's listener (broker and controller are one process). Written into the
     * quorum's voter set when the storage is first formatted, so a formatted data directory keeps
     * the port it was formatted with. 0 = a free port at formatting (several local brokers, e.g.
     * tests, never collide); set one (Kafka's usual is 9093) to know it in advance.
     */
    kafkaControllerPort: z.int().min(0).max(65535).default(0),
  })
  .prefault({});

const gatewaySchema = z
  .strictObject({
    /** Where `tickflow gateway` serves /metrics for Prometheus (the API and sink serve theirs). */
    metricsHost: z.string().min(1).default('127.0.0.1'),
    /** 0 picks a free port; the docker-compose deployment uses 9464. */
    metricsPort: z.int().min(0).max(65535).default(9464),
  })
  .prefault({});

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

/** A cron expression with seconds (node-cron: `sec min hour day month weekday`). */
const cronSchedule = z
  .string()
  .min(1)
  .refine((s) => cron.validate(s), 'expected a cron expression with seconds, e.g. "*/10 * * * * *"');

/**
 * Per channel: `mode` ws (ccxt pro watch*) or poll (REST on `schedule`). A ws channel the
 * exchange cannot stream falls back to polling when it has a `schedule`; a poll channel without
 * one uses DEFAULT_POLL_SCHEDULES. `silenceTimeoutMs`: a ws stream without a message for this
 * long is treated as dropped (reconnect + gap); trades check REST first, so a quiet market is
 * not mistaken for a dead stream.
 */
const channelBase = (silenceTimeoutMs: number) => ({
  mode: z.enum(CHANNEL_MODES).default('ws'),
  schedule: cronSchedule.optional(),
  silenceTimeoutMs: z.int().min(1_000).default(silenceTimeoutMs),
});

/** Poll schedules used when a poll channel names none (cron with seconds). */
export const DEFAULT_POLL_SCHEDULES: Readonly<Record<Channel, string>> = {
  trades: '*/10 * * * * *',
  ticker: '*/10 * * * * *',
  ohlcv: '*/30 * * * * *',
  book: '*/10 * * * * *',
};

export const exchangeEntrySchema = z.strictObject({
  /** Any ccxt exchange id. */
  id: z.string().regex(/^[a-z0-9]+$/, 'expected a ccxt exchange id (lower-case letters and digits)'),
  /** A name for this entry when one exchange id appears twice (e.g. a testnet); defaults to id. */
  name: z.string().regex(/^[a-z0-9_-]+$/).optional(),
  enabled: z.boolean().default(true),
  symbols: z.array(z.string().regex(/^[^/\s]+\/[^/\s]+(:\S+)?$/, 'expected a ccxt unified symbol like BTC/USDT')).min(1),
  channels: z
    .strictObject({
      trades: z.strictObject({ ...channelBase(60_000) }).optional(),
      ticker: z.strictObject({ ...channelBase(30_000) }).optional(),
      ohlcv: z.strictObject({ ...channelBase(60_000), timeframes: z.array(z.string().regex(/^\d+[smhdwM]$/)).min(1).default(['1m']) }).optional(),
      book: z.strictObject({ ...channelBase(30_000), depth: z.int().min(1).max(1000).default(10), intervalMs: z.int().min(10).default(1000) }).optional(),
    })
    .refine((c) => Object.keys(c).length > 0, 'expected at least one channel'),
  /** Candle history fetched on start, in minutes back from now. */
  backfillLookbackMinutes: z.int().min(0).default(24 * 60),
  /**
   * Records this entry may hold in memory while Kafka is unreachable; past it the oldest are
   * dropped and the loss is published as a `gap` record (channel `kafka`) once Kafka is back.
   */
  maxBufferedRecords: z.int().min(10).default(250_000),
  /** Free-form ccxt constructor options: keys, urls overrides, proxies, rateLimit, options. */
  options: z.record(z.string(), z.unknown()).default({}),
});
export type ExchangeEntry = z.infer<typeof exchangeEntrySchema>;

export const configSchema = z.strictObject({
  kafka: kafkaSchema,
  database: databaseSchema,
  infra: infraSchema,
  sim: simSchema,
  gateway: gatewaySchema,
  /** Validated entry by entry (see loadConfig): one bad entry doesn't stop the others. */
  exchanges: z.array(z.unknown()).default([]),
  /** Later parts (sink, api) add their sections here; unknown keys are refused until then. */
  sink: sinkSchema,
  api: apiSchema,
});

export interface ExchangeEntryError {
  readonly index: number;
  readonly id: string | undefined;
  readonly message: string;
}

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
} as const;

function formatPath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

/** One line per problem, each naming the key path and what was expected. */
export function describeIssues(error: z.ZodError, prefix = ''): string[] {
  return error.issues.map((i) => {
    let at = formatPath(i.path);
    let msg = i.message;
    if (i.code === 'unrecognized_keys') {
      const keys = i.keys.map((k) => formatPath([...i.path, k]));
      at = keys.join(', ');
      msg = `unknown key${keys.length > 1 ? 's' : ''}`;
    }
    const full = prefix && at ? `${prefix}.${at}` : prefix || at || '(root)';
    return `${full}: ${msg}`;
  });
}

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, keyPath] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const [section, key] = keyPath.split('.') as [string, string];
    const target = (raw[section] ??= {});
    if (typeof target !== 'object' || target === null || Array.isArray(target)) continue; // the schema reports it
    (target as Record<string, unknown>)[key] = name === 'KAFKA_BROKERS' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validates an already-parsed document; throws CONFIG_INVALID naming every bad key. */
export function parseConfig(raw: unknown, opts: { env?: NodeJS.ProcessEnv; source?: string } = {}): Config {
  const where = opts.source ?? 'config';
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TickflowError('CONFIG_INVALID', `${where}: expected a mapping of sections (kafka, database, exchanges, ...) at the top level`);
  }
  const copy: Record<string, unknown> = structuredClone(raw as Record<string, unknown>);
  applyEnv(copy, opts.env ?? process.env);
  const parsed = configSchema.safeParse(copy);
  if (!parsed.success) {
    throw new TickflowError('CONFIG_INVALID', `${where} is invalid:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  }
  const exchanges: ExchangeEntry[] = [];
  const exchangeErrors: ExchangeEntryError[] = [];
  parsed.data.exchanges.forEach((entry, index) => {
    const r = exchangeEntrySchema.safeParse(entry);
    const id = typeof (entry as { id?: unknown } | null)?.id === 'string' ? (entry as { id: string }).id : undefined;
    if (r.success) exchanges.push(r.data);
    else exchangeErrors.push({ index, id, message: describeIssues(r.error, `exchanges[${index}]`).join('; ') });
  });
  return deepFreeze({ ...parsed.data, exchanges, exchangeErrors, source: opts.source });
}

/**
 * One line for a file the YAML parser refuses: the first problem (the later ones mostly follow
 * from it) with its line and column, `config/x.yaml:3:1: not valid YAML: ...`.
 */
function yamlProblem(file: string, errors: readonly { message: string; pos: [number, number] }[], lines: LineCounter): string {
  const e = errors[0]!;
  const { line, col } = lines.linePos(e.pos[0]);
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? 's' : ''} after it)` : '';
  const rel = path.relative(process.cwd(), file);
  return `${rel && !rel.startsWith('..') ? rel : file}:${line}:${col}: not valid YAML: ${e.message.replace(/\s+/g, ' ').trim()}${more}`;
}

/**
 * Loads the config file: the `--config` path, else TICKFLOW_CONFIG, else config/tickflow.yaml.
 * A missing explicit path is an error; a missing default file means "all defaults".
 */
export function loadConfig(opts: { path?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  const explicit = opts.path ?? env.TICKFLOW_CONFIG;
  const file = explicit ? path.resolve(explicit) : DEFAULT_CONFIG_PATH;
  if (!existsSync(file)) {
    if (explicit) throw new TickflowError('CONFIG_NOT_FOUND', `config file not found: ${file}`);
    return parseConfig({}, { env, source: undefined });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(readFileSync(file, 'utf8'), { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) throw new TickflowError('CONFIG_INVALID', yamlProblem(file, doc.errors, lineCounter));
  return parseConfig(doc.toJS(), { env, source: file });
}

/** Resolves a configured folder against the repository root. */
export function resolveDir(dir: string): string {
  return path.isAbsolute(dir) ? dir : path.join(REPO_ROOT, dir);
}
