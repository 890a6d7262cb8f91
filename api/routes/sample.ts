/**
 * GET /v1/sample: the `SAMPLE BY` of the event-store notes — one numeric field of a channel
 * aggregated per time bucket over a range, with the fill modes of /v1/ohlcv. Fields come from an
 * allow-list per channel (table columns, plus derived ones: a trade's notional, a ticker's or
 * book's mid and spread, the book's top levels). Samples of trades the OHLCV rollups answer
 * exactly (first/last/min/max price, summed amount, counts) are read from them; the rest read
 * the raw records, a page at most api.maxScanRows of them (found by an index probe).
 * Records whose field is null are ignored, as SQL aggregates do; a bucket without any is empty.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiConfig } from '../config.ts';
import { bucketPage } from '../buckets.ts';
import { decodeCursor, encodeCursor, fingerprint } from '../cursor.ts';
import { badRequest } from '../errors.ts';
import type { Fill } from '../fill.ts';
import { sendJsonText, sendPage, wantsCsv } from '../reply.ts';
import { cursorParam, exchangeParam, fillParam, formatParam, limitParam, pageResponses, symbolParam, timeParam } from '../schemas.ts';
import { AGGS, SAMPLE_CHANNELS, SAMPLE_FIELDS, TRADES_FROM_ROLLUP, rawAggregate, rollupFor, type Agg, type BucketSource, type SampleChannel } from '../sql.ts';
import { ceilTo, floorTo, formatTime, nowUs, parseInterval, parseTime } from '../time.ts';

interface SampleQuery {
  exchange: string;
  symbol: string;
  channel: SampleChannel;
  field: string;
  agg: Agg;
  interval: string;
  from: string;
  to?: string;
  timeframe?: string;
  limit?: number;
  cursor?: string;
  fill: Fill;
  format?: 'json' | 'csv';
}

const fieldList = Object.entries(SAMPLE_FIELDS)
  .map(([c, f]) => `${c}: ${Object.keys(f).join(', ')}`)
  .join('; ');

export const sampleRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  app.get<{ Querystring: SampleQuery }>(
    '/v1/sample',
    {
      schema: {
        summary: 'Any numeric field of a channel, aggregated per time bucket (SAMPLE BY)',
        description: `Fields per channel — ${fieldList}. Buckets start in [from floored to the interval, to). Long ranges are paged: follow \`next\`.`,
        tags: ['market data'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['exchange', 'symbol', 'channel', 'field', 'agg', 'interval', 'from'],
          properties: {
            exchange: exchangeParam,
            symbol: symbolParam,
            channel: { type: 'string', enum: SAMPLE_CHANNELS },
            field: { type: 'string', maxLength: 64, pattern: '^[a-z0-9_]+$', description: `a numeric field of the channel (${fieldList})` },
            agg: { type: 'string', enum: AGGS },
            interval: { type: 'string', maxLength: 12, description: 'Ns, Nm, Nh, Nd or Nw (e.g. 10s, 5m, 4h, 1d), at most ten years' },
            from: timeParam('start of the range'),
            to: timeParam('end of the range, exclusive (default: now)'),
            timeframe: { type: 'string', maxLength: 8, pattern: '^[1-9][0-9]{0,5}[smhdwM]$', description: 'channel=candles only: which candles (default 1m)' },
            limit: limitParam(config.maxRows),
            cursor: cursorParam,
            fill: fillParam,
            format: formatParam,
          },
        },
        response: pageResponses('Sample'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const expr = Object.hasOwn(SAMPLE_FIELDS[q.channel], q.field) ? SAMPLE_FIELDS[q.channel][q.field] : undefined;
      if (expr === undefined) throw badRequest('field', `field: ${q.channel} has no numeric field ${JSON.stringify(q.field)} (expected one of ${Object.keys(SAMPLE_FIELDS[q.channel]).join(', ')})`);
      if (q.timeframe !== undefined && q.channel !== 'candles') throw badRequest('timeframe', 'timeframe: applies to channel=candles only');
      const iv = parseInterval(q.interval, 'interval', { allowSeconds: true });
      const from = parseTime(q.from, 'from');
      const toGiven = q.to === undefined ? undefined : parseTime(q.to, 'to');
      if (toGiven !== undefined && from >= toGiven) throw badRequest('from', `from must be earlier than to (from=${q.from}, to=${q.to})`);
      const fp = fingerprint('sample', { exchange: q.exchange, symbol: q.symbol, channel: q.channel, field: q.field, agg: q.agg, interval: iv.seconds, from, to: toGiven, timeframe: q.timeframe, fill: q.fill });
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp);
      const to = toGiven ?? cursor?.t ?? nowUs();
      if (from >= to) throw badRequest('from', `from must be earlier than to (from=${q.from}, to=now)`);
      const endAll = ceilTo(to, iv.us);
      const first = floorTo(from, iv.us);
      const start = cursor ? cursor.p : first;
      if (start < first || start >= endAll || (start - first) % iv.us !== 0) throw badRequest('cursor', 'cursor: outside the requested range');

      const keys: Array<readonly ['exchange' | 'symbol' | 'timeframe', string]> = [['exchange', q.exchange], ['symbol', q.symbol]];
      const rollup = q.channel === 'trades' ? rollupFor(iv) : undefined;
      const fromRollup = rollup ? TRADES_FROM_ROLLUP[`${q.field}:${q.agg}`] : undefined;
      let source: BucketSource;
      let plan;
      if (rollup && fromRollup) {
        source = { table: rollup.table, time: 'bucket', keys };
        plan = { aggregates: [fromRollup], sourceSeconds: rollup.seconds, nonNull: undefined };
      } else {
        if (q.channel === 'candles') keys.push(['timeframe', q.timeframe ?? '1m']);
        source = { table: q.channel, time: 'ts', keys };
        plan = { aggregates: [rawAggregate(q.agg, expr, 'ts')], sourceSeconds: undefined, nonNull: expr };
      }
      const page = await bucketPage(app.db, {
        label: `sample_${source.table}`,
        source,
        ...plan,
        interval: iv,
        start,
        endAll,
        limit: q.limit ?? config.maxRows,
        fill: q.fill,
        maxScanRows: config.maxScanRows,
        asJson: wantsCsv(req) ? undefined : { exchange: q.exchange, symbol: q.symbol },
        valueOf: (r) => r.value ?? null,
        empty: (b, v) => ({ k: 0, b, value: v }),
      });
      const next = page.next === undefined ? null : encodeCursor({ p: page.next, ...(toGiven === undefined ? { t: to } : {}) }, fp);
      if (page.json !== undefined) return sendJsonText(reply, page.json, next);
      const data = page.rows.map((r) => ({ exchange: q.exchange, symbol: q.symbol, bucket: formatTime(r.b), value: r.value ?? null }));
      return sendPage(req, reply, 'Sample', data, next);
    },
  );
};
