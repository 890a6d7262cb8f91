/**
 * The JSON schemas of the API: rows named like the table columns, registered once with `$id`
 * (they become the OpenAPI document's components and drive fast-json-stringify), the page
 * envelope `{ data, next }`, the error body, and the query parameters shared by the routes.
 */
import type { FastifyInstance } from 'fastify';
import { ERROR_BODY_SCHEMA } from '../core/ops.ts';
import { CATALOG, SERIES_TABLES, assertNever, type Column, type RecordKind } from '../schemas/catalog.ts';
import { PATTERN_HINTS } from './errors.ts';
import { FILLS } from './fill.ts';
import { TIME_PATTERN, intervalPattern } from './time.ts';

const str = { type: 'string' } as const;
const strN = { type: ['string', 'null'] } as const;
const num = { type: 'number' } as const;
const numN = { type: ['number', 'null'] } as const;
const intN = { type: ['integer', 'null'] } as const;
const time = { type: 'string', format: 'date-time', description: 'ISO 8601, UTC' } as const;
const timeN = { type: ['string', 'null'], format: 'date-time', description: 'ISO 8601, UTC' } as const;

const bool = { type: 'boolean' } as const;

/** A column's JSON schema, as rows carry it: times as ISO strings, null where the column allows it. */
function columnSchema(c: Column): object {
  switch (c.type) {
    case 'text':
      return c.enum ? { type: 'string', enum: c.enum } : c.nullable ? strN : str;
    case 'timestamptz':
      return c.nullable ? timeN : time;
    case 'float8':
      return c.nullable ? numN : num;
    case 'int4':
    case 'int8':
      return c.nullable ? intN : { type: 'integer' };
    case 'bool':
      return c.nullable ? { type: ['boolean', 'null'] } : bool;
    case 'jsonb':
      return {};
    default:
      return assertNever(c.type);
  }
}

/** A table's row: its catalog columns in table order (schemas/catalog.ts, types from the .avsc). */
function rowProperties(kind: RecordKind): Readonly<Record<string, object>> {
  return Object.fromEntries(CATALOG[kind].columns.map((c) => [c.name, columnSchema(c)]));
}

/** Row shapes; the property order is the CSV column order. */
export const ROWS = {
  Candle: {
    description: 'One OHLCV bucket. Empty buckets produced by a fill have volume 0 and trades 0 (null from exchange candles) and null or filled prices.',
    properties: { exchange: str, symbol: str, bucket: time, open: numN, high: numN, low: numN, close: numN, volume: num, trades: intN },
  },
  Trade: { description: 'One trade (table trades).', properties: rowProperties('trade') },
  Ticker: { description: 'A ticker record (table tickers).', properties: rowProperties('ticker') },
  Instrument: { description: 'Market metadata from ccxt (table instruments).', properties: rowProperties('instrument') },
  Event: {
    description: 'A user event (table events, POST /v1/events): exchange and symbol null when it names no instrument; data is the posted JSON.',
    properties: { ...rowProperties('event'), exchange: strN, symbol: strN, data: { description: 'the JSON payload as posted (in CSV: its JSON text)' } },
  },
  Coverage: {
    description:
      'A stretch of time of one instrument and channel: `data` from the first to the last record held (split around gaps), or a `gap` from the gaps table (a stream outage, with the reason and how many records were refilled; an open gap has no to_ts).',
    properties: {
      exchange: str,
      symbol: str,
      channel: { type: 'string', enum: SERIES_TABLES },
      timeframe: strN,
      kind: { type: 'string', enum: ['data', 'gap'] },
      from_ts: time,
      to_ts: timeN,
      reason: strN,
      refilled: intN,
    },
  },
  Sample: {
    description: 'One bucket of a sampled field.',
    properties: { exchange: str, symbol: str, bucket: time, value: numN },
  },
} as const;
export type RowName = keyof typeof ROWS;

export function columnsOf(name: RowName): readonly string[] {
  return Object.keys(ROWS[name].properties);
}

export const pageRef = (name: RowName) => ({ $ref: `${name}Page#` });
export const errorRef = { $ref: 'Error#' } as const;

