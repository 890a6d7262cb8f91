/**
 * GET /v1/sample/{trades,tickers,candles,books}: the `SAMPLE BY` of the event-store notes — one
 * numeric field of a channel aggregated per time bucket over a range, with the fill modes of /v1/ohlcv. Fields come from an
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
import { emptyRange, sendJsonText, sendPage, wantsCsv } from '../reply.ts';
import { cursorParam, exchangeParam, fillParam, formatParam, intervalParam, limitParam, pageResponses, symbolParam, timeParam } from '../schemas.ts';
import { AGGS, SAMPLE_CHANNELS, SAMPLE_FIELDS, TRADES_FROM_ROLLUP, rawAggregate, rollupFor, type Agg, type BucketSource, type SampleChannel } from '../sql.ts';
import { ceilTo, floorTo, formatTime, nowUs, parseInterval, parseTime } from '../time.ts';

interface SampleQuery {
  exchange: string;
  symbol: string;
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

export const sampleRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  // One path per channel, so each declares exactly its own fields (and candles its timeframe):
  // the OpenAPI document then says exactly what each accepts.
  for (const channel of SAMPLE_CHANNELS) sampleRoute(channel);

  // The earlier form, /v1/sample?channel=trades&..., keeps working for existing clients: a
  // permanent redirect to its path (kept out of the document, which declares the new paths).
  app.get<{ Querystring: Record<string, string | string[]> }>('/v1/sample', { schema: { hide: true } }, async (req, reply) => {
    const channel = req.query.channel;
    if (typeof channel !== 'string' || !(SAMPLE_CHANNELS as readonly string[]).includes(channel)) {
      throw badRequest('channel', `channel: expected one of ${SAMPLE_CHANNELS.join(', ')} (or use /v1/sample/{channel})`);
    }
    const rest = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query)) if (k !== 'channel') for (const x of Array.isArray(v) ? v : [v]) rest.append(k, x);
    const qs = rest.toString();
    return reply.redirect(`/v1/sample/${channel}${qs ? `?${qs}` : ''}`, 308);
  });

  function sampleRoute(channel: SampleChannel): void {
    const fields = Object.keys(SAMPLE_FIELDS[channel]);
    app.get<{ Querystring: SampleQuery }>(
      `/v1/sample/${channel}`,
      {
        schema: {
          summary: `One numeric field of the ${channel}, aggregated per time bucket (SAMPLE BY)`,
          description: `Fields of ${channel}: ${fields.join(', ')}. Buckets start in [from floored to the interval, to) (none when from >= to). Long ranges are paged: follow \`next\`.`,
          tags: ['market data'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            required: ['exchange', 'symbol', 'field', 'agg', 'interval', 'from'],
            properties: {
              exchange: exchangeParam,
              symbol: symbolParam,
              field: { type: 'string', enum: fields, description: `a numeric field of ${channel}` },
              agg: { type: 'string', enum: AGGS },
              interval: intervalParam(true),
              from: timeParam('start of the range'),
              to: timeParam('end of the range, exclusive (default: now)'),
              ...(channel === 'candles' ? { timeframe: { type: 'string', maxLength: 8, pattern: '^[1-9][0-9]{0,5}[smhdwM]$', default: '1m', description: 'which candles (ccxt timeframe)' } } : {}),
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
        // The schema's enum admits only this channel's fields; hasOwn keeps prototype names out regardless.
        const expr = Object.hasOwn(SAMPLE_FIELDS[channel], q.field) ? SAMPLE_FIELDS[channel][q.field] : undefined;
        if (expr === undefined) throw badRequest('field', `field: ${channel} has no numeric field ${JSON.stringify(q.field)} (expected one of ${fields.join(', ')})`);
        const iv = parseInterval(q.interval, 'interval', { allowSeconds: true });
        const from = parseTime(q.from, 'from');
        const toGiven = q.to === undefined ? undefined : parseTime(q.to, 'to');
        const fp = fingerprint('sample', { exchange: q.exchange, symbol: q.symbol, channel, field: q.field, agg: q.agg, interval: iv.seconds, from, to: toGiven, timeframe: q.timeframe, fill: q.fill });
        const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp);
        await app.known.requireInstrument(q.exchange, q.symbol);
        const to = toGiven ?? cursor?.t ?? nowUs();
        if (from >= to) return emptyRange(req, reply, 'Sample');
        const endAll = ceilTo(to, iv.us);
        const first = floorTo(from, iv.us);
        const start = cursor ? cursor.p : first;
        if (start < first || start >= endAll || (start - first) % iv.us !== 0) throw badRequest('cursor', 'cursor: outside the requested range');

        const keys: Array<readonly ['exchange' | 'symbol' | 'timeframe', string]> = [['exchange', q.exchange], ['symbol', q.symbol]];
        const rollup = channel === 'trades' ? rollupFor(iv) : undefined;
        const fromRollup = rollup ? TRADES_FROM_ROLLUP[`${q.field}:${q.agg}`] : undefined;
        let source: BucketSource;
        let plan;
        if (rollup && fromRollup) {
          source = { table: rollup.table, time: 'bucket', keys };
          plan = { aggregates: [fromRollup], sourceSeconds: rollup.seconds, nonNull: undefined };
        } else {
          if (channel === 'candles') keys.push(['timeframe', q.timeframe ?? '1m']);
          source = { table: channel, time: 'ts', keys };
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
  }
};
