import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { TickflowError } from './errors.ts';

/**
 * What every part reads of the configuration: the shared sections (kafka, database, infra),
 * their defaults (units in the key names), and the machinery that reads a config file and names
 * a bad key. Each part owns the schema of its own section (api/config.ts, sink/config.ts,
 * gateways/config.ts) and declares the slice of the config it reads (`SharedConfig & { its
 * section }`); config/schema.ts composes the whole file from them, above the parts, so nothing
 * here depends on a part (test/layering.test.ts keeps it so).
 */

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
export const DEFAULT_CONFIG_PATH = path.join(REPO_ROOT, 'config', 'tickflow.yaml');

export const kafkaSchema = z
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

export const databaseSchema = z
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

export const infraSchema = z
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

export type KafkaConfig = z.infer<typeof kafkaSchema>;
export type DatabaseConfig = z.infer<typeof databaseSchema>;
export type InfraConfig = z.infer<typeof infraSchema>;

/** The sections every part may read, and where they came from. */
export interface SharedConfig {
  readonly kafka: KafkaConfig;
  readonly database: DatabaseConfig;
  readonly infra: InfraConfig;
  /** The file this came from, or undefined for defaults only. */
  readonly source: string | undefined;
}

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

/**
 * Applies environment variables to a parsed document before validation: `overrides` maps a
 * variable to the `section.key` it sets (a comma-separated list for `listKeys`).
 */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, overrides: Readonly<Record<string, string>>, listKeys: ReadonlySet<string> = new Set()): void {
  for (const [name, keyPath] of Object.entries(overrides)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const [section, key] = keyPath.split('.') as [string, string];
    const target = (raw[section] ??= {});
    if (typeof target !== 'object' || target === null || Array.isArray(target)) continue; // the schema reports it
    (target as Record<string, unknown>)[key] = listKeys.has(name) ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  }
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
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
 * Reads the config file: the `--config` path, else TICKFLOW_CONFIG, else config/tickflow.yaml.
 * A missing explicit path is an error; a missing default file means "all defaults" (an empty
 * document without a source). Validation is config/schema.ts's loadConfig.
 */
export function readConfigFile(opts: { path?: string; env?: NodeJS.ProcessEnv } = {}): { raw: unknown; source: string | undefined } {
  const env = opts.env ?? process.env;
  const explicit = opts.path ?? env.TICKFLOW_CONFIG;
  const file = explicit ? path.resolve(explicit) : DEFAULT_CONFIG_PATH;
  if (!existsSync(file)) {
    if (explicit) throw new TickflowError('CONFIG_NOT_FOUND', `config file not found: ${file}`);
    return { raw: {}, source: undefined };
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(readFileSync(file, 'utf8'), { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) throw new TickflowError('CONFIG_INVALID', yamlProblem(file, doc.errors, lineCounter));
  return { raw: doc.toJS(), source: file };
}

/** Resolves a configured folder against the repository root. */
export function resolveDir(dir: string): string {
  return path.isAbsolute(dir) ? dir : path.join(REPO_ROOT, dir);
}
