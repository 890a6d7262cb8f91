/**
 * The channels of /v1/stream (the record kinds the catalog streams, schemas/catalog.ts) and what
 * the seam needs to know of each, derived from the kind's catalog entry: its topic kind and table,
 * how a record is identified (the table's primary key), whether a newer version may replace it
 * (a forming candle, a gap being closed), and the SQL that replays it from the database in the
 * primary key's order. Rows sent to clients look like the REST rows: columns named like the
 * table, times as ISO 8601 UTC, whether they come from Kafka (Avro) or the database.
 */
import { CATALOG, STREAM_CHANNELS, STREAM_KINDS, type RecordKind, type StreamChannel } from '../../schemas/catalog.ts';
import { Params, us } from '../sql.ts';
import { formatTime, formatTimeParam } from '../time.ts';

export { STREAM_CHANNELS, type StreamChannel } from '../../schemas/catalog.ts';

interface OrderColumn {
  readonly col: string;
  readonly type: 'timestamptz' | 'text';
}

interface ChannelSpec {
  readonly kind: RecordKind;
  readonly table: StreamChannel;
  /** Columns as the Avro fields name them, in the table's order; the time ones travel as µs. */
  readonly columns: readonly string[];
  readonly timeColumns: ReadonlySet<string>;
  /** ts, then the rest of the primary key after (exchange, symbol): the replay's keyset. */
  readonly order: readonly OrderColumn[];
  /** True when a later record with the same key replaces the earlier one (received_at orders them). */
  readonly versioned: boolean;
  /** exchange and symbol may be '' (no instrument): sent as null, like REST serves them. */
  readonly instrumentOptional: boolean;
  /** Columns of JSON text, sent parsed (like REST). */
  readonly jsonColumns: ReadonlySet<string>;
}

/** Each channel from its record kind's catalog entry. */
export const CHANNEL_SPECS: Readonly<Record<StreamChannel, ChannelSpec>> = Object.freeze(
  Object.fromEntries(
    STREAM_KINDS.map((kind) => {
      const s = CATALOG[kind];
      const typeOf = (col: string) => s.columns.find((c) => c.name === col)!.type as OrderColumn['type'];
      const order = ['ts', ...s.primaryKey.filter((c) => c !== 'exchange' && c !== 'symbol' && c !== 'ts')].map((col) => ({ col, type: typeOf(col) }));
      const spec: ChannelSpec = {
        kind,
        table: s.table,
        columns: s.columns.map((c) => c.name),
        timeColumns: new Set(s.columns.filter((c) => c.type === 'timestamptz').map((c) => c.name)),
        order,
        versioned: s.insertMode === 'upsert',
        instrumentOptional: s.instrumentOptional === true,
        jsonColumns: new Set<string>(s.jsonTextColumns ?? []),
      };
      return [s.table, spec];
    }),
  ) as Record<StreamChannel, ChannelSpec>,
);

export const CHANNEL_OF_KIND: ReadonlyMap<RecordKind, StreamChannel> = new Map(STREAM_CHANNELS.map((c) => [CHANNEL_SPECS[c].kind, c]));

export const instrumentKey = (exchange: string, symbol: string): string => `${exchange}\u0001${symbol}`;

export interface StreamRecord {
  readonly channel: StreamChannel;
  /** exchange + symbol. */
  readonly instrument: string;
  /** Primary key, instrument included. */
  readonly key: string;
  /** received_at, µs: orders versions of one key. */
  readonly version: number;
  /** Event time, µs (`since` compares it). */
  readonly ts: number;
  /** As sent to clients. */
  readonly row: Readonly<Record<string, unknown>>;
}

/** JSON text as its value; text that is not JSON (written by another producer) stays text. */
function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** From an Avro record or a replayed database row: same field names, times in µs. */
export function toStreamRecord(channel: StreamChannel, raw: Readonly<Record<string, unknown>>): StreamRecord {
  const spec = CHANNEL_SPECS[channel];
  const row: Record<string, unknown> = {};
  for (const c of spec.columns) {
    const v = raw[c];
    row[c] = spec.timeColumns.has(c) ? (v === null || v === undefined ? null : formatTime(v as number)) : (v ?? null);
  }
  if (spec.instrumentOptional) {
    if (row.exchange === '') row.exchange = null;
    if (row.symbol === '') row.symbol = null;
  }
  for (const c of spec.jsonColumns) if (typeof row[c] === 'string') row[c] = parseJsonText(row[c] as string);
  const instrument = instrumentKey(raw.exchange as string, raw.symbol as string);
  const keyTail = spec.order.map((o) => String(raw[o.col])).join('\u0001');
  return { channel, instrument, key: `${instrument}\u0001${keyTail}`, version: raw.received_at as number, ts: raw.ts as number, row };
}

/** One page of the replay of one instrument and channel, after the last row of the previous page. */
export function replayQuery(channel: StreamChannel, exchange: string, symbol: string, since: number, after: Readonly<Record<string, unknown>> | undefined, limit: number): { text: string; values: unknown[] } {
  const spec = CHANNEL_SPECS[channel];
  const p = new Params();
  const cols = spec.columns.map((c) => (spec.timeColumns.has(c) ? `${us(c)} as ${c}` : c)).join(', ');
  const order = spec.order.map((o) => o.col).join(', ');
  let keyset = '';
  if (after) {
    const vals = spec.order.map((o) => p.ref(`after_${o.col}`, o.type === 'timestamptz' ? formatTimeParam(after[o.col] as number) : after[o.col], o.type));
    keyset = ` and (${order}) > (${vals.join(', ')})`;
  }
  return {
    text:
      `select ${cols} from ${spec.table} where exchange = ${p.ref('exchange', exchange)} and symbol = ${p.ref('symbol', symbol)} ` +
      `and ts >= ${p.ref('since', formatTimeParam(since), 'timestamptz')}${keyset} order by ${order} limit ${p.ref('limit', limit)}`,
    values: p.values,
  };
}

/** Rows a replay would send, counted up to `cap + 1` (an index range scan, bounded). */
export function replayCountQuery(channel: StreamChannel, exchange: string, symbol: string, since: number, cap: number): { text: string; values: unknown[] } {
  return {
    text: `select count(*)::int8 as n from (select 1 from ${CHANNEL_SPECS[channel].table} where exchange = $1 and symbol = $2 and ts >= $3::timestamptz limit $4) s`,
    values: [exchange, symbol, formatTimeParam(since), cap + 1],
  };
}
