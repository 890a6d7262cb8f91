/**
 * The record catalog: every fact about a record kind that more than one part needs (its Kafka
 * topic, its table and primary key, how the sink writes it, its channel in the gateway's config
 * and on /v1/stream, its data lifecycle), in one entry per kind. Everything else derives from
 * here: the sink's tables and default connectors, the topics the gateway and the API read and
 * write, the stream channels, the API's row schemas, coverage and sampling, the retention and
 * columnstore policies. Columns, their types and nullability come from the `.avsc` files through
 * schemas/generate.ts (types.gen.ts); catalog.test.ts and test/catalog-db.test.ts check this
 * against the Avro schemas and the migrated tables.
 *
 * Adding a record kind: `schemas/<kind>.avsc`, regenerate types.gen.ts, one entry below (the
 * `satisfies` makes a missing one a type error), a migration creating its table (one file: a
 * `do` block can make it a hypertable only where TimescaleDB is installed), its retention key in
 * config/tickflow.yaml, and whatever produces it (a gateway normalizer). Connectors, topics,
 * /v1/stream, the sink's policies and the API's lists follow. A kind with a `gatewayChannel`
 * is collected per exchange entry: that also takes the channel's config, ccxt capability and
 * watch/poll handler in gateways/ (the `Record<Channel, ...>` maps there fail typecheck until
 * they have it).
 */
import { AVRO_COLUMNS, type RecordOf } from './types.gen.ts';

export type { RecordOf } from './types.gen.ts';
/** A record kind: the name of its `.avsc` file. */
export type RecordKind = keyof RecordOf;
export type AnyRecord = RecordOf[RecordKind];

