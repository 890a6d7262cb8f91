/**
 * The REST routes besides /v1/ohlcv's trade candles, on both databases: trades (range, paging),
 * latest tickers, instruments, coverage with gaps, generic sampling (from the rollups and from
 * raw records, every channel), exchange candles, the OpenAPI document, operations routes, and
 * bad input: every refusal is a 400 naming the parameter; a database that is down is a 503.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { createPool } from '../core/db.ts';
import { sig12 } from '../api/sql.ts';
import { migrate } from '../migrations/runner.ts';
import type { Candle, Gap, Instrument, Ticker, Trade } from '../schemas/index.ts';
import { describeEachDb } from './harness/db.ts';
import { insertCandles, insertGaps, insertInstruments, insertTickers, insertTrades, isoUs as iso } from './harness/market-data.ts';

const S = 1_000_000;
const MIN = 60 * S;
const T = Date.UTC(2024, 4, 6) * 1000; // Monday 2024-05-06

const trades: Trade[] = [];
for (let i = 0; i < 120; i++) {
  // Binance BTC/USDT: a trade every 30.5 s with microseconds; an ETH and an OKX trade now and then.
  const ts = T + i * 30 * S + i * 500_000 + 7;
  trades.push({ exchange: 'binance', symbol: 'BTC/USDT', ts, received_at: ts + 2_000, id: `b${1000 + i}`, side: i % 2 ? 'buy' : 'sell', price: 60_000 + ((i * 37) % 101), amount: (1 + (i % 8)) / 16 });
  if (i % 10 === 0) trades.push({ exchange: 'binance', symbol: 'ETH/USDT', ts: ts + 1, received_at: ts + 3, id: `e${i}`, side: 'buy', price: 3_000 + i, amount: 1 });
  if (i % 20 === 0) trades.push({ exchange: 'okx', symbol: 'BTC/USDT', ts: ts + 2, received_at: ts + 3, id: `o${i}`, side: 'unknown', price: 59_990 + i, amount: 0.5 });
}
// Two trades in the same microsecond: (ts, id) orders them.
trades.push({ exchange: 'binance', symbol: 'BTC/USDT', ts: T + 5 * MIN + 123_456, received_at: T + 5 * MIN + 200_000, id: 'z1', side: 'buy', price: 60_500, amount: 0.25 });
trades.push({ exchange: 'binance', symbol: 'BTC/USDT', ts: T + 5 * MIN + 123_456, received_at: T + 5 * MIN + 200_000, id: 'z2', side: 'sell', price: 60_499, amount: 0.5 });
// Amounts whose float8 sums carry artifacts: 0.1 + 0.2 = 0.30000000000000004, 0.7 + 0.1 = 0.7999999999999999.
const H3 = T + 180 * MIN;
for (const [i, at, amount] of [[1, 0, 0.1], [2, 10, 0.2], [3, 60, 0.7], [4, 70, 0.1]] as const) {
  trades.push({ exchange: 'binance', symbol: 'ETH/USDT', ts: H3 + at * S, received_at: H3 + at * S + 1, id: `f${i}`, side: 'buy', price: 3, amount });
}
// An instrument present in the data only (no instruments row): known all the same.
trades.push({ exchange: 'bitstamp', symbol: 'BTC/EUR', ts: T + 7, received_at: T + 9, id: 'x1', side: 'sell', price: 55_000, amount: 0.01 });

const ticker = (exchange: string, symbol: string, ts: number, bid: number | null, ask: number | null): Ticker => ({
  exchange,
  symbol,
  ts,
  received_at: ts + 1_000,
  bid,
  bid_size: 1,
  ask,
  ask_size: 2,
  last: bid,
  open_24h: null,
  high_24h: null,
  low_24h: null,
  base_volume_24h: 100,
  quote_volume_24h: null,
});
const tickers: Ticker[] = [];
for (let i = 0; i < 30; i++) {
  // Every 10 s for 5 min, but nothing between 2:00 and 3:00 (fill matters); the last has no bid.
  if (i >= 12 && i < 18) continue;
  tickers.push(ticker('binance', 'BTC/USDT', T + i * 10 * S, 60_000 + i, i === 29 ? null : 60_001 + i));
}
tickers.push(ticker('binance', 'ETH/USDT', T + 50 * S, 3_000, 3_001), ticker('binance', 'ETH/USDT', T + 70 * S, 3_002, 3_003));
tickers.push(ticker('okx', 'BTC/USDT', T + 20 * S, 59_000, 59_010));

const candle = (timeframe: string, ts: number, o: number, v: number, closed = true): Candle => ({ exchange: 'binance', symbol: 'BTC/USDT', timeframe, ts, received_at: ts + 1_000, open: o, high: o + 5, low: o - 5, close: o + 1, volume: v, closed });
const candles: Candle[] = [];
for (let i = 0; i < 120; i++) candles.push(candle('1m', T + i * MIN, 60_000 + i, i + 1, i < 119));
candles.push(candle('1h', T, 61_000, 1_000), candle('1h', T + 60 * MIN, 61_100, 2_000, false));

const gaps: Gap[] = [
  { exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', from_ts: T + 20 * MIN, to_ts: T + 25 * MIN, reason: 'connection closed (1006)', refilled: 12, ts: T + 25 * MIN, received_at: T + 25 * MIN },
  { exchange: 'binance', symbol: 'BTC/USDT', channel: 'ticker', from_ts: T + 4 * MIN, to_ts: null, reason: 'no message for 30s', refilled: 0, ts: T + 4 * MIN, received_at: T + 4 * MIN },
  // A channel failing from the start: gap records, never a record stored.
  { exchange: 'okx', symbol: 'BTC/USDT', channel: 'book', from_ts: T + MIN, to_ts: null, reason: 'book: watchOrderBook(BTC/USDT): ExchangeNotAvailable', refilled: 0, ts: T + MIN, received_at: T + MIN },
  { exchange: 'okx', symbol: 'BTC/USDT', channel: 'book', from_ts: T, to_ts: T + 30 * S, reason: 'book: gateway restarted', refilled: 0, ts: T + 30 * S, received_at: T + 30 * S },
  // Records lost on the way to Kafka concern every channel: alone, they list none.
  { exchange: 'okx', symbol: 'DOGE/USDT', channel: 'kafka', from_ts: T, to_ts: T + MIN, reason: 'kafka: 12 records dropped from a full buffer', refilled: 0, ts: T + MIN, received_at: T + MIN },
];

const instrument = (exchange: string, symbol: string, active = true): Instrument => {
  const [base = '', quote = ''] = symbol.split('/');
  return { exchange, symbol, base, quote, type: 'spot', active, price_increment: 0.01, amount_increment: 0.00001, min_amount: 0.0001, exchange_symbol: symbol.replace('/', ''), ts: T, received_at: T + 5 };
};
const instruments = [instrument('binance', 'BTC/USDT'), instrument('binance', 'ETH/USDT'), instrument('okx', 'BTC/USDT'), instrument('okx', 'DOGE/USDT', false)];

type Json = Record<string, unknown>;

describeEachDb(['embedded', 'postgres'], (db) => {
  let api: Api;
  const get = async (url: string, query: Record<string, string | number> = {}, headers: Record<string, string> = {}) =>
    api.app.inject({ method: 'GET', url, query: Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])), headers });
  const ok = async (url: string, query: Record<string, string | number> = {}): Promise<{ data: Json[]; next: string | null }> => {
    const res = await get(url, query);
    expect(res.statusCode, `${url} ${JSON.stringify(query)}: ${res.body}`).toBe(200);
    return res.json();
  };
  const all = async (url: string, query: Record<string, string | number>): Promise<Json[]> => {
    const rows: Json[] = [];
    let cursor: string | null = null;
    do {
      const page = await ok(url, { ...query, ...(cursor ? { cursor } : {}) });
      rows.push(...page.data);
      cursor = page.next;
    } while (cursor);
    return rows;
  };

  beforeAll(async () => {
    const pool = db().pool;
    await migrate(pool);
    await insertTrades(pool, trades);
    await insertTickers(pool, tickers);
    await insertCandles(pool, candles);
    await insertGaps(pool, gaps);
    await insertInstruments(pool, instruments);
    api = buildApi(parseConfig({ api: { maxRows: 1_000 } }, { env: {} }), { pool, brokers: false });
    await api.app.ready();
  });
  afterAll(async () => api?.close());

  describe('/v1/trades', () => {
    const q = { exchange: 'binance', symbol: 'BTC/USDT', from: iso(T + 60 * S), to: iso(T + 20 * MIN) };
    const expected = trades
      .filter((t) => t.exchange === 'binance' && t.symbol === 'BTC/USDT' && t.ts >= T + 60 * S && t.ts < T + 20 * MIN)
      .sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : 1))
      .map((t) => ({ ...t, ts: iso(t.ts).replace(/000Z$/, 'Z'), received_at: iso(t.received_at).replace(/000Z$/, 'Z') }));

    it('returns the range in (ts, id) order, with microsecond times, columns named like the table', async () => {
      const page = await ok('/v1/trades', q);
      expect(page.next).toBeNull();
      expect(page.data).toEqual(expected.map((t) => ({ exchange: t.exchange, symbol: t.symbol, ts: t.ts, id: t.id, side: t.side, price: t.price, amount: t.amount, received_at: t.received_at })));
      expect(page.data.some((t) => /\.\d{6}Z$/.test(t.ts as string))).toBe(true);
      expect(page.data.findIndex((t) => t.id === 'z1') + 1).toBe(page.data.findIndex((t) => t.id === 'z2'));
    });

    it('pages by cursor (ties on ts included) to the same rows', async () => {
      expect(await all('/v1/trades', { ...q, limit: 3 })).toEqual((await ok('/v1/trades', q)).data);
    });

    it('refuses a cursor from another query, and one it did not issue', async () => {
      const first = await ok('/v1/trades', { ...q, limit: 3 });
      const other = await get('/v1/trades', { ...q, symbol: 'ETH/USDT', cursor: first.next! });
      expect(other.statusCode).toBe(400);
      expect(other.json()).toMatchObject({ parameter: 'cursor' });
      const junk = await get('/v1/trades', { ...q, cursor: 'not-a-cursor' });
      expect(junk.statusCode).toBe(400);
      expect(junk.json().message).toMatch(/^cursor: /);
    });
  });

  it('/v1/tickers/latest: the newest ticker per instrument, filterable and paged', async () => {
    const page = await ok('/v1/tickers/latest');
    expect(page.data.map((t) => [t.exchange, t.symbol, t.ts])).toEqual([
      ['binance', 'BTC/USDT', iso(T + 290 * S).replace(/000Z$/, 'Z')],
      ['binance', 'ETH/USDT', iso(T + 70 * S).replace(/000Z$/, 'Z')],
      ['okx', 'BTC/USDT', iso(T + 20 * S).replace(/000Z$/, 'Z')],
    ]);
    expect(page.data[0]).toMatchObject({ bid: 60_029, ask: null, last: 60_029, open_24h: null, base_volume_24h: 100 });
    expect((await ok('/v1/tickers/latest', { exchange: 'okx' })).data).toHaveLength(1);
    expect((await ok('/v1/tickers/latest', { symbol: 'BTC/USDT' })).data.map((t) => t.exchange)).toEqual(['binance', 'okx']);
    expect(await all('/v1/tickers/latest', { limit: 1 })).toEqual(page.data);
  });

  it('/v1/instruments: every instrument, filterable, paged', async () => {
    const page = await ok('/v1/instruments');
    expect(page.data.map((i) => `${i.exchange} ${i.symbol}`)).toEqual(['binance BTC/USDT', 'binance ETH/USDT', 'okx BTC/USDT', 'okx DOGE/USDT']);
    expect(page.data[0]).toMatchObject({ base: 'BTC', quote: 'USDT', type: 'spot', active: true, exchange_symbol: 'BTCUSDT', ts: iso(T).replace(/000Z$/, 'Z') });
    expect((await ok('/v1/instruments', { active: 'false' })).data.map((i) => i.symbol)).toEqual(['DOGE/USDT']);
    expect((await ok('/v1/instruments', { exchange: 'okx', quote: 'USDT' })).data).toHaveLength(2);
    expect(await all('/v1/instruments', { limit: 3 })).toEqual(page.data);
  });

  it('/v1/coverage: what is held per instrument and channel, cut around the gaps', async () => {
    const page = await ok('/v1/coverage', { exchange: 'binance', symbol: 'BTC/USDT' });
    const t = (us: number) => iso(us).replace(/000Z$/, 'Z');
    const btcTrades = trades.filter((x) => x.exchange === 'binance' && x.symbol === 'BTC/USDT').map((x) => x.ts);
    const rows = page.data.map((r) => [r.channel, r.timeframe, r.kind, r.from_ts, r.to_ts, r.reason, r.refilled]);
    expect(rows).toEqual([
      ['trades', null, 'data', t(Math.min(...btcTrades)), t(T + 20 * MIN), null, null],
      ['trades', null, 'gap', t(T + 20 * MIN), t(T + 25 * MIN), 'connection closed (1006)', 12],
      ['trades', null, 'data', t(T + 25 * MIN), t(Math.max(...btcTrades)), null, null],
      ['tickers', null, 'data', t(T), t(T + 4 * MIN), null, null],
      ['tickers', null, 'gap', t(T + 4 * MIN), null, 'no message for 30s', 0],
      ['candles', '1h', 'data', t(T), t(T + 60 * MIN), null, null],
      ['candles', '1m', 'data', t(T), t(T + 119 * MIN), null, null],
    ]);
    expect((await ok('/v1/coverage', { channel: 'trades' })).data.filter((r) => r.kind === 'data').map((r) => `${r.exchange} ${r.symbol}`)).toEqual(['binance BTC/USDT', 'binance BTC/USDT', 'binance ETH/USDT', 'bitstamp BTC/EUR', 'okx BTC/USDT']);
  });

  it('/v1/coverage: a channel that never stored a record is listed, with its gaps', async () => {
    const t = (us: number) => iso(us).replace(/000Z$/, 'Z');
    const rows = (await ok('/v1/coverage', { exchange: 'okx' })).data.map((r) => [r.symbol, r.channel, r.timeframe, r.kind, r.from_ts, r.to_ts, r.reason]);
    expect(rows.filter((r) => r[1] === 'books')).toEqual([
      ['BTC/USDT', 'books', null, 'gap', t(T), t(T + 30 * S), 'book: gateway restarted'],
      ['BTC/USDT', 'books', null, 'gap', t(T + MIN), null, 'book: watchOrderBook(BTC/USDT): ExchangeNotAvailable'],
    ]);
    expect(rows.filter((r) => r[0] === 'DOGE/USDT')).toEqual([]);
    expect((await ok('/v1/coverage', { channel: 'books' })).data.map((r) => `${r.exchange} ${r.symbol} ${r.kind}`)).toEqual(['okx BTC/USDT gap', 'okx BTC/USDT gap']);
  });

  describe('/v1/sample', () => {
    const base = { exchange: 'binance', symbol: 'BTC/USDT', from: iso(T), to: iso(T + 60 * MIN) };
    const btc = trades.filter((x) => x.exchange === 'binance' && x.symbol === 'BTC/USDT');
    const byBucket = (width: number, pick: (t: Trade[]) => number) => {
      const m = new Map<number, Trade[]>();
      for (const t of btc) if (t.ts < T + 60 * MIN) m.set(t.ts - ((t.ts - T) % width), [...(m.get(t.ts - ((t.ts - T) % width)) ?? []), t]);
      return [...m.entries()].sort((a, b) => a[0] - b[0]).map(([b, ts]) => ({ bucket: new Date(b / 1000).toISOString(), value: pick(ts) }));
    };
    const values = (rows: Json[]) => rows.map((r) => ({ bucket: r.bucket, value: r.value }));

    it('keeps the earlier /v1/sample?channel= form working: a permanent redirect to /v1/sample/{channel}', async () => {
      const query = { ...base, field: 'price', agg: 'max', interval: '5m' };
      const res = await get('/v1/sample', { channel: 'trades', ...query });
      expect(res.statusCode).toBe(308);
      const location = String(res.headers.location);
      expect(location.startsWith('/v1/sample/trades?')).toBe(true);
      const followed = await api.app.inject({ method: 'GET', url: location });
      expect(followed.json()).toEqual(await ok('/v1/sample/trades', query));
      const bad = await get('/v1/sample', { channel: 'nope', ...query });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().message).toMatch(/channel/);
    });

    it('samples trades from the rollups where they answer exactly (max price per 5m = the candles\' high)', async () => {
      const sample = await ok('/v1/sample/trades', { ...base, field: 'price', agg: 'max', interval: '5m' });
      const candles = await ok('/v1/ohlcv', { ...base, interval: '5m' });
      expect(values(sample.data)).toEqual(candles.data.map((c) => ({ bucket: c.bucket, value: c.high })));
      const counts = await ok('/v1/sample/trades', { ...base, field: 'amount', agg: 'count', interval: '5m' });
      expect(counts.data.map((r) => r.value)).toEqual(candles.data.map((c) => c.trades));
    });

    it('samples raw trades for what the rollups lack: avg price, sum of notional, sub-minute buckets', async () => {
      const avg = await ok('/v1/sample/trades', { ...base, field: 'price', agg: 'avg', interval: '10m' });
      const want = byBucket(10 * MIN, (ts) => ts.reduce((s, t) => s + t.price, 0) / ts.length);
      expect(avg.data.map((r) => r.bucket)).toEqual(want.map((w) => w.bucket));
      avg.data.forEach((r, i) => expect(r.value as number).toBeCloseTo(want[i]!.value, 6));
      const notional = await ok('/v1/sample/trades', { ...base, field: 'notional', agg: 'sum', interval: '30s' });
      const wantN = byBucket(30 * S, (ts) => ts.reduce((s, t) => s + t.price * t.amount, 0));
      expect(notional.data.map((r) => r.bucket)).toEqual(wantN.map((w) => w.bucket));
      notional.data.forEach((r, i) => expect(r.value as number).toBeCloseTo(wantN[i]!.value, 6));
    });

    it('fills tickers\' empty buckets (prev, linear) and ignores null fields', async () => {
      const q = { ...base, to: iso(T + 5 * MIN), field: 'mid', agg: 'last', interval: '20s' };
      const prev = await ok('/v1/sample/tickers', { ...q, fill: 'prev' });
      expect(prev.data).toHaveLength(15);
      const mid = (i: number) => (60_000 + i + 60_001 + i) / 2;
      // Buckets of 20 s: tickers at 0,10 → bucket 0 last = i=1; the gap 120..170 s → buckets 120, 140, 160 empty.
      expect(prev.data.slice(5, 10).map((r) => r.value)).toEqual([mid(11), mid(11), mid(11), mid(11), mid(19)]);
      const linear = await ok('/v1/sample/tickers', { ...q, fill: 'linear' });
      expect(linear.data.slice(5, 10).map((r) => r.value)).toEqual([mid(11), mid(11) + 2, mid(11) + 4, mid(11) + 6, mid(19)]);
      // The last ticker has no ask: its bucket's last mid comes from the one before.
      expect(prev.data[14]!.value).toBe(mid(28));
      const none = await ok('/v1/sample/tickers', { ...q, fill: 'none' });
      expect(none.data).toHaveLength(12);
    });

    it('samples candles of one timeframe, and books', async () => {
      const c = await ok('/v1/sample/candles', { ...base, to: iso(T + 120 * MIN), field: 'volume', agg: 'sum', interval: '1h', timeframe: '1h' });
      expect(c.data.map((r) => r.value)).toEqual([1_000, 2_000]);
      const m = await ok('/v1/sample/candles', { ...base, to: iso(T + 120 * MIN), field: 'volume', agg: 'sum', interval: '1h' });
      expect(m.data.map((r) => r.value)).toEqual([(60 * 61) / 2, (60 * 61) / 2 + 60 * 60]);
      const b = await ok('/v1/sample/books', { ...base, field: 'mid', agg: 'avg', interval: '1m' });
      expect(b.data).toEqual([]);
    });

    it('refuses fields and options the channel does not have, naming them; each channel\'s document lists its own fields', async () => {
      const bad = await get('/v1/sample/trades', { ...base, field: 'bid', agg: 'avg', interval: '1m' });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ parameter: 'field' });
      expect(bad.json().message).toMatch(/price, amount, notional/);
      const tf = await get('/v1/sample/trades', { ...base, field: 'price', agg: 'avg', interval: '1m', timeframe: '1m' });
      expect(tf.json()).toMatchObject({ statusCode: 400, parameter: 'timeframe' });
      const proto = await get('/v1/sample/trades', { ...base, field: 'constructor', agg: 'avg', interval: '1m' });
      expect(proto.json()).toMatchObject({ statusCode: 400, parameter: 'field' });
      const doc = (await get('/docs/json')).json() as { paths: Record<string, { get: { parameters: Array<{ name: string; schema: { enum?: string[] } }> } }> };
      const params = (p: string) => doc.paths[p]!.get.parameters;
      expect(params('/v1/sample/trades').find((x) => x.name === 'field')!.schema.enum).toEqual(['price', 'amount', 'notional']);
      expect(params('/v1/sample/books').find((x) => x.name === 'field')!.schema.enum).toContain('best_bid');
      expect(params('/v1/sample/candles').map((x) => x.name)).toContain('timeframe');
      expect(params('/v1/sample/tickers').map((x) => x.name)).not.toContain('timeframe');
    });
  });

  it('/v1/ohlcv source=exchange: the exchange\'s candles as they are, or re-bucketed from a timeframe dividing the interval', async () => {
    const q = { exchange: 'binance', symbol: 'BTC/USDT', source: 'exchange', from: iso(T), to: iso(T + 10 * MIN) };
    const direct = await ok('/v1/ohlcv', { ...q, interval: '1m' });
    expect(direct.data).toHaveLength(10);
    expect(direct.data[3]).toMatchObject({ open: 60_003, high: 60_008, low: 59_998, close: 60_004, volume: 4, trades: null });
    const five = await ok('/v1/ohlcv', { ...q, interval: '5m' });
    expect(five.data.map((c) => [c.open, c.high, c.low, c.close, c.volume])).toEqual([
      [60_000, 60_009, 59_995, 60_005, 15],
      [60_005, 60_014, 60_000, 60_010, 40],
    ]);
    const hour = await ok('/v1/ohlcv', { ...q, interval: '1h', to: iso(T + 120 * MIN) });
    expect(hour.data.map((c) => c.open)).toEqual([61_000, 61_100]);
    const none = await ok('/v1/ohlcv', { ...q, symbol: 'ETH/USDT', interval: '1m' });
    expect(none.data).toEqual([]);
    const odd = await get('/v1/ohlcv', { ...q, interval: '7m', symbol: 'BTC/USDT' });
    expect(odd.statusCode).toBe(200);
  });

  describe('bad input: a 400 naming the parameter, never a 500', () => {
    const ok5m = { exchange: 'binance', symbol: 'BTC/USDT', interval: '5m', from: iso(T), to: iso(T + 60 * MIN) };
    const cases: Array<[string, Record<string, string | number>, string, RegExp?]> = [
      ['missing from', { ...ok5m, from: '' }, 'from'],
      ['no from at all', { exchange: 'binance', symbol: 'BTC/USDT', interval: '5m' }, 'from', /from: required/],
      ['a seconds interval', { ...ok5m, interval: '90s' }, 'interval', /\/v1\/sample/],
      ['an unknown interval unit', { ...ok5m, interval: '5y' }, 'interval'],
      ['a zero interval', { ...ok5m, interval: '0m' }, 'interval'],
      ['an interval over ten years', { ...ok5m, interval: '600w' }, 'interval', /ten years/],
      ['limit 0', { ...ok5m, limit: 0 }, 'limit', /at least 1/],
      ['limit over the maximum', { ...ok5m, limit: 1_001 }, 'limit', /at most 1000/],
      ['a limit that is no number', { ...ok5m, limit: 'ten' }, 'limit'],
      ['an unknown parameter', { ...ok5m, limt: 10 }, 'limt', /unknown parameter/],
      ['an unknown fill', { ...ok5m, fill: 'zero' }, 'fill', /none, null, prev, linear/],
      ['an unknown source', { ...ok5m, source: 'book' }, 'source'],
      ['a symbol without a slash', { ...ok5m, symbol: 'BTCUSDT' }, 'symbol'],
      ['an exchange in capitals', { ...ok5m, exchange: 'Binance' }, 'exchange'],
      ['a control character', { ...ok5m, symbol: 'BTC/US\u0000DT' }, 'symbol'],
      ['a time without a zone', { ...ok5m, from: '2024-05-06T00:00:00' }, 'from'],
      ['a date that does not exist', { ...ok5m, from: '2024-02-31T00:00:00Z' }, 'from'],
      ['a year out of range', { ...ok5m, to: '2300-01-01T00:00:00Z' }, 'to', /years 1970–2199/],
      ['a cursor of nothing', { ...ok5m, cursor: '!!!' }, 'cursor'],
    ];
    for (const [what, query, parameter, message] of cases) {
      it(what, async () => {
        const res = await get('/v1/ohlcv', query);
        expect(res.statusCode, res.body).toBe(400);
        const body = res.json();
        expect(body.parameter).toBe(parameter);
        expect(body.message).toContain(parameter);
        if (message) expect(body.message).toMatch(message);
      });
    }

    it('an unknown route is a JSON 404; a plain GET of the websocket is a 426', async () => {
      const res = await get('/v1/nothing');
      expect(res.statusCode).toBe(404);
      expect(res.json().message).toMatch(/no route/);
      expect((await get('/v1/stream')).statusCode).toBe(426);
    });
  });

  describe('an exchange or instrument nobody knows: a 404 naming what is known, on every route taking them', () => {
    const range = { from: iso(T), to: iso(T + 60 * MIN) };
    const routes: Array<[string, Record<string, string>]> = [
      ['/v1/ohlcv', { ...range, interval: '1m' }],
      ['/v1/ohlcv', { ...range, interval: '1m', fill: 'null' }],
      ['/v1/ohlcv', { ...range, interval: '1m', source: 'exchange' }],
      ['/v1/trades', range],
      ['/v1/sample/trades', { ...range, field: 'price', agg: 'avg', interval: '1m', fill: 'null' }],
      ['/v1/sample/candles', { ...range, field: 'close', agg: 'last', interval: '1m' }],
      ['/v1/coverage', {}],
      ['/v1/tickers/latest', {}],
    ];
    for (const [url, query] of routes) {
      it(`${url} ${JSON.stringify(query)}`, async () => {
        const sym = await get(url, { ...query, exchange: 'binance', symbol: 'btc/usdt' });
        expect(sym.statusCode, sym.body).toBe(404);
        expect(sym.json()).toMatchObject({ statusCode: 404, error: 'Not Found', parameter: 'symbol' });
        expect(sym.json().message).toBe('symbol: binance has no instrument "btc/usdt" (did you mean BTC/USDT?); known: BTC/USDT, ETH/USDT (all: /v1/instruments?exchange=binance)');
        const ex = await get(url, { ...query, exchange: 'binanse', symbol: 'BTC/USDT' });
        expect(ex.statusCode, ex.body).toBe(404);
        expect(ex.json()).toMatchObject({ parameter: 'exchange', message: 'exchange: no exchange "binanse" is known; known: binance, bitstamp, okx' });
      });
    }

    it('coverage and latest tickers: each filter given must name something known', async () => {
      for (const url of ['/v1/coverage', '/v1/tickers/latest']) {
        expect((await get(url, { exchange: 'binanse' })).json()).toMatchObject({ statusCode: 404, parameter: 'exchange' });
        const sym = (await get(url, { symbol: 'XRP/USDT' })).json();
        expect(sym).toMatchObject({ statusCode: 404, parameter: 'symbol' });
        expect(sym.message).toMatch(/no exchange has an instrument "XRP\/USDT"; known exchanges: binance, bitstamp, okx/);
        expect((await get(url, { symbol: 'DOGE/USDT' })).statusCode).toBe(200);
        expect((await get(url, { exchange: 'bitstamp' })).statusCode).toBe(200);
      }
    });

    it('known = listed in instruments or present in the data; one that appears is known at once', async () => {
      // okx DOGE/USDT: an instruments row, no records: answered, empty (fill=null: empty buckets of a real market).
      expect((await ok('/v1/ohlcv', { ...range, exchange: 'okx', symbol: 'DOGE/USDT', interval: '1m' })).data).toEqual([]);
      expect((await ok('/v1/ohlcv', { ...range, exchange: 'okx', symbol: 'DOGE/USDT', interval: '1m', fill: 'null' })).data).toHaveLength(60);
      // bitstamp BTC/EUR: records, no instruments row.
      expect((await ok('/v1/trades', { ...range, exchange: 'bitstamp', symbol: 'BTC/EUR' })).data.map((t) => t.id)).toEqual(['x1']);
      const q = { ...range, exchange: 'kraken', symbol: 'XBT/USD', interval: '1m' };
      expect((await get('/v1/ohlcv', q)).statusCode).toBe(404);
      await insertTrades(db().pool, [{ exchange: 'kraken', symbol: 'XBT/USD', ts: T + 30 * S, received_at: T + 31 * S, id: 'k1', side: 'buy', price: 50_000, amount: 0.5 }]);
      expect((await ok('/v1/ohlcv', q)).data).toMatchObject([{ bucket: iso(T).replace(/000Z$/, 'Z'), volume: 0.5, trades: 1 }]);
    });
  });

  it('an empty range (from at or after to) is an empty page, not a refusal', async () => {
    const q = { exchange: 'binance', symbol: 'BTC/USDT', from: iso(T + 61 * MIN), to: iso(T + 60 * MIN) };
    for (const [url, extra] of [
      ['/v1/ohlcv', { interval: '5m' }],
      ['/v1/ohlcv', { interval: '5m', fill: 'null' }],
      ['/v1/trades', {}],
      ['/v1/sample/tickers', { field: 'mid', agg: 'last', interval: '1m', fill: 'prev' }],
    ] as const) {
      expect(await ok(url, { ...q, ...extra })).toEqual({ data: [], next: null });
      expect(await ok(url, { ...q, ...extra, to: q.from })).toEqual({ data: [], next: null });
    }
    // to left out: now; a from after now holds nothing either.
    expect(await ok('/v1/trades', { exchange: 'binance', symbol: 'BTC/USDT', from: '2199-01-01T00:00:00Z' })).toEqual({ data: [], next: null });
  });

  it('sums come without float-sum artifacts: volumes and summed samples at 12 significant digits, JSON, filled and CSV alike', async () => {
    const q = { exchange: 'binance', symbol: 'ETH/USDT', from: iso(H3), to: iso(H3 + 5 * MIN) };
    const volumes = async (extra: Record<string, string>) => (await ok('/v1/ohlcv', { ...q, ...extra })).data.filter((c) => c.trades).map((c) => c.volume);
    expect(await volumes({ interval: '1m' })).toEqual([0.3, 0.8]);
    expect(await volumes({ interval: '1m', fill: 'null' })).toEqual([0.3, 0.8]);
    expect(await volumes({ interval: '5m' })).toEqual([1.1]);
    expect(await volumes({ interval: '5m', fill: 'prev' })).toEqual([1.1]);
    const csv = await get('/v1/ohlcv', { ...q, interval: '1m', format: 'csv' });
    expect(csv.body.split('\r\n').slice(1, 3).map((line) => line.split(',')[7])).toEqual(['0.3', '0.8']);
    const sample = async (extra: Record<string, string>) => (await ok('/v1/sample/trades', { ...q, ...extra })).data.map((r) => r.value);
    expect(await sample({ field: 'amount', agg: 'sum', interval: '1m' })).toEqual([0.3, 0.8]);
    expect(await sample({ field: 'amount', agg: 'sum', interval: '2m' })).toEqual([1.1]);
    expect(await sample({ field: 'notional', agg: 'sum', interval: '1m' })).toEqual([0.9, 2.4]);
    expect(await sample({ field: 'amount', agg: 'avg', interval: '1m' })).toEqual([0.15, 0.4]);
  });

  it('sig12 is the 12-significant-digit decimal in this database\'s float8 arithmetic, for any magnitude', async () => {
    const xs = Array.from({ length: 2_000 }, (_, i) => (Math.sin(i * 12.9898) * 43758.5453 % 1) * 10 ** ((i % 24) - 10) * (1 + 1e-15 * (i % 7)));
    xs.push(0, 0.1 + 0.2, 0.7 + 0.1, 3.045359999999999, -0.30000000000000004, 1e-12, 1e300, 123456789012345680);
    const { rows } = await db().pool.query<{ x: number; y: number }>(`select x, ${sig12('x')} as y from unnest($1::float8[]) x`, [xs]);
    for (const { x, y } of rows) {
      const want = Math.abs(x) < 1e-11 ? x : Number(x.toPrecision(12));
      // Equal, or (a tie seen through x's scaled value) one unit of the twelfth digit apart.
      if (y !== want) expect(Math.abs(y - want), `${x}: ${y} vs ${want}`).toBeLessThanOrEqual(Math.abs(want) * 1.000001e-11);
      if (Math.abs(x) >= 1e-11) expect(String(y).replace(/e.*$/, '').replace(/[-.]/g, '').replace(/^0+|0+$/g, '').length, `${x} → ${y}`).toBeLessThanOrEqual(12);
    }
    expect(rows.slice(-8).map((r) => r.y)).toEqual([0, 0.3, 0.8, 3.04536, -0.3, 1e-12, 1e300, 123456789012000000]);
  });

  describe('the parameters are what the OpenAPI document says', () => {
    const q = { exchange: 'binance', symbol: 'BTC/USDT', from: iso(T), to: iso(T + 60 * MIN) };

    it('integers in plain decimal digits only, on every route (0x10, 1e3, +5, 5.0 are refused naming the parameter)', async () => {
      for (const [url, extra] of [
        ['/v1/ohlcv', { interval: '1m' }],
        ['/v1/trades', {}],
        ['/v1/sample/trades', { field: 'price', agg: 'max', interval: '1m' }],
        ['/v1/instruments', {}],
      ] as const) {
        const query = url === '/v1/instruments' ? {} : { ...q, ...extra };
        for (const limit of ['0x10', '1e3', '+5', ' 5', '5.0', '0b1', 'Infinity']) {
          const res = await get(url, { ...query, limit });
          expect(res.statusCode, `${url} limit=${limit}: ${res.body}`).toBe(400);
          expect(res.json()).toMatchObject({ parameter: 'limit' });
          expect(res.json().message).toMatch(/^limit: /);
        }
        expect((await ok(url, { ...query, limit: '2' })).data.length).toBeLessThanOrEqual(2);
        expect((await ok(url, { ...query, limit: '0002' })).data.length).toBeLessThanOrEqual(2);
      }
    });

    it('declares the accepted form of every interval-like and time parameter, as a pattern', async () => {
      const doc = (await get('/docs/json')).json() as { paths: Record<string, { get?: { parameters?: Array<{ name: string; schema: { pattern?: string; format?: string } }> } }> };
      let checked = 0;
      for (const [path, ops] of Object.entries(doc.paths)) {
        for (const p of ops.get?.parameters ?? []) {
          if (['interval', 'timeframe'].includes(p.name) || p.schema.format === 'date-time') {
            expect(p.schema.pattern, `${path} ${p.name}`).toBeTypeOf('string');
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThanOrEqual(18);
      const interval = doc.paths['/v1/ohlcv']!.get!.parameters!.find((p) => p.name === 'interval')!.schema.pattern!;
      const re = new RegExp(interval, 'u');
      for (const v of ['1m', '90m', '4h', '1d', '1w', '3650d', '521w']) expect(re.test(v), v).toBe(true);
      for (const v of ['30s', '0m', '01m', '5y', '600w', '3651d', '1M']) expect(re.test(v), v).toBe(false);
    });

    it('an undeclared method on a path served is a 405 naming the allowed ones in Allow (OPTIONS: 204); an unknown path a 404', async () => {
      const doc = (await get('/docs/json')).json() as { paths: Record<string, Record<string, unknown>> };
      for (const url of Object.keys(doc.paths)) {
        // What the document declares for the path, HEAD with GET, and OPTIONS, sorted.
        const declared = Object.keys(doc.paths[url]!).map((m) => m.toUpperCase());
        const allowed = [...new Set([...declared, ...(declared.includes('GET') ? ['HEAD'] : []), 'OPTIONS'])].sort().join(', ');
        // A templated path (/v1/broadcasters/{name}) is asked about under a concrete name.
        const path = url.replace(/\{[^}]+\}/g, 'x');
        for (const method of (['POST', 'PUT', 'DELETE', 'PATCH', 'TRACE'] as const).filter((m) => !declared.includes(m))) {
          const res = await api.app.inject({ method, url: path, headers: { 'content-type': 'application/xml' }, payload: '<x/>' });
          expect(res.statusCode, `${method} ${path}: ${res.body}`).toBe(405);
          expect(res.headers.allow).toBe(allowed);
          expect(res.json()).toMatchObject({ statusCode: 405, error: 'Method Not Allowed', message: `method ${method} not allowed on ${path} (allowed: ${allowed})` });
        }
        const options = await api.app.inject({ method: 'OPTIONS', url: path });
        expect(options.statusCode).toBe(204);
        expect(options.headers.allow).toBe(allowed);
      }
      expect((await api.app.inject({ method: 'POST', url: '/v1/nothing' })).statusCode).toBe(404);
    });
  });

  it('serves its OpenAPI document and UI, /healthz, /readyz and /metrics', async () => {
    const doc = (await get('/docs/json')).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/ohlcv', '/v1/trades', '/v1/tickers/latest', '/v1/instruments', '/v1/coverage', '/v1/sample/trades', '/v1/sample/tickers', '/v1/sample/candles', '/v1/sample/books', '/v1/stream', '/healthz', '/readyz', '/metrics']));
    expect(doc.components.schemas).toHaveProperty('Candle');
    expect(doc.paths['/v1/ohlcv'].get.responses['200'].content).toHaveProperty('text/csv');
    expect((await get('/docs')).statusCode).toBeLessThan(400);
    expect((await get('/healthz')).json()).toEqual({ status: 'ok', checks: {} });
    expect((await get('/readyz')).json()).toEqual({ status: 'ok', checks: { database: { ok: true }, stream: { ok: true, state: 'disabled' } } });
    const metrics = await get('/metrics');
    expect(metrics.body).toContain('tickflow_api_request_duration_seconds_bucket');
    expect(metrics.body).toMatch(/tickflow_api_db_query_duration_seconds_count\{[^}]*query="ohlcv_ohlcv_1m(_json)?"/);
  });
});

describe('a database that does not answer', () => {
  let api: Api;
  beforeAll(async () => {
    const pool = createPool('postgres://tickflow@127.0.0.1:1/none', { max: 1, connectTimeoutMs: 500 });
    api = buildApi(parseConfig({}, { env: {} }), { pool, brokers: false });
    await api.app.ready();
  });
  afterAll(async () => {
    await api.close();
  });

  it('is a 503 on the data routes and on /readyz, while /healthz answers', async () => {
    const unavailable: string[] = [];
    api.events.on('request.unavailable', (e) => unavailable.push(e.url));
    const res = await api.app.inject({ method: 'GET', url: '/v1/trades', query: { exchange: 'binance', symbol: 'BTC/USDT', from: '2024-01-01T00:00:00Z' } });
    expect(res.statusCode).toBe(503);
    expect(res.json().message).toMatch(/database is unavailable/);
    expect(unavailable).toEqual([expect.stringMatching(/^\/v1\/trades\?/)]);
    const ready = await api.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ status: 'degraded', checks: { database: { ok: false } } });
    expect((await api.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});
