/**
 * Plain PostgreSQL's OHLCV rollups (ohlcv_1m → 1h → 1d, tables refreshed by the sink's
 * refresher) under concurrent writers: trades committed while a refresh runs, across minute,
 * hour and day boundaries, late trades into buckets already materialized, several connections
 * at once. Afterwards every level equals an independent computation from the trades that were
 * committed. The refresh is the sink's (`Aggregates.refresh(now)`), driven by a simulated clock
 * so that minutes pass in milliseconds. Amounts are multiples of 1/1024 (exact sums in any
 * order) and no two trades of an instrument share a time (open/close are unambiguous).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.ts';
import { createPool, type Pool, type PoolClient } from '../core/db.ts';
import { sleep } from '../core/retry.ts';
import { migrate } from '../migrations/runner.ts';
import { Aggregates } from '../sink/aggregates.ts';
import { SinkEmitter } from '../sink/events.ts';
import { Rng } from '../sim/rng.ts';
import { createServerDatabase } from './harness/db.ts';
import { MIN_US, ROLLUP_LEVELS, ohlcv, readBars, type Bar } from './harness/ohlcv.ts';

interface T {
  exchange: string;
  symbol: string;
  /** µs since the epoch */
  ts: number;
  id: string;
  price: number;
  amount: number;
}

/** Bars of `want` that the view has wrong or lacks: what a reader of /v1/ohlcv would see differ. */
function diff(have: readonly Bar[], want: readonly Bar[]): { bucket: string; instrument: string; have: number | null; want: number }[] {
  const got = new Map(have.map((b) => [`${b.exchange}|${b.symbol}|${b.bucket}`, b]));
  return want
    .filter((w) => JSON.stringify(got.get(`${w.exchange}|${w.symbol}|${w.bucket}`)) !== JSON.stringify(w))
    .map((w) => ({ bucket: new Date(w.bucket / 1000).toISOString(), instrument: `${w.exchange} ${w.symbol}`, have: got.get(`${w.exchange}|${w.symbol}|${w.bucket}`)?.trades ?? null, want: w.trades }));
}

const INSERT = `insert into trades (exchange, symbol, ts, id, side, price, amount, received_at)
  select e, s, to_timestamp(t / 1000000.0), i, 'buy', p, a, now()
  from unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::float8[], $6::float8[]) as u(e, s, t, i, p, a)
  on conflict do nothing`;

async function insert(c: Pool | PoolClient, trades: readonly T[]): Promise<void> {
  await c.query(INSERT, [trades.map((t) => t.exchange), trades.map((t) => t.symbol), trades.map((t) => t.ts), trades.map((t) => t.id), trades.map((t) => t.price), trades.map((t) => t.amount)]);
}

