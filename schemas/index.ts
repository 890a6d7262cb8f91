import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import type { Book, Candle, Gap, Instrument, Ticker, Trade } from './types.gen.ts';

export type * from './types.gen.ts';

/** The record kinds of the Avro contract; each has its schema file and its Kafka topic. */
export const RECORD_KINDS = ['trade', 'ticker', 'candle', 'book', 'gap', 'instrument'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

export interface RecordOf {
  trade: Trade;
  ticker: Ticker;
  candle: Candle;
  book: Book;
  gap: Gap;
  instrument: Instrument;
}
export type AnyRecord = RecordOf[RecordKind];

/** Topic name = `<prefix>.<suffix>`. */
export const TOPIC_SUFFIX: Readonly<Record<RecordKind, string>> = {
  trade: 'trades',
  ticker: 'tickers',
  candle: 'candles',
  book: 'books',
  gap: 'gaps',
  instrument: 'instruments',
};

export function topicFor(prefix: string, kind: RecordKind): string {
  return `${prefix}.${TOPIC_SUFFIX[kind]}`;
}

const here = path.dirname(fileURLToPath(import.meta.url));

export function schemaJson(kind: RecordKind): avro.Schema {
  return JSON.parse(readFileSync(path.join(here, `${kind}.avsc`), 'utf8')) as avro.Schema;
}

/** The current (reader) type of every kind, parsed once. */
export const TYPES: Readonly<Record<RecordKind, avro.Type>> = Object.freeze(
  Object.fromEntries(RECORD_KINDS.map((k) => [k, avro.Type.forSchema(schemaJson(k))])) as Record<RecordKind, avro.Type>,
);

/** Kind of a record type by its full Avro name (tickflow.v1.Trade → trade). */
export const KIND_BY_NAME: ReadonlyMap<string, RecordKind> = new Map(
  RECORD_KINDS.map((k) => [TYPES[k].name as string, k]),
);
