/**
 * /v1/ohlcv against an independent computation from the raw trades, on the embedded TimescaleDB
 * and on plain PostgreSQL: intervals the rollups have (1m, 1h, 1d) and ones they don't (5m, 90m,
 * 4h, 2d, 1w), every fill mode, over data with empty minutes, hours and a whole empty day —
 * before any refresh (real-time rollups), after a refresh up to the middle of the data, and after
 * a full refresh. Then: paging gives the rows of one big page, and CSV carries what JSON does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { migrate } from '../migrations/runner.ts';
import type { Trade } from '../schemas/index.ts';
import { describeEachDb } from './harness/db.ts';
import { insertTrades, isoUs as iso, refreshRollups } from './harness/market-data.ts';
import { Rng } from '../sim/rng.ts';

const EX = 'testex';
const SYM = 'BTC/USDT';
const MIN = 60_000_000; // µs
const DAY = 1_440 * MIN;
const T0 = Date.UTC(2024, 1, 26) * 1000; // Monday 2024-02-26
const DAYS = 15;
const ORIGIN = Date.UTC(2000, 0, 3) * 1000;

/** Trades with deliberate holes: quiet minutes, 8 empty hours on 2024-03-05, all of 2024-03-06. */
function makeTrades(): Trade[] {
  const gen = new Rng(7);
  const rng = () => gen.next();
  const out: Trade[] = [];
  let price = 60_000;
  let id = 1;
  for (let m = 0; m < DAYS * 1_440; m++) {
    const day = Math.floor(m / 1_440);
    const hour = Math.floor((m % 1_440) / 60);
    if (day === 9) continue;
    if (day === 8 && hour >= 3 && hour < 11) continue;
    const quiet = rng() < 0.55;
    const n = 1 + Math.floor(rng() * 3);
    if (quiet) continue;
    const offsets = new Set<number>();
    while (offsets.size < n) offsets.add(Math.floor(rng() * MIN));
    for (const off of [...offsets].sort((a, b) => a - b)) {
      price = Math.round(price * Math.exp(0.002 * (rng() - 0.5)) * 100) / 100;
      const ts = T0 + m * MIN + off;
      out.push({ exchange: EX, symbol: SYM, ts, received_at: ts + 1_000, id: String(id++), side: rng() < 0.5 ? 'buy' : 'sell', price, amount: (1 + Math.floor(rng() * 4096)) / 1024 });
    }
    // Another instrument in the same minutes: must never leak into BTC/USDT's candles.
    if (m % 7 === 0) out.push({ exchange: EX, symbol: 'ETH/USDT', ts: T0 + m * MIN + 5, received_at: T0 + m * MIN + 6, id: String(id++), side: 'buy', price: 1 + rng(), amount: 1_000 });
  }
  return out;
}

interface Candle {
  bucket: string;
  open: number | null;
  high: number | null;
  low: number | null;
  close: number | null;
  volume: number;
  trades: number | null;
}

const floorTo = (us: number, w: number) => us - ((((us - ORIGIN) % w) + w) % w);