describe('plain PostgreSQL OHLCV rollups under concurrent writers', () => {
  let pool: Pool;
  let aggregates: Aggregates;
  const refresh = (nowUs: number) => aggregates.refresh(new Date(nowUs / 1000));

  beforeAll(async () => {
    pool = createPool(await createServerDatabase('ohlcvc'), { max: 12 });
    expect((await migrate(pool)).flavour).toBe('plain');
    aggregates = new Aggregates(pool, { flavour: 'plain', backgroundWorkers: false }, parseConfig({}, { env: {} }).sink.policies, new SinkEmitter());
  });
  afterAll(async () => {
    await pool?.end();
  });

  const clean = () => pool.query("truncate trades, ohlcv_1m_mat, ohlcv_1h_mat, ohlcv_1d_mat, ohlcv_dirty; update ohlcv_watermark set upto = '-infinity'");
  const trade = (exchange: string, ts: number, n: number): T => ({ exchange, symbol: 'BTC/USDT', ts, id: `${exchange}${ts}`, price: 100 + n, amount: n / 1024 });

  it('keeps a minute-end trade whose transaction commits after a refresh closed that minute', async () => {
    await clean();
    const t0 = Date.UTC(2026, 0, 5, 12, 0) * 1000;
    const early = [trade('binance', t0 + 10_000_000, 1), trade('binance', t0 + 30_000_000, 2)];
    await insert(pool, early);
    await refresh(t0 + 40_000_000);
    // A sink transaction writes the minute's last trades...
    const c = await pool.connect();
    const pending = [trade('binance', t0 + 59_500_000, 3), trade('binance', t0 + 59_900_000, 4)];
    try {
      await c.query('begin');
      await insert(c, pending);
      // ...the refresh at the minute's end runs before it commits...
      await refresh(t0 + MIN_US + 100_000);
      await c.query('commit');
    } finally {
      c.release();
    }
    // ...and every later refresh must still count them.
    await refresh(t0 + 2 * MIN_US);
    await refresh(t0 + 3 * MIN_US);
    const all = [...early, ...pending];
    for (const [view, width] of ROLLUP_LEVELS) expect(await readBars(pool, view), view).toEqual(ohlcv(all, width));
  });

  it('keeps a late trade into a bucket that another transaction already marked for recomputation', async () => {
    await clean();
    const t0 = Date.UTC(2026, 0, 5, 12, 0) * 1000;
    const first = [trade('okx', t0 + 5_000_000, 1)];
    await insert(pool, first);
    await refresh(t0 + 5 * MIN_US); // minute 12:00 materialized
    const lateA = [trade('okx', t0 + 20_000_000, 2)];
    await insert(pool, lateA); // committed: 12:00 is marked
    const c = await pool.connect();
    const lateB = [trade('okx', t0 + 40_000_000, 3)];
    try {
      await c.query('begin');
      await insert(c, lateB); // the same bucket, not committed yet
      await refresh(t0 + 6 * MIN_US);
      await c.query('commit');
    } finally {
      c.release();
    }
    await refresh(t0 + 7 * MIN_US);
    const all = [...first, ...lateA, ...lateB];
    for (const [view, width] of ROLLUP_LEVELS) expect(await readBars(pool, view), view).toEqual(ohlcv(all, width));
  });

  it('equal an independent computation after concurrent inserters and repeated refreshes across minute, hour and day ends', async () => {
    await clean();
    // Simulated time: 23:45 to 00:15, one simulated second per 2 ms of real time.
    const startUs = Date.UTC(2026, 0, 5, 23, 45) * 1000;
    const endUs = startUs + 30 * MIN_US;
    const t0 = performance.now();
    const clock = () => Math.min(endUs, startUs + Math.floor((performance.now() - t0) * 500_000));
    const instruments = [
      ['binance', 'BTC/USDT'],
      ['binance', 'ETH/USDT'],
      ['okx', 'BTC/USDT'],
    ] as const;
    const taken = new Set<string>();
    const committed: T[] = [];
    let seq = 0;

    const inserter = async (seed: number): Promise<void> => {
      const rng = new Rng(seed);
      const c = await pool.connect();
      try {
        while (clock() < endUs) {
          const now = clock();
          const batch: T[] = [];
          for (let k = 1 + Math.floor(rng.next() * 6); k > 0; k--) {
            const [exchange, symbol] = instruments[Math.floor(rng.next() * instruments.length)]!;
            // Mostly fresh (up to 2 s behind the clock: the pipeline's delay), some late by minutes.
            const lagUs = rng.next() < 0.1 ? Math.floor(rng.next() * 4 * MIN_US) : Math.floor(rng.next() * 2_000_000);
            const ts = Math.max(startUs, now - lagUs);
            if (taken.has(`${exchange}${symbol}${ts}`)) continue;
            taken.add(`${exchange}${symbol}${ts}`);
            batch.push({ exchange, symbol, ts, id: `i${seed}-${seq++}`, price: Math.round((100 + rng.next() * 50) * 100) / 100, amount: (1 + Math.floor(rng.next() * 4096)) / 1024 });
          }
          if (batch.length === 0) continue;
          await c.query('begin');
          await insert(c, batch);
          // The sink's transaction also writes its offsets before it commits.
          await sleep(Math.floor(rng.next() * 12));
          await c.query('commit');
          committed.push(...batch);
        }
      } finally {
        c.release();
      }
    };
    // Two refreshers, as two sink instances would run them.
    const second = new Aggregates(pool, { flavour: 'plain', backgroundWorkers: false }, parseConfig({}, { env: {} }).sink.policies, new SinkEmitter());
    let refreshes = 0;
    const refresher = async (a: Aggregates): Promise<void> => {
      while (clock() < endUs) {
        await a.refresh(new Date(clock() / 1000));
        refreshes++;
        await sleep(3);
      }
    };
    await Promise.all([inserter(1), inserter(2), inserter(3), inserter(4), inserter(5), inserter(6), refresher(aggregates), refresher(second)]);

    const n = (await pool.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;
    expect(n).toBe(committed.length);
    expect(refreshes).toBeGreaterThan(50);
    const check = async () => {
      for (const [view, width] of ROLLUP_LEVELS) {
        const want = ohlcv(committed, width);
        const have = await readBars(pool, view);
        expect(diff(have, want), `${view}: buckets that differ from the trades`).toEqual([]);
        expect(have, view).toEqual(want);
      }
    };
    await refresh(endUs);
    await check(); // the views: materialized below the watermark, computed above it
    await refresh(endUs + 2 * 1440 * MIN_US);
    await check(); // everything materialized

  }, 60_000);
});
