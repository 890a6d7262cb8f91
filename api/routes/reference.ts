/**
 * What is held: GET /v1/instruments (market metadata), GET /v1/tickers/latest (the newest ticker
 * of each instrument) and GET /v1/coverage (per instrument and channel, the time held and the
 * gaps in it). Instruments are enumerated from the tables' primary keys with a loose index scan
 * (one index probe per instrument), never by scanning the records.
 */
import type { FastifyPluginAsync } from 'fastify';
import { CATALOG, SERIES_TABLES, mapOf, specOfTable, type SeriesTable, type TableName } from '../../schemas/catalog.ts';
import type { ApiConfig } from '../config.ts';
import { decodeCursor, encodeCursor, fingerprint } from '../cursor.ts';
import { badRequest } from '../errors.ts';
import { sendPage } from '../reply.ts';
import { cursorParam, exchangeParam, formatParam, limitParam, pageResponses, symbolParam } from '../schemas.ts';
import { Params, us } from '../sql.ts';
import { formatTime } from '../time.ts';

const SEP = '\u0001';

/** Instruments present in a table keyed (exchange, symbol, ...), after a cursor, filtered. */
function distinctInstruments(p: Params, table: TableName, f: { exchange?: string | undefined; symbol?: string | undefined; after?: readonly [string, string] | undefined }): string {
  const cond: string[] = [];
  if (f.exchange !== undefined) cond.push(`exchange = ${p.ref('exchange', f.exchange)}`);
  const first = [...cond, ...(f.after ? [`(exchange, symbol) > (${p.ref('after_exchange', f.after[0], 'text')}, ${p.ref('after_symbol', f.after[1], 'text')})`] : [])];
  const w = (extra: string[]) => (extra.length ? `where ${extra.join(' and ')} ` : '');
  const tail = f.symbol !== undefined ? ` where i.symbol = ${p.ref('symbol', f.symbol)}` : '';
  return `with recursive i(exchange, symbol) as (
  (select exchange, symbol from ${table} ${w(first)}order by exchange, symbol limit 1)
  union all
  select n.exchange, n.symbol from i, lateral (select exchange, symbol from ${table} where ${[...cond, '(exchange, symbol) > (i.exchange, i.symbol)'].join(' and ')} order by exchange, symbol limit 1) n
)
select i.exchange, i.symbol from i${tail}`;
}

function splitKey(key: string | undefined): readonly [string, string] | undefined {
  if (key === undefined) return undefined;
  const at = key.indexOf(SEP);
  if (at < 0) throw badRequest('cursor', 'cursor: not a cursor of this route');
  return [key.slice(0, at), key.slice(at + 1)];
}

interface TickerRow {
  exchange: string;
  symbol: string;
  ts: number;
  received_at: number;
  [k: string]: unknown;
}

/** The tickers' columns, times as µs. */
const TICKER_COLUMNS = CATALOG.ticker.columns.map((c) => (c.type === 'timestamptz' ? `${us(c.name)} as ${c.name}` : c.name)).join(', ');

/** The market data tables: those a gateway channel fills (schemas/catalog.ts). */
const COVERAGE_CHANNELS = SERIES_TABLES;
type CoverageChannel = SeriesTable;
/**
 * The gaps of each table's channel: the gateway names channels by config (ticker, ohlcv, book)
 * and older records used the table's name; `kafka` gaps lost every channel.
 */
const GAP_CHANNELS: Readonly<Record<CoverageChannel, readonly string[]>> = mapOf(COVERAGE_CHANNELS, (t) => {
  const { gatewayChannel, table } = specOfTable(t);
  return [...new Set([gatewayChannel!, table, 'kafka'])];
});

interface HeldRow {
  exchange: string;
  symbol: string;
  timeframe: string | null;
  first_ts: number;
  last_ts: number;
}

interface GapRow {
  exchange: string;
  symbol: string;
  channel: string;
  from_ts: number;
  to_ts: number | null;
  reason: string;
  refilled: number;
}

