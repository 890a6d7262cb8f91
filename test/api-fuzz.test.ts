/**
 * Property-based fuzzing from the API's own OpenAPI document (fast-check, in-process): for every
 * GET operation, query strings built from its declared parameters — values that fit the schema
 * (enums, patterns, formats, ranges, and values that reach the data), values just outside it, and
 * garbage (random unicode, control characters, huge numbers, repeated and unknown parameters,
 * real and tampered cursors). The property: never a 5xx, always an answer within seconds, and
 * every 4xx is a JSON body whose message names what was wrong.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { migrate } from '../migrations/runner.ts';
import type { Trade } from '../schemas/index.ts';
import { describeEachDb } from './harness/db.ts';
import { insertCandles, insertInstruments, insertTickers, insertTrades, isoUs } from './harness/market-data.ts';

interface ParamSchema {
  type?: string | string[];
  enum?: string[];
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
}
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: ParamSchema;
}

/** TICKFLOW_FUZZ_RUNS / TICKFLOW_FUZZ_SEED search harder or elsewhere; the default is fixed and quick. */
const RUNS = Number(process.env.TICKFLOW_FUZZ_RUNS ?? 400);
const SEED = Number(process.env.TICKFLOW_FUZZ_SEED ?? 20240701);
const T = Date.UTC(2024, 6, 1) * 1000;
const MIN = 60_000_000;

const VALID: Record<string, string[]> = {
  exchange: ['binance', 'okx'],
  symbol: ['BTC/USDT', 'ETH/USDT', 'DOGE/USDT'],
  interval: ['1m', '5m', '7m', '1h', '4h', '1d', '2d', '1w', '30s', '1s', '3650d'],
  field: ['price', 'amount', 'notional', 'bid', 'ask', 'mid', 'spread', 'close', 'volume', 'best_bid', 'best_ask'],
  timeframe: ['1m', '1h', '1M'],
};

const garbage = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', ' ', '%', '\u0000', '\u202e', '../../etc', "'; drop table trades; --", '-1', '0', '1e309', 'NaN', 'null', 'true', '[]', '{}', '9'.repeat(40), 'a'.repeat(600)),
  fc.integer().map(String),
  fc.double().map(String),
);

const time = fc.oneof(
  fc.integer({ min: -5 * 1440, max: 5 * 1440 }).map((m) => isoUs(T + m * MIN + 123)),
  fc.date({ min: new Date(-1e14), max: new Date(1e14), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2024-07-01T00:00:00Z', '2024-07-01T00:00:00+14:00', '2024-07-01T00:00:00.1234567Z', '2024-07-01 00:00:00Z', '2024-07-01', '1969-12-31T23:59:59Z', '2199-12-31T23:59:59Z', '2024-02-30T00:00:00Z', '2024-07-01T24:00:00Z'),
);

const nearT = fc.integer({ min: -3 * 1440, max: 3 * 1440 }).map((m) => isoUs(T + m * MIN + 123));

/** Mostly values that reach the data; then values that fit the schema; then garbage and repeats. */
function valueFor(p: Parameter, cursors: string[]): fc.Arbitrary<string | string[]> {
  const s = p.schema;
  const likely: Array<fc.Arbitrary<string>> = [];
  const fitting: Array<fc.Arbitrary<string>> = [];
  if (VALID[p.name]) likely.push(fc.constantFrom(...VALID[p.name]!));
  if (s.enum) likely.push(fc.constantFrom(...s.enum));
  if (s.format === 'date-time') {
    likely.push(nearT);
    fitting.push(time);
  }
  if (s.pattern) fitting.push(fc.stringMatching(new RegExp(s.pattern)).filter((x) => x.length <= (s.maxLength ?? 200)));
  if (s.type === 'integer') {
    likely.push(fc.integer({ min: 1, max: 50 }).map(String));
    fitting.push(fc.integer({ min: (s.minimum ?? 0) - 2, max: (s.maximum ?? 1e6) + 2 }).map(String));
  }
  if (s.type === 'boolean') {
    likely.push(fc.constantFrom('true', 'false'));
    fitting.push(fc.constantFrom('1', '0', 'yes'));
  }
  if (p.name === 'cursor') {
    likely.push(fc.constantFrom(...cursors));
    fitting.push(fc.constantFrom(...cursors).map((c) => `${c.slice(0, -2)}xy`));
  }
  const parts: Array<{ weight: number; arbitrary: fc.Arbitrary<string> }> = [{ weight: 1, arbitrary: garbage }];
  if (likely.length) parts.push({ weight: 12, arbitrary: fc.oneof(...likely) });
  if (fitting.length) parts.push({ weight: 3, arbitrary: fc.oneof(...fitting) });
  const one = fc.oneof(...parts);
  return fc.oneof({ weight: 25, arbitrary: one }, { weight: 1, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }) });
}

