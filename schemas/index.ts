import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { RECORD_KINDS, type RecordKind } from './catalog.ts';

export type * from './types.gen.ts';
export { RECORD_KINDS, topicFor, type AnyRecord, type RecordKind, type RecordOf } from './catalog.ts';

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
