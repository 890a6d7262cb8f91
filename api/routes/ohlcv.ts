/**
 * GET /v1/ohlcv: candles of one instrument at any Nm/Nh/Nd/Nw interval.
 * - source=trades (default): from the OHLCV rollups of the trades, the coarsest one whose bucket
 *   divides the interval (5m, 90m → ohlcv_1m; 4h → ohlcv_1h; 2d, 1w → ohlcv_1d); raw trades are
 *   never scanned (a rollup always divides: intervals are whole minutes). Sub-minute buckets are
 *   /v1/sample's job (it reads raw records and says so).
 * - source=exchange: the exchange's own candles, at the interval's timeframe when held, else
 *   re-bucketed from the coarsest held timeframe that divides both the interval and a day (the
 *   grids then agree whatever the exchange's week or multi-day origin).
 * Buckets: every bucket whose start lies in [from floored to the interval, to); grids start at
 * TimescaleDB's origin 2000-01-03 (a Monday), so days start at midnight UTC and weeks on Monday.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiConfig } from '../config.ts';
import { bucketPage } from '../buckets.ts';
import { decodeCursor, encodeCursor, fingerprint } from '../cursor.ts';
import { ApiError, badRequest } from '../errors.ts';
import type { Fill } from '../fill.ts';
import { emptyRange, sendJsonText, sendPage, wantsCsv } from '../reply.ts';
import { cursorParam, exchangeParam, fillParam, formatParam, intervalParam, limitParam, pageResponses, symbolParam, timeParam } from '../schemas.ts';
import { OHLCV_FROM_EXCHANGE, OHLCV_FROM_ROLLUP, rollupFor, type BucketSource } from '../sql.ts';
import { durationParser } from '../../core/time.ts';
import { ceilTo, floorTo, formatTime, nowUs, parseInterval, parseTime, type Interval } from '../time.ts';

interface OhlcvQuery {
  exchange: string;
  symbol: string;
  interval: string;
  from: string;
  to?: string;
  limit?: number;
  cursor?: string;
  fill: Fill;
  source: 'trades' | 'exchange';
  format?: 'json' | 'csv';
}

const TIMEFRAMES_SQL = `with recursive t(tf) as (
  (select timeframe from candles where exchange = $1 and symbol = $2 order by timeframe limit 1)
  union all
  select (select timeframe from candles where exchange = $1 and symbol = $2 and timeframe > t.tf order by timeframe limit 1) from t where t.tf is not null
)
select tf from t where tf is not null`;

const parseStoredTimeframe = durationParser({ units: 'smhdw', maxDigits: 6 });

/** Seconds of a ccxt timeframe like 1m/4h/1d/1w; undefined for months or unknown forms. */
function timeframeSeconds(tf: string): number | undefined {
  return parseStoredTimeframe(tf)?.seconds;
}

