/**
 * The channels of /v1/stream and what the seam needs to know of each: its topic kind and table,
 * how a record is identified (the table's primary key), whether a newer version may replace it
 * (a forming candle, a gap being closed), and the SQL that replays it from the database in the
 * primary key's order. Rows sent to clients look like the REST rows: columns named like the
 * table, times as ISO 8601 UTC, whether they come from Kafka (Avro) or the database.
 */
import type { RecordKind } from '../../schemas/index.ts';
import { Params, us } from '../sql.ts';
import { formatTime, formatTimeParam } from '../time.ts';

export const STREAM_CHANNELS = ['trades', 'tickers', 'candles', 'books', 'gaps'] as const;
export type StreamChannel = (typeof STREAM_CHANNELS)[number];

interface OrderColumn {
  readonly col: string;
  readonly type: 'timestamptz' | 'text';
}

interface ChannelSpec {
  readonly kind: RecordKind;
  readonly table: StreamChannel;
  /** Columns as the Avro fields name them; the time ones travel as µs. */
  readonly columns: readonly string[];
  readonly timeColumns: ReadonlySet<string>;
  /** Primary key order after (exchange, symbol): the replay's keyset. */
  readonly order: readonly OrderColumn[];
  /** True when a later record with the same key replaces the earlier one (received_at orders them). */
  readonly versioned: boolean;
}

const TIME = new Set(['ts', 'received_at']);

export const CHANNEL_SPECS: Readonly<Record<StreamChannel, ChannelSpec>> = {
  trades: {
    kind: 'trade',
    table: 'trades',
    columns: ['exchange', 'symbol', 'ts', 'id', 'side', 'price', 'amount', 'received_at'],
    timeColumns: TIME,
    order: [{ col: 'ts', type: 'timestamptz' }, { col: 'id', type: 'text' }],
    versioned: false,
  },
  tickers: {
    kind: 'ticker',
    table: 'tickers',
    columns: ['exchange', 'symbol', 'ts', 'received_at', 'bid', 'bid_size', 'ask', 'ask_size', 'last', 'open_24h', 'high_24h', 'low_24h', 'base_volume_24h', 'quote_volume_24h'],
    timeColumns: TIME,
    order: [{ col: 'ts', type: 'timestamptz' }],
    versioned: false,
  },
  candles: {
    kind: 'candle',
    table: 'candles',
    columns: ['exchange', 'symbol', 'timeframe', 'ts', 'received_at', 'open', 'high', 'low', 'close', 'volume', 'closed'],
    timeColumns: TIME,
    order: [{ col: 'ts', type: 'timestamptz' }, { col: 'timeframe', type: 'text' }],
    versioned: true,
  },
  books: {
    kind: 'book',
    table: 'books',
    columns: ['exchange', 'symbol', 'ts', 'received_at', 'depth', 'bids', 'asks', 'sequence'],
    timeColumns: TIME,
    order: [{ col: 'ts', type: 'timestamptz' }],
    versioned: false,
  },
  gaps: {
    kind: 'gap',
    table: 'gaps',
    columns: ['exchange', 'symbol', 'channel', 'from_ts', 'to_ts', 'reason', 'refilled', 'ts', 'received_at'],
    timeColumns: new Set(['ts', 'received_at', 'from_ts', 'to_ts']),
    order: [{ col: 'ts', type: 'timestamptz' }, { col: 'channel', type: 'text' }, { col: 'from_ts', type: 'timestamptz' }],
    versioned: true,
  },
};

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

/** From an Avro record or a replayed database row: same field names, times in µs. */
export function toStreamRecord(channel: StreamChannel, raw: Readonly<Record<string, unknown>>): StreamRecord {
  const spec = CHANNEL_SPECS[channel];
  const row: Record<string, unknown> = {};
  for (const c of spec.columns) {
    const v = raw[c];
    row[c] = spec.timeColumns.has(c) ? (v === null || v === undefined ? null : formatTime(v as number)) : (v ?? null);
  }
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
