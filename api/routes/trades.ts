/**
 * GET /v1/trades: the trades of one instrument in [from, to), oldest first, paged by a keyset
 * cursor on (ts, id) — the primary key's order, so each page is one index range scan.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiConfig } from '../config.ts';
import { decodeCursor, encodeCursor, fingerprint } from '../cursor.ts';
import { badRequest } from '../errors.ts';
import { emptyRange, sendPage } from '../reply.ts';
import { cursorParam, exchangeParam, formatParam, limitParam, pageResponses, symbolParam, timeParam } from '../schemas.ts';
import { Params, us } from '../sql.ts';
import { formatTime, formatTimeParam, nowUs, parseTime } from '../time.ts';

interface TradesQuery {
  exchange: string;
  symbol: string;
  from: string;
  to?: string;
  limit?: number;
  cursor?: string;
  format?: 'json' | 'csv';
}

interface TradeRow {
  ts: number;
  id: string;
  side: string;
  price: number;
  amount: number;
  received_at: number;
}

export const tradesRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  app.get<{ Querystring: TradesQuery }>(
    '/v1/trades',
    {
      schema: {
        summary: 'Trades of one instrument over a time range',
        description: 'Trades with from <= ts < to, ordered by (ts, id) (none when from >= to). Follow `next` for the following page.',
        tags: ['market data'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['exchange', 'symbol', 'from'],
          properties: {
            exchange: exchangeParam,
            symbol: symbolParam,
            from: timeParam('start of the range, inclusive'),
            to: timeParam('end of the range, exclusive (default: now)'),
            limit: limitParam(config.maxRows),
            cursor: cursorParam,
            format: formatParam,
          },
        },
        response: pageResponses('Trade'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const from = parseTime(q.from, 'from');
      const toGiven = q.to === undefined ? undefined : parseTime(q.to, 'to');
      const fp = fingerprint('trades', { exchange: q.exchange, symbol: q.symbol, from, to: toGiven });
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp);
      if (cursor && cursor.i === undefined) throw badRequest('cursor', 'cursor: not a trades cursor');
      await app.known.requireInstrument(q.exchange, q.symbol);
      const to = toGiven ?? cursor?.t ?? nowUs();
      if (from >= to) return emptyRange(req, reply, 'Trade');
      const limit = q.limit ?? config.maxRows;

      const p = new Params();
      const after = cursor ? ` and (ts, id) > (${p.ref('cts', formatTimeParam(cursor.p), 'timestamptz')}, ${p.ref('cid', cursor.i, 'text')})` : '';
      const text =
        `select ${us('ts')} as ts, id, side, price, amount, ${us('received_at')} as received_at from trades ` +
        `where exchange = ${p.ref('exchange', q.exchange)} and symbol = ${p.ref('symbol', q.symbol)} ` +
        `and ts >= ${p.ref('from', formatTimeParam(cursor ? Math.max(from, cursor.p) : from), 'timestamptz')} and ts < ${p.ref('to', formatTimeParam(to), 'timestamptz')}${after} ` +
        `order by ts, id limit ${p.ref('limit', limit + 1)}`;
      const rows = await app.db.query<TradeRow>('trades', text, p.values);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const next = rows.length > limit && last ? encodeCursor({ p: last.ts, i: last.id, ...(toGiven === undefined ? { t: to } : {}) }, fp) : null;
      const data = page.map((r) => ({ exchange: q.exchange, symbol: q.symbol, ts: formatTime(r.ts), id: r.id, side: r.side, price: r.price, amount: r.amount, received_at: formatTime(r.received_at) }));
      return sendPage(req, reply, 'Trade', data, next);
    },
  );
};