/** The independent computation: bucket the raw trades, then fill per the documented rules. */
function reference(trades: readonly Trade[], widthUs: number, fromUs: number, toUs: number, fill: string): Candle[] {
  const buckets = new Map<number, { open: number; high: number; low: number; close: number; volume: number; trades: number; first: number; last: number }>();
  for (const t of trades) {
    if (t.exchange !== EX || t.symbol !== SYM) continue;
    const b = floorTo(t.ts, widthUs);
    const c = buckets.get(b);
    if (!c) buckets.set(b, { open: t.price, high: t.price, low: t.price, close: t.price, volume: t.amount, trades: 1, first: t.ts, last: t.ts });
    else {
      if (t.ts < c.first) Object.assign(c, { open: t.price, first: t.ts });
      if (t.ts > c.last) Object.assign(c, { close: t.price, last: t.ts });
      c.high = Math.max(c.high, t.price);
      c.low = Math.min(c.low, t.price);
      c.volume += t.amount;
      c.trades++;
    }
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const out: Candle[] = [];
  const iso = (us: number) => new Date(us / 1000).toISOString();
  const flat = (b: number, v: number | null): Candle => ({ bucket: iso(b), open: v, high: v, low: v, close: v, volume: 0, trades: 0 });
  for (let b = floorTo(fromUs, widthUs); b < toUs; b += widthUs) {
    const c = buckets.get(b);
    if (c) {
      out.push({ bucket: iso(b), open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, trades: c.trades });
      continue;
    }
    if (fill === 'none') continue;
    if (fill === 'null') {
      out.push(flat(b, null));
      continue;
    }
    const before = keys.filter((k) => k < b).pop();
    const after = keys.find((k) => k > b);
    if (fill === 'prev') out.push(flat(b, before === undefined ? null : buckets.get(before)!.close));
    else if (before === undefined || after === undefined) out.push(flat(b, null));
    else {
      const p0 = buckets.get(before)!.close;
      const p1 = buckets.get(after)!.close;
      out.push(flat(b, p0 + ((p1 - p0) * (b - before)) / (after - before)));
    }
  }
  return out;
}

function expectCandles(got: Candle[], want: Candle[], what: string): void {
  expect(got.map((c) => c.bucket), what).toEqual(want.map((c) => c.bucket));
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    for (const k of ['open', 'high', 'low', 'close', 'volume', 'trades'] as const) {
      const a = g[k];
      const b = w[k];
      if (a === null || b === null) expect(a, `${what} ${w.bucket} ${k}`).toBe(b);
      else expect(Math.abs(a - b), `${what} ${w.bucket} ${k}: ${a} vs ${b}`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(b)));
    }
  }
}

const CASES: ReadonlyArray<{ interval: string; widthUs: number; from: number; to: number }> = [
  { interval: '1m', widthUs: MIN, from: T0 + 8 * DAY + 90 * MIN, to: T0 + 8 * DAY + 13 * 60 * MIN },
  { interval: '5m', widthUs: 5 * MIN, from: T0 + 8 * DAY + 7 * MIN + 123, to: T0 + 8 * DAY + 20 * 60 * MIN },
  { interval: '90m', widthUs: 90 * MIN, from: T0 + 7 * DAY, to: T0 + 10 * DAY + 17 },
  { interval: '1h', widthUs: 60 * MIN, from: T0 + 7 * DAY, to: T0 + 11 * DAY },
  { interval: '4h', widthUs: 240 * MIN, from: T0 + 6 * DAY - 2 * 60 * MIN, to: T0 + 11 * DAY + 60 * MIN },
  { interval: '1d', widthUs: DAY, from: T0 - DAY, to: T0 + (DAYS + 2) * DAY },
  { interval: '2d', widthUs: 2 * DAY, from: T0, to: T0 + DAYS * DAY },
  { interval: '1w', widthUs: 7 * DAY, from: T0 - 10 * DAY, to: T0 + 30 * DAY },
];
const FILLS = ['none', 'null', 'prev', 'linear'] as const;