describeEachDb(['embedded', 'postgres'], (db) => {
  let api: Api;
  let doc: { paths: Record<string, Record<string, { parameters?: Parameter[] }>> };
  const cursors: string[] = [];

  beforeAll(async () => {
    const pool = db().pool;
    await migrate(pool);
    const trades: Trade[] = [];
    for (let i = 0; i < 600; i++) {
      const ts = T + i * 7_000_000 + i;
      trades.push({ exchange: i % 3 ? 'binance' : 'okx', symbol: i % 2 ? 'BTC/USDT' : 'ETH/USDT', ts, received_at: ts + 5, id: String(i), side: 'buy', price: 100 + (i % 17), amount: 1 + (i % 3) });
    }
    await insertTrades(pool, trades);
    await insertTickers(pool, trades.slice(0, 100).map((t) => ({ exchange: t.exchange, symbol: t.symbol, ts: t.ts, received_at: t.received_at, bid: t.price, bid_size: 1, ask: t.price + 1, ask_size: null, last: t.price, open_24h: null, high_24h: null, low_24h: null, base_volume_24h: null, quote_volume_24h: null })));
    await insertCandles(pool, Array.from({ length: 60 }, (_, i) => ({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: T + i * MIN, received_at: T + i * MIN + 1, open: 1, high: 2, low: 0.5, close: 1.5, volume: 3, closed: true })));
    await insertInstruments(pool, [{ exchange: 'binance', symbol: 'BTC/USDT', base: 'BTC', quote: 'USDT', type: 'spot', active: true, price_increment: null, amount_increment: null, min_amount: null, exchange_symbol: 'BTCUSDT', ts: T, received_at: T }]);
    api = buildApi(parseConfig({ api: { maxRows: 200, maxScanRows: 1_000 } }, { env: {} }), { pool, brokers: false });
    await api.app.ready();
    doc = (await api.app.inject({ method: 'GET', url: '/docs/json' })).json();
    // Real cursors, to fuzz with them (and tampered copies).
    for (const [url, query] of [
      ['/v1/trades', { exchange: 'binance', symbol: 'BTC/USDT', from: isoUs(T), limit: '5' }],
      ['/v1/ohlcv', { exchange: 'binance', symbol: 'BTC/USDT', interval: '1m', from: isoUs(T), to: isoUs(T + 60 * MIN), limit: '5', fill: 'prev' }],
      ['/v1/instruments', { limit: '1' }],
    ] as const) {
      const next = (await api.app.inject({ method: 'GET', url, query })).json().next;
      if (typeof next === 'string') cursors.push(next);
    }
    expect(cursors.length).toBeGreaterThan(0);
  });
  afterAll(async () => api?.close());

  it('finds no 5xx, no hang and no unexplained 4xx in any GET operation of the OpenAPI document', async () => {
    const operations = Object.entries(doc.paths).filter(([, ops]) => ops.get);
    expect(operations.map(([p]) => p)).toEqual(expect.arrayContaining(['/v1/ohlcv', '/v1/sample/trades', '/v1/sample/tickers', '/v1/trades', '/v1/coverage']));
    const seen = new Map<string, Map<number, number>>();
    for (const [path, ops] of operations) {
      const params = (ops.get!.parameters ?? []).filter((p) => p.in === 'query');
      const query = fc.record(
        Object.fromEntries(params.map((p) => [p.name, p.required ? fc.oneof({ weight: 40, arbitrary: valueFor(p, cursors) }, { weight: 1, arbitrary: fc.constant(undefined) }) : fc.option(valueFor(p, cursors), { nil: undefined, freq: 2 })])),
      );
      const extra = fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('limt', 'foo', '__proto__', 'constructor', 'a[b]', 'symbol[]'), garbage, { minKeys: 1, maxKeys: 2 }) });
      const runs = path.startsWith('/v1/') ? RUNS : 20;
      await fc.assert(
        fc.asyncProperty(query, extra, async (q, more) => {
          const clean = Object.fromEntries(Object.entries({ ...q, ...more }).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>;
          const started = Date.now();
          const res = await api.app.inject({ method: 'GET', url: path, query: clean });
          const ms = Date.now() - started;
          const byStatus = seen.get(path) ?? new Map<number, number>();
          byStatus.set(res.statusCode, (byStatus.get(res.statusCode) ?? 0) + 1);
          seen.set(path, byStatus);
          if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${path} ${JSON.stringify(clean)}: ${res.body.slice(0, 300)}`);
          if (ms > 10_000) throw new Error(`${ms} ms for ${path} ${JSON.stringify(clean)}`);
          if (res.statusCode >= 400 && res.statusCode !== 426) {
            const body = res.json() as { message?: unknown; statusCode?: unknown };
            if (typeof body.message !== 'string' || body.statusCode !== res.statusCode) throw new Error(`unexplained ${res.statusCode}: ${res.body}`);
          }
        }),
        { numRuns: runs, seed: SEED, endOnFailure: true },
      );
    }
    // The fuzzing reached the data, not just the validation.
    for (const path of ['/v1/ohlcv', '/v1/trades', '/v1/sample/trades', '/v1/sample/tickers', '/v1/sample/candles', '/v1/tickers/latest', '/v1/instruments', '/v1/coverage']) {
      expect(seen.get(path)?.get(200) ?? 0, `${path}: ${JSON.stringify([...(seen.get(path) ?? [])])}`).toBeGreaterThan(0);
    }
  }, 300_000);
});