/** Registers the shared schemas once, on the root instance. */
export function addSharedSchemas(app: FastifyInstance): void {
  app.addSchema({ $id: 'Error', ...ERROR_BODY_SCHEMA });
  for (const [name, row] of Object.entries(ROWS)) {
    app.addSchema({ $id: name, type: 'object', description: row.description, properties: row.properties, required: Object.keys(row.properties) });
    app.addSchema({
      $id: `${name}Page`,
      type: 'object',
      description: `A page of ${name} rows; \`next\` is the cursor of the following page, null on the last one.`,
      properties: { data: { type: 'array', items: { $ref: `${name}#` } }, next: { type: ['string', 'null'] } },
      required: ['data', 'next'],
    });
  }
}

/** A JSON page or, on `Accept: text/csv` (or format=csv), the same columns as CSV. */
export function pageResponses(name: RowName) {
  return {
    200: {
      description: `JSON page of ${name} rows, or CSV (header row, same columns; the next cursor in the X-Next-Cursor header).`,
      content: {
        'application/json': { schema: pageRef(name) },
        'text/csv': { schema: { type: 'string' } },
      },
    },
    400: errorRef,
    404: { description: 'An exchange or instrument nobody knows (the message names the known ones)', ...errorRef },
    503: errorRef,
  };
}

// ---- query parameters ----

export const exchangeParam = {
  type: 'string',
  pattern: '^[a-z0-9_-]{1,64}$',
  examples: ['binance'],
  description: 'ccxt exchange id (or the config entry name), e.g. binance. One nobody knows is a 404 naming the known exchanges.',
} as const;
export const symbolParam = {
  type: 'string',
  maxLength: 100,
  pattern: '^[^/\\s\\x00-\\x1f]+/[^/\\s\\x00-\\x1f]+(:[^\\s\\x00-\\x1f]+)?$',
  examples: ['BTC/USDT'],
  description: 'ccxt unified symbol, e.g. BTC/USDT (URL-encoded: BTC%2FUSDT). One the exchange is not known for is a 404 naming its known symbols.',
} as const;
export const timeParam = (what: string) =>
  ({ type: 'string', format: 'date-time', pattern: TIME_PATTERN, description: `${what}: RFC 3339 with seconds and a zone, years 1970–2199 (e.g. 2024-01-31T00:00:00Z)` }) as const;
export const limitParam = (maxRows: number) => ({ type: 'integer', minimum: 1, maximum: maxRows, description: `rows per page, in decimal digits (default and maximum ${maxRows})` }) as const;
export const cursorParam = {
  type: 'string',
  maxLength: 512,
  pattern: '^[A-Za-z0-9_-]+$',
  description: 'the `next` value of the previous page, with the same other parameters (only cursors this API issued for them are accepted)',
} as const;
PATTERN_HINTS.set(TIME_PATTERN, 'expected an RFC 3339 time with seconds and a zone, like 2024-01-31T00:00:00Z, years 1970–2199');
PATTERN_HINTS.set(intervalPattern({ allowSeconds: false }), 'expected Nm, Nh, Nd or Nw with N a positive integer, like 5m, 4h, 1d or 1w, at most ten years (sub-minute buckets: /v1/sample/*, which reads the raw records)');
PATTERN_HINTS.set(intervalPattern({ allowSeconds: true }), 'expected Ns, Nm, Nh, Nd or Nw with N a positive integer, like 10s, 5m, 4h, 1d or 1w, at most ten years');

/** Bucket widths of /v1/ohlcv (whole minutes up) and /v1/sample (seconds too), at most ten years. */
export const intervalParam = (allowSeconds: boolean) =>
  ({
    type: 'string',
    maxLength: 12,
    pattern: intervalPattern({ allowSeconds }),
    examples: ['5m'],
    description: `${allowSeconds ? 'Ns, Nm' : 'Nm'}, Nh, Nd or Nw with N a positive integer (e.g. ${allowSeconds ? '10s, ' : ''}5m, 90m, 4h, 1d, 1w), at most ten years`,
  }) as const;
export const fillParam = {
  type: 'string',
  enum: FILLS,
  default: 'none',
  description:
    'none: only buckets with data; null: every bucket, empty ones null; prev: empty buckets take the previous bucket\'s value (a flat candle at the previous close); linear: interpolated in time between the nearest buckets with data (null when one side has none). Neighbours are looked up beyond the range, so values never depend on where a range or page starts.',
} as const;
export const formatParam = { type: 'string', enum: ['json', 'csv'], description: 'overrides the Accept header (for tools that cannot set it)' } as const;
