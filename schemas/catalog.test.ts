import { describe, expect, it } from 'vitest';
import {
  CATALOG,
  CHANNELS,
  COLUMNSTORE_TABLES,
  KIND_OF_CHANNEL,
  KIND_OF_TABLE,
  RECORD_KINDS,
  RETENTION_TABLES,
  SERIES_TABLES,
  STREAM_CHANNELS,
  TABLE_NAMES,
  assertNever,
  topicFor,
  type RecordKind,
  type TableName,
} from './catalog.ts';
import { schemaFiles } from './generate.ts';
import { schemaJson } from './index.ts';

describe('record catalog', () => {
  it('has one entry per .avsc file', () => {
    expect([...RECORD_KINDS].sort()).toEqual(schemaFiles());
  });

  it.each(RECORD_KINDS)('%s: columns are the Avro fields, with their nullability', (kind) => {
    const s = CATALOG[kind];
    const fields = (schemaJson(kind) as unknown as { fields: { name: string; type: unknown }[] }).fields;
    expect(s.columns.map((c) => c.name).sort()).toEqual(fields.map((f) => f.name).sort());
    for (const f of fields) {
      const c = s.columns.find((x) => x.name === f.name)!;
      expect(c.nullable, `${kind}.${f.name}`).toBe(Array.isArray(f.type) && f.type.includes('null'));
      if (JSON.stringify(f.type).includes('timestamp-micros')) expect(c.type).toBe('timestamptz');
    }
  });

  it.each(RECORD_KINDS)('%s: the key leads with exchange, symbol; time series keep their time column in it', (kind) => {
    const s = CATALOG[kind];
    expect(s.primaryKey.slice(0, 2)).toEqual(['exchange', 'symbol']);
    for (const k of s.primaryKey) expect(s.columns.find((c) => c.name === k)!.nullable, `${kind}.${k} nullable in the key`).toBe(false);
    // A hypertable's unique keys must include its partitioning column.
    if (s.retention || s.columnstore) expect(s.primaryKey).toContain(s.timeColumn);
    // Streamed kinds replay by ts.
    if (s.stream) expect(s.columns.some((c) => c.name === 'ts' && c.type === 'timestamptz')).toBe(true);
  });

  it('names each topic, table and gateway channel once', () => {
    const topics = RECORD_KINDS.map((k) => topicFor('p', k));
    expect(new Set(topics).size).toBe(topics.length);
    expect(new Set(TABLE_NAMES).size).toBe(TABLE_NAMES.length);
    expect(new Set(CHANNELS).size).toBe(CHANNELS.length);
    for (const c of CHANNELS) expect(CATALOG[KIND_OF_CHANNEL[c]].gatewayChannel).toBe(c);
  });

  // What the lists written by hand before the catalog said, for the kinds of that time (a kind
  // added later joins the derived lists where its entry says so); the derived ones must agree.
  it('derives the lists the parts used to spell out', () => {
    const ORIGINAL = ['trade', 'ticker', 'candle', 'book', 'gap', 'instrument'] as const;
    const orig = <T extends string>(xs: readonly T[], of: (x: T) => RecordKind) => xs.filter((x) => (ORIGINAL as readonly string[]).includes(of(x)));
    const kinds = orig(RECORD_KINDS, (k) => k);
    expect(kinds).toEqual(ORIGINAL);
    expect(kinds.map((k) => topicFor('tickflow', k))).toEqual(['tickflow.trades', 'tickflow.tickers', 'tickflow.candles', 'tickflow.books', 'tickflow.gaps', 'tickflow.instruments']);
    const table = (t: TableName) => KIND_OF_TABLE[t];
    expect(orig(TABLE_NAMES, table)).toEqual(['trades', 'tickers', 'candles', 'books', 'gaps', 'instruments']);
    expect(orig(STREAM_CHANNELS, table)).toEqual(['trades', 'tickers', 'candles', 'books', 'gaps']);
    expect(orig(SERIES_TABLES, table)).toEqual(['trades', 'tickers', 'candles', 'books']);
    expect(orig(CHANNELS, (c) => KIND_OF_CHANNEL[c])).toEqual(['trades', 'ticker', 'ohlcv', 'book']);
    expect(orig(COLUMNSTORE_TABLES, table)).toEqual(['trades', 'tickers', 'candles', 'books']);
    expect(orig(RETENTION_TABLES, table)).toEqual(['trades', 'tickers', 'candles', 'books', 'gaps']);
    expect(kinds.filter((k) => CATALOG[k].insertMode === 'upsert')).toEqual(['candle', 'gap', 'instrument']);
    expect(kinds.filter((k) => CATALOG[k].compacted)).toEqual(['instrument']);
    expect(kinds.filter((k) => !CATALOG[k].droppable)).toEqual(['gap', 'instrument']);
  });

  it('assertNever refuses a value that reached it', () => {
    expect(() => assertNever('x' as never)).toThrow(/unhandled case/);
  });
});