export const referenceRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  app.get<{ Querystring: { exchange?: string; symbol?: string; base?: string; quote?: string; type?: string; active?: boolean; limit?: number; cursor?: string; format?: string } }>(
    '/v1/instruments',
    {
      schema: {
        summary: 'Instruments (market metadata from ccxt)',
        tags: ['reference'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            exchange: exchangeParam,
            symbol: symbolParam,
            base: { type: 'string', maxLength: 64, pattern: '^[^\\x00-\\x1f]+$' },
            quote: { type: 'string', maxLength: 64, pattern: '^[^\\x00-\\x1f]+$' },
            type: { type: 'string', maxLength: 32, pattern: '^[a-z]+$', description: 'spot, swap, future, option' },
            active: { type: 'boolean' },
            limit: limitParam(config.maxRows),
            cursor: cursorParam,
            format: formatParam,
          },
        },
        response: pageResponses('Instrument'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const filters = { exchange: q.exchange, symbol: q.symbol, base: q.base, quote: q.quote, type: q.type, active: q.active };
      const fp = fingerprint('instruments', filters);
      const after = splitKey(q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp).i);
      const limit = q.limit ?? config.maxRows;
      const p = new Params();
      const cond: string[] = [];
      for (const col of ['exchange', 'symbol', 'base', 'quote', 'type', 'active'] as const) {
        if (filters[col] !== undefined) cond.push(`${col} = ${p.ref(col, filters[col])}`);
      }
      if (after) cond.push(`(exchange, symbol) > (${p.ref('after_exchange', after[0], 'text')}, ${p.ref('after_symbol', after[1], 'text')})`);
      const text =
        `select exchange, symbol, base, quote, type, active, price_increment, amount_increment, min_amount, exchange_symbol, ${us('ts')} as ts, ${us('received_at')} as received_at ` +
        `from instruments ${cond.length ? `where ${cond.join(' and ')} ` : ''}order by exchange, symbol limit ${p.ref('limit', limit + 1)}`;
      const rows = await app.db.query<Record<string, unknown> & { exchange: string; symbol: string; ts: number; received_at: number }>('instruments', text, p.values);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const next = rows.length > limit && last ? encodeCursor({ p: 0, i: `${last.exchange}${SEP}${last.symbol}` }, fp) : null;
      return sendPage(req, reply, 'Instrument', page.map((r) => ({ ...r, ts: formatTime(r.ts), received_at: formatTime(r.received_at) })), next);
    },
  );

  app.get<{ Querystring: { exchange?: string; symbol?: string; limit?: number; cursor?: string; format?: string } }>(
    '/v1/tickers/latest',
    {
      schema: {
        summary: 'The latest ticker of each instrument',
        tags: ['market data'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { exchange: exchangeParam, symbol: symbolParam, limit: limitParam(config.maxRows), cursor: cursorParam, format: formatParam },
        },
        response: pageResponses('Ticker'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const fp = fingerprint('tickers_latest', { exchange: q.exchange, symbol: q.symbol });
      const after = splitKey(q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp).i);
      await app.known.requireFilter(q.exchange, q.symbol);
      const limit = q.limit ?? config.maxRows;
      const p = new Params();
      const instruments = distinctInstruments(p, 'tickers', { exchange: q.exchange, symbol: q.symbol, after });
      const text =
        `select l.* from (${instruments} order by i.exchange, i.symbol limit ${p.ref('limit', limit + 1)}) i, lateral (` +
        `select ${TICKER_COLUMNS} from tickers t ` +
        `where t.exchange = i.exchange and t.symbol = i.symbol order by ts desc limit 1) l order by l.exchange, l.symbol`;
      const rows = await app.db.query<TickerRow>('tickers_latest', text, p.values);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const next = rows.length > limit && last ? encodeCursor({ p: 0, i: `${last.exchange}${SEP}${last.symbol}` }, fp) : null;
      return sendPage(req, reply, 'Ticker', page.map((r) => ({ ...r, ts: formatTime(r.ts), received_at: formatTime(r.received_at) })), next);
    },
  );

  app.get<{ Querystring: { exchange?: string; symbol?: string; channel?: CoverageChannel; format?: string } }>(
    '/v1/coverage',
    {
      schema: {
        summary: 'Per instrument and channel: the time held, and the gaps in it',
        description:
          'One `data` row per stretch of records held (from the first to the last record, split around gaps) and one `gap` row per stream outage reported by the gateways (gaps table). Every channel with records or gap records is listed: a channel that never stored a record (failing from the start) shows its gaps alone, with timeframe null. Candles are reported per timeframe. At most api.maxRows rows: narrow with exchange, symbol or channel.',
        tags: ['reference'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { exchange: exchangeParam, symbol: symbolParam, channel: { type: 'string', enum: COVERAGE_CHANNELS }, format: formatParam },
        },
        response: pageResponses('Coverage'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      await app.known.requireFilter(q.exchange, q.symbol);
      const channels = q.channel ? [q.channel] : COVERAGE_CHANNELS;
      const out: Record<string, unknown>[] = [];
      for (const channel of channels) {
        const p = new Params();
        const instruments = distinctInstruments(p, channel, { exchange: q.exchange, symbol: q.symbol });
        const text =
          channel === 'candles'
            ? // Timeframes per instrument by a second loose scan on (exchange, symbol, timeframe).
              `select i.exchange, i.symbol, f.timeframe, ${us('f.first_ts')} as first_ts, ${us('l.ts')} as last_ts from (${instruments} limit ${p.ref('limit', config.maxRows + 1)}) i,
lateral (with recursive t(tf) as (
  (select timeframe from candles c where c.exchange = i.exchange and c.symbol = i.symbol order by timeframe limit 1)
  union all
  select (select timeframe from candles c where c.exchange = i.exchange and c.symbol = i.symbol and c.timeframe > t.tf order by timeframe limit 1) from t where t.tf is not null
) select tf as timeframe, (select ts from candles c where c.exchange = i.exchange and c.symbol = i.symbol and c.timeframe = t.tf order by ts limit 1) as first_ts from t where tf is not null) f,
lateral (select ts from candles c where c.exchange = i.exchange and c.symbol = i.symbol and c.timeframe = f.timeframe order by ts desc limit 1) l
order by 1, 2, 3`
            : `select i.exchange, i.symbol, null::text as timeframe, ${us('f.ts')} as first_ts, ${us('l.ts')} as last_ts from (${instruments} limit ${p.ref('limit', config.maxRows + 1)}) i,
lateral (select ts from ${channel} c where c.exchange = i.exchange and c.symbol = i.symbol order by ts limit 1) f,
lateral (select ts from ${channel} c where c.exchange = i.exchange and c.symbol = i.symbol order by ts desc limit 1) l
order by 1, 2`;
        const held = await app.db.query<HeldRow>(`coverage_${channel}`, text, p.values);
        const gp = new Params();
        const gcond = [`channel = any(${gp.ref('channels', GAP_CHANNELS[channel], 'text[]')})`];
        if (q.exchange !== undefined) gcond.push(`exchange = ${gp.ref('exchange', q.exchange)}`);
        if (q.symbol !== undefined) gcond.push(`symbol = ${gp.ref('symbol', q.symbol)}`);
        const gaps = await app.db.query<GapRow>(
          'coverage_gaps',
          `select exchange, symbol, channel, ${us('from_ts')} as from_ts, ${us('to_ts')} as to_ts, reason, refilled from gaps where ${gcond.join(' and ')} order by exchange, symbol, from_ts limit ${gp.ref('limit', config.maxRows + 1)}`,
          gp.values,
        );
        out.push(...coverageRows(channel, held, gaps));
        if (out.length > config.maxRows || gaps.length > config.maxRows) {
          throw badRequest(q.symbol ? 'channel' : 'symbol', `coverage holds more than ${config.maxRows} rows (api.maxRows): narrow it with exchange, symbol or channel`);
        }
      }
      return sendPage(req, reply, 'Coverage', out, null);
    },
  );
};

/**
 * A channel's coverage rows, per instrument in (exchange, symbol) order: what is held cut around
 * its gaps, and for an instrument that has gap records of this channel but no record held (a
 * channel failing from the start) its gaps alone (timeframe null: gap records carry none). A
 * `kafka` gap alone does not list a channel: it lost records of every channel.
 */
function coverageRows(channel: CoverageChannel, held: readonly HeldRow[], gaps: readonly GapRow[]): Record<string, unknown>[] {
  const key = (r: { exchange: string; symbol: string }) => `${r.exchange}${SEP}${r.symbol}`;
  const gapsOf = new Map<string, GapRow[]>();
  for (const g of gaps) gapsOf.set(key(g), [...(gapsOf.get(key(g)) ?? []), g]);
  const parts: { exchange: string; symbol: string; rows: Record<string, unknown>[] }[] = held.map((h) => ({ ...h, rows: segments(channel, h, gapsOf.get(key(h)) ?? []) }));
  const heldKeys = new Set(held.map(key));
  for (const [k, gs] of gapsOf) {
    if (heldKeys.has(k) || gs.every((g) => g.channel === 'kafka')) continue;
    const { exchange, symbol } = gs[0]!;
    const rows = [...gs]
      .sort((a, b) => a.from_ts - b.from_ts)
      .map((g) => ({ exchange, symbol, channel, timeframe: null, kind: 'gap', from_ts: formatTime(g.from_ts), to_ts: g.to_ts === null ? null : formatTime(g.to_ts), reason: g.reason, refilled: g.refilled }));
    parts.push({ exchange, symbol, rows });
  }
  parts.sort((a, b) => (a.exchange < b.exchange ? -1 : a.exchange > b.exchange ? 1 : a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0));
  return parts.flatMap((p) => p.rows);
}

/** The held range of one instrument and channel cut around its gaps, gaps included, in time order. */
function segments(channel: CoverageChannel, h: HeldRow, gaps: readonly GapRow[]): Record<string, unknown>[] {
  const base = { exchange: h.exchange, symbol: h.symbol, channel, timeframe: h.timeframe };
  const out: Record<string, unknown>[] = [];
  let from = h.first_ts;
  const relevant = gaps.filter((g) => g.to_ts === null || g.to_ts >= h.first_ts).sort((a, b) => a.from_ts - b.from_ts);
  for (const g of relevant) {
    const dataEnd = Math.min(g.from_ts, h.last_ts);
    if (dataEnd > from) out.push({ ...base, kind: 'data', from_ts: formatTime(from), to_ts: formatTime(dataEnd), reason: null, refilled: null });
    out.push({ ...base, kind: 'gap', from_ts: formatTime(g.from_ts), to_ts: g.to_ts === null ? null : formatTime(g.to_ts), reason: g.reason, refilled: g.refilled });
    if (g.to_ts === null) return out;
    from = Math.max(from, g.to_ts);
  }
  if (from <= h.last_ts) out.push({ ...base, kind: 'data', from_ts: formatTime(from), to_ts: formatTime(h.last_ts), reason: null, refilled: null });
  return out;
}