export const ohlcvRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  app.get<{ Querystring: OhlcvQuery }>(
    '/v1/ohlcv',
    {
      schema: {
        summary: 'OHLCV candles of one instrument at any interval',
        description:
          'Served from the coarsest OHLCV rollup whose bucket divides the interval (ohlcv_1m, ohlcv_1h, ohlcv_1d), or from the exchange\'s own candles with source=exchange. Buckets are those starting in [from floored to the interval, to), on a grid from 2000-01-03T00:00Z (days at midnight UTC, weeks on Mondays). Long ranges are paged: follow `next`.',
        tags: ['market data'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['exchange', 'symbol', 'interval', 'from'],
          properties: {
            exchange: exchangeParam,
            symbol: symbolParam,
            interval: intervalParam(false),
            from: timeParam('start of the range'),
            to: timeParam('end of the range, exclusive (default: now)'),
            limit: limitParam(config.maxRows),
            cursor: cursorParam,
            fill: fillParam,
            source: { type: 'string', enum: ['trades', 'exchange'], default: 'trades', description: 'trades: the rollups of the trades; exchange: the exchange\'s own candles' },
            format: formatParam,
          },
        },
        response: pageResponses('Candle'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const iv = parseInterval(q.interval, 'interval');
      const from = parseTime(q.from, 'from');
      const toGiven = q.to === undefined ? undefined : parseTime(q.to, 'to');
      const fp = fingerprint('ohlcv', { exchange: q.exchange, symbol: q.symbol, interval: iv.seconds, from, to: toGiven, fill: q.fill, source: q.source });
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp);
      await app.known.requireInstrument(q.exchange, q.symbol);
      const to = toGiven ?? cursor?.t ?? nowUs();
      if (from >= to) return emptyRange(req, reply, 'Candle');
      const limit = q.limit ?? config.maxRows;
      const endAll = ceilTo(to, iv.us);
      const start = cursor ? cursor.p : floorTo(from, iv.us);
      if (start < floorTo(from, iv.us) || start >= endAll || (start - floorTo(from, iv.us)) % iv.us !== 0) throw badRequest('cursor', 'cursor: outside the requested range');

      const plan = q.source === 'exchange' ? await exchangePlan(q, iv) : rollupPlan(q, iv);
      if (!plan) return sendPage(req, reply, 'Candle', [], null);
      const emptyTrades = q.source === 'trades' ? 0 : null;
      const page = await bucketPage(app.db, {
        label: `ohlcv_${plan.source.table}`,
        source: plan.source,
        aggregates: plan.aggregates,
        interval: iv,
        sourceSeconds: plan.sourceSeconds,
        start,
        endAll,
        limit,
        fill: q.fill,
        maxScanRows: config.maxScanRows,
        asJson: wantsCsv(req) ? undefined : { exchange: q.exchange, symbol: q.symbol },
        valueOf: (r) => r.close ?? null,
        empty: (b, v) => ({ k: 0, b, open: v, high: v, low: v, close: v, volume: 0, trades: emptyTrades }),
      });
      const next = page.next === undefined ? null : encodeCursor({ p: page.next, ...(toGiven === undefined ? { t: to } : {}) }, fp);
      if (page.json !== undefined) return sendJsonText(reply, page.json, next);
      const data = page.rows.map((r) => ({
        exchange: q.exchange,
        symbol: q.symbol,
        bucket: formatTime(r.b),
        open: r.open ?? null,
        high: r.high ?? null,
        low: r.low ?? null,
        close: r.close ?? null,
        volume: r.volume ?? 0,
        trades: r.trades ?? null,
      }));
      return sendPage(req, reply, 'Candle', data, next);
    },
  );

  function rollupPlan(q: OhlcvQuery, iv: Interval) {
    const rollup = rollupFor(iv)!; // every whole-minute interval has one
    const source: BucketSource = { table: rollup.table, time: 'bucket', keys: [['exchange', q.exchange], ['symbol', q.symbol]] };
    return { source, aggregates: OHLCV_FROM_ROLLUP, sourceSeconds: rollup.seconds };
  }

  async function exchangePlan(q: OhlcvQuery, iv: Interval) {
    const held = (await app.db.query<{ tf: string }>('ohlcv_timeframes', TIMEFRAMES_SQL, [q.exchange, q.symbol])).map((r) => r.tf);
    if (held.length === 0) return undefined;
    const usable = held
      .map((tf) => ({ tf, seconds: timeframeSeconds(tf) }))
      .filter((x): x is { tf: string; seconds: number } => x.seconds !== undefined)
      .filter((x) => x.seconds === iv.seconds || (iv.seconds % x.seconds === 0 && 86_400 % x.seconds === 0))
      .sort((a, b) => (a.seconds === iv.seconds ? -1 : b.seconds === iv.seconds ? 1 : b.seconds - a.seconds));
    const pick = usable[0];
    if (!pick) {
      throw new ApiError(404, `interval: no exchange candles of ${q.exchange} ${q.symbol} at ${iv.text} or at a timeframe dividing it (held: ${held.join(', ')}); use source=trades`, { parameter: 'interval' });
    }
    const source: BucketSource = { table: 'candles', time: 'ts', keys: [['exchange', q.exchange], ['symbol', q.symbol], ['timeframe', pick.tf]] };
    return { source, aggregates: OHLCV_FROM_EXCHANGE, sourceSeconds: pick.seconds };
  }
};