describeEachDb(['embedded', 'postgres'], (db) => {
  const trades = makeTrades();
  let api: Api;
  let tight: Api;

  beforeAll(async () => {
    await migrate(db().pool);
    await insertTrades(db().pool, trades);
    api = buildApi(parseConfig({ api: { maxRows: 5_000 } }, { env: {} }), { pool: db().pool, brokers: false });
    // Pages cut by the scan bound: 1,000 rollup rows per page at most.
    tight = buildApi(parseConfig({ api: { maxRows: 5_000, maxScanRows: 1_000 } }, { env: {} }), { pool: db().pool, brokers: false });
    await api.app.ready();
    await tight.app.ready();
  });
  afterAll(async () => {
    await api?.close();
    await tight?.close();
  });

  async function ohlcv(app: Api, q: Record<string, string | number>): Promise<{ data: Candle[]; next: string | null }> {
    const res = await app.app.inject({ method: 'GET', url: '/v1/ohlcv', query: Object.fromEntries(Object.entries(q).map(([k, v]) => [k, String(v)])) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  }

  async function checkAll(stage: string): Promise<void> {
    for (const c of CASES) {
      for (const fill of FILLS) {
        const got = await ohlcv(api, { exchange: EX, symbol: SYM, interval: c.interval, from: iso(c.from), to: iso(c.to), fill });
        expect(got.next).toBeNull();
        expectCandles(got.data, reference(trades, c.widthUs, c.from, c.to, fill), `${stage} ${c.interval} fill=${fill}`);
      }
    }
  }

  it('matches the raw trades at every interval and fill, served by the real-time rollups (no refresh yet)', async () => {
    await checkAll('real-time');
  });

  it('matches them with the rollups materialized up to the middle of the data', async () => {
    await refreshRollups(db().pool, T0 + 8 * DAY + 12 * 60 * MIN + 30 * MIN);
    await checkAll('half-refreshed');
  });

  it('matches them with the rollups fully materialized', async () => {
    await refreshRollups(db().pool);
    await checkAll('refreshed');
  });

  it('pages by cursor to exactly the rows of one big page, for every fill mode, also when pages are cut by maxScanRows', async () => {
    for (const [app, interval, limit] of [[api, '5m', 97], [api, '1m', 250], [tight, '90m', 5_000], [tight, '5m', 5_000], [api, '1w', 1]] as const) {
      for (const fill of FILLS) {
        const q = { exchange: EX, symbol: SYM, interval, from: iso(T0 + 6 * DAY), to: iso(T0 + 9 * DAY), fill };
        const whole = await ohlcv(api, q);
        expect(whole.next).toBeNull();
        const pages: Candle[] = [];
        let cursor: string | null = null;
        let n = 0;
        do {
          const page = await ohlcv(app, { ...q, limit, ...(cursor ? { cursor } : {}) });
          expect(page.data.length).toBeLessThanOrEqual(limit);
          pages.push(...page.data);
          cursor = page.next;
          n++;
        } while (cursor && n < 1_000);
        expect(n, `${interval} ${fill}: pages`).toBeGreaterThan(1);
        expect(pages, `${interval} fill=${fill} limit=${limit}`).toEqual(whole.data);
      }
    }
  });

  it('answers CSV with the same columns and values as JSON (JSON written by the database or by the API)', async () => {
    for (const [interval, fill] of [['5m', 'linear'], ['5m', 'none'], ['1m', 'none'], ['4h', 'prev']] as const) {
      const query = { exchange: EX, symbol: SYM, interval, from: iso(T0 + 8 * DAY), to: iso(T0 + 9 * DAY + 14 * 60 * MIN), fill };
      const json = (await ohlcv(api, query)).data as unknown as Record<string, unknown>[];
      const res = await api.app.inject({ method: 'GET', url: '/v1/ohlcv', query, headers: { accept: 'text/csv' } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      const [header, ...lines] = res.body.trimEnd().split('\r\n');
      const columns = ['exchange', 'symbol', 'bucket', 'open', 'high', 'low', 'close', 'volume', 'trades'];
      expect(header).toBe(columns.join(','));
      expect(lines).toHaveLength(json.length);
      lines.forEach((line, i) => expect(line, `${interval} ${fill} row ${i}`).toBe(columns.map((c) => (json[i]![c] === null ? '' : String(json[i]![c]))).join(',')));
      // format=csv says the same for tools that cannot set Accept.
      const viaParam = await api.app.inject({ method: 'GET', url: '/v1/ohlcv', query: { ...query, format: 'csv' } });
      expect(viaParam.body).toBe(res.body);
    }
  });
});

describe('the bucket grid', () => {
  it('starts weeks on Monday (time_bucket origin 2000-01-03)', () => {
    expect(new Date(ORIGIN / 1000).getUTCDay()).toBe(1);
    expect(new Date(floorTo(Date.UTC(2024, 2, 7, 15) * 1000, 7 * DAY) / 1000).toISOString()).toBe('2024-03-04T00:00:00.000Z');
  });
});