export const COLUMN_TYPES = ['text', 'timestamptz', 'float8', 'bool', 'int4', 'int8', 'jsonb'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

export interface Column {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable: boolean;
  /** The Avro enum's symbols (a text column the migration constrains to them). */
  readonly enum?: readonly string[];
}

type FieldOf<K extends RecordKind> = keyof RecordOf[K] & string;

/** What a catalog entry states (F: the kind's field names); `columns` are derived from the Avro schema. */
interface EntryFacts<F extends string = string> {
  /** Kafka topic `<prefix>.<topic>`. */
  readonly topic: string;
  /** Table (migrations/), also the record's name in connectors, /v1/stream and /v1/coverage. */
  readonly table: string;
  /** The column the table is partitioned by (hypertable), retention and the sink's dirty window follow it. */
  readonly timeColumn: F;
  /** The table's primary key (leads with exchange, symbol); the sink's default conflict key. */
  readonly primaryKey: readonly F[];
  /** insert: the first version of a key wins (immutable facts); upsert: the latest replaces it (updated in place). */
  readonly insertMode: 'insert' | 'upsert';
  /** The gateway config's channel that collects it (`exchanges[].channels.<name>`); none for status and metadata records. */
  readonly gatewayChannel?: string;
  /** Served on /v1/stream as the channel named like the table. */
  readonly stream: boolean;
  /** TimescaleDB columnstore policy (sink.policies.compressAfter). */
  readonly columnstore: boolean;
  /** A retention policy (sink.policies.retention.<table>) applies. */
  readonly retention: boolean;
  /** Its topic is compacted (`cleanup.policy=compact`): only the latest record per key matters. */
  readonly compacted: boolean;
  /** The gateway's buffer may drop it when Kafka is away too long (the loss becomes a gap record). */
  readonly droppable: boolean;
  /** The table's column order when it differs from the Avro field order (tables older than the catalog). */
  readonly columnOrder?: readonly F[];
  /**
   * exchange and symbol may both be '' (a record about no instrument, e.g. a user event about the
   * market as a whole): kept in the key as '' (a key column cannot be null), served as null, and
   * not a source of known instruments.
   */
  readonly instrumentOptional?: boolean;
  /** Text columns holding JSON text (a user's free payload): served parsed, as JSON values, on REST and /v1/stream. */
  readonly jsonTextColumns?: readonly F[];
}

const ENTRIES = {
  trade: {
    topic: 'trades',
    table: 'trades',
    timeColumn: 'ts',
    primaryKey: ['exchange', 'symbol', 'ts', 'id'],
    // Immutable facts: the first copy wins, a replay writes nothing.
    insertMode: 'insert',
    gatewayChannel: 'trades',
    stream: true,
    columnstore: true,
    retention: true,
    compacted: false,
    droppable: true,
    columnOrder: ['exchange', 'symbol', 'ts', 'id', 'side', 'price', 'amount', 'received_at'],
  },
  ticker: {
    topic: 'tickers',
    table: 'tickers',
    timeColumn: 'ts',
    primaryKey: ['exchange', 'symbol', 'ts'],
    insertMode: 'insert',
    gatewayChannel: 'ticker',
    stream: true,
    columnstore: true,
    retention: true,
    compacted: false,
    droppable: true,
  },
  candle: {
    topic: 'candles',
    table: 'candles',
    timeColumn: 'ts',
    primaryKey: ['exchange', 'symbol', 'timeframe', 'ts'],
    // A forming candle is updated in place until it closes.
    insertMode: 'upsert',
    gatewayChannel: 'ohlcv',
    stream: true,
    columnstore: true,
    retention: true,
    compacted: false,
    droppable: true,
    columnOrder: ['exchange', 'symbol', 'timeframe', 'ts', 'received_at', 'open', 'high', 'low', 'close', 'volume', 'closed'],
  },
  book: {
    topic: 'books',
    table: 'books',
    timeColumn: 'ts',
    primaryKey: ['exchange', 'symbol', 'ts'],
    insertMode: 'insert',
    gatewayChannel: 'book',
    stream: true,
    columnstore: true,
    retention: true,
    compacted: false,
    droppable: true,
  },
  gap: {
    topic: 'gaps',
    table: 'gaps',
    timeColumn: 'from_ts',
    primaryKey: ['exchange', 'symbol', 'channel', 'from_ts'],
    // The record that closes a gap updates to_ts and refilled.
    insertMode: 'upsert',
    stream: true,
    columnstore: false,
    retention: true,
    compacted: false,
    droppable: false,
    columnOrder: ['exchange', 'symbol', 'channel', 'from_ts', 'to_ts', 'reason', 'refilled', 'ts', 'received_at'],
  },
  instrument: {
    topic: 'instruments',
    table: 'instruments',
    timeColumn: 'ts',
    primaryKey: ['exchange', 'symbol'],
    // Re-loaded markets: the latest load wins.
    insertMode: 'upsert',
    stream: false,
    columnstore: false,
    retention: false,
    compacted: true,
    droppable: false,
    columnOrder: ['exchange', 'symbol', 'base', 'quote', 'type', 'active', 'price_increment', 'amount_increment', 'min_amount', 'exchange_symbol', 'ts', 'received_at'],
  },
  event: {
    topic: 'events',
    table: 'events',
    timeColumn: 'ts',
    // id is unique on its own (a UUID); exchange, symbol and ts lead so an instrument's range is
    // one index scan, as for the market data.
    primaryKey: ['exchange', 'symbol', 'ts', 'id'],
    // Posted by the API (POST /v1/events), not collected: a retried post re-sends the same id and
    // ts, and the first copy wins.
    insertMode: 'insert',
    stream: true,
    columnstore: false,
    retention: true,
    compacted: false,
    droppable: false,
    instrumentOptional: true,
    jsonTextColumns: ['data'],
  },
} as const satisfies { readonly [K in RecordKind]: EntryFacts<FieldOf<K>> };

type Entries = typeof ENTRIES;

export interface RecordSpec<K extends RecordKind = RecordKind> extends EntryFacts {
  readonly kind: K;
  readonly table: TableName;
  /** In the table's order. */
  readonly columns: readonly Column[];
}

/** The record kinds, in catalog order. */
export const RECORD_KINDS = Object.freeze(Object.keys(ENTRIES) as RecordKind[]);

export type TableName = Entries[RecordKind]['table'];
/** Kinds served on /v1/stream, and their channels there (named like their tables). */
export type StreamKind = { [K in RecordKind]: Entries[K]['stream'] extends true ? K : never }[RecordKind];
export type StreamChannel = Entries[StreamKind]['table'];
/** Kinds collected by a gateway channel: the market data (coverage and sampling are about them). */
export type SeriesKind = { [K in RecordKind]: Entries[K] extends { gatewayChannel: string } ? K : never }[RecordKind];
export type SeriesTable = Entries[SeriesKind]['table'];
/** The gateway config's channels. */
export type Channel = Entries[SeriesKind]['gatewayChannel'];

function columnsOf(kind: RecordKind, order: readonly string[] | undefined): readonly Column[] {
  const avro = AVRO_COLUMNS[kind] as readonly Column[];
  if (!order) return avro;
  const byName = new Map(avro.map((c) => [c.name, c]));
  if (order.length !== avro.length || order.some((n) => !byName.has(n))) {
    throw new Error(`catalog: ${kind}.columnOrder (${order.join(', ')}) is not an order of its Avro fields (${avro.map((c) => c.name).join(', ')})`);
  }
  return order.map((n) => byName.get(n)!);
}

/** One spec per record kind. */
export const CATALOG: { readonly [K in RecordKind]: RecordSpec<K> & Entries[K] } = Object.freeze(
  Object.fromEntries(
    RECORD_KINDS.map((kind) => {
      const e: EntryFacts = ENTRIES[kind];
      const columns = Object.freeze(columnsOf(kind, e.columnOrder));
      const names = new Set(columns.map((c) => c.name));
      for (const k of [...e.primaryKey, e.timeColumn]) if (!names.has(k)) throw new Error(`catalog: ${kind}: ${k} is not a field of schemas/${kind}.avsc`);
      return [kind, Object.freeze({ ...e, kind, columns })];
    }),
  ),
) as never;

const kinds = <K extends RecordKind>(pred: (s: RecordSpec) => boolean): readonly K[] => Object.freeze(RECORD_KINDS.filter((k) => pred(CATALOG[k])) as K[]);
const tables = <T extends TableName>(ks: readonly RecordKind[]): readonly T[] => Object.freeze(ks.map((k) => CATALOG[k].table as T));

export const TABLE_NAMES: readonly TableName[] = tables(RECORD_KINDS);
export const KIND_OF_TABLE: Readonly<Record<TableName, RecordKind>> = Object.freeze(Object.fromEntries(RECORD_KINDS.map((k) => [CATALOG[k].table, k])) as Record<TableName, RecordKind>);
/** `{ [k]: f(k) }` over a derived list, typed by its members. */
export function mapOf<K extends string, V>(keys: readonly K[], f: (k: K) => V): Readonly<Record<K, V>> {
  return Object.freeze(Object.fromEntries(keys.map((k) => [k, f(k)])) as Record<K, V>);
}

/** A map over tables (catalog order) built from each kind's spec. */
export function byTable<T>(f: (s: RecordSpec) => T): Readonly<Record<TableName, T>> {
  return Object.freeze(Object.fromEntries(RECORD_KINDS.map((k) => [CATALOG[k].table, f(CATALOG[k])])) as Record<TableName, T>);
}
export const specOfTable = (table: TableName): RecordSpec => CATALOG[KIND_OF_TABLE[table]];

export const STREAM_KINDS: readonly StreamKind[] = kinds((s) => s.stream);
export const STREAM_CHANNELS: readonly StreamChannel[] = tables(STREAM_KINDS);

export const SERIES_KINDS: readonly SeriesKind[] = kinds((s) => s.gatewayChannel !== undefined);
export const SERIES_TABLES: readonly SeriesTable[] = tables(SERIES_KINDS);
export const CHANNELS: readonly Channel[] = Object.freeze(SERIES_KINDS.map((k) => CATALOG[k].gatewayChannel));
export const KIND_OF_CHANNEL: Readonly<Record<Channel, SeriesKind>> = Object.freeze(Object.fromEntries(SERIES_KINDS.map((k) => [CATALOG[k].gatewayChannel, k])) as Record<Channel, SeriesKind>);

export const COLUMNSTORE_TABLES: readonly TableName[] = tables(kinds((s) => s.columnstore));
export type RetentionTable = { [K in RecordKind]: Entries[K]['retention'] extends true ? Entries[K]['table'] : never }[RecordKind];
export const RETENTION_TABLES: readonly RetentionTable[] = tables(kinds((s) => s.retention));

/**
 * The OHLCV rollups of the trades (migrations/004_ohlcv.*.sql), finest first: continuous
 * aggregates on TimescaleDB, views over `<view>_mat` tables on plain PostgreSQL.
 */
export const OHLCV_ROLLUPS = [
  { view: 'ohlcv_1m', seconds: 60 },
  { view: 'ohlcv_1h', seconds: 3_600 },
  { view: 'ohlcv_1d', seconds: 86_400 },
] as const;
export type OhlcvView = (typeof OHLCV_ROLLUPS)[number]['view'];
export const OHLCV_VIEWS: readonly OhlcvView[] = Object.freeze(OHLCV_ROLLUPS.map((r) => r.view));

/** Topic name = `<prefix>.<topic>`. */
export function topicFor(prefix: string, kind: RecordKind): string {
  return `${prefix}.${CATALOG[kind].topic}`;
}

/** For a `switch` over kinds or channels: a case left out makes the call a type error. */
export function assertNever(x: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(x)}`);
}

/** A non-empty tuple type of a derived list, for `z.enum`. */
export const asTuple = <T extends string>(xs: readonly T[]): readonly [T, ...T[]] => xs as readonly [T, ...T[]];
