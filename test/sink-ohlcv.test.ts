/**
 * The OHLCV rollups (ohlcv_1m, hierarchical ohlcv_1h and ohlcv_1d) equal an independent
 * computation in JS on the same raw trades, written through the sink and refreshed by the
 * sink's refresher, on the embedded TimescaleDB (continuous aggregates) and on plain
 * PostgreSQL (rollup tables): including trades that arrive late into buckets that were already
 * materialized. Amounts are multiples of 1/1024, so volume sums are exact in any order.
 */
import { expect, it } from 'vitest';
import { topicFor, type Trade } from '../schemas/index.ts';
import { buildSink } from '../sink/index.ts';
import { describeEachDb } from './harness/db.ts';
import { ROLLUP_LEVELS, ohlcv, readBars } from './harness/ohlcv.ts';
import { codecFor, produce, sinkTestConfig, testKafka, uniquePrefix, waitFor } from './harness/sink.ts';
import { Rng } from '../sim/rng.ts';

const kafka = testKafka();

const START_US = Date.UTC(2024, 2, 1, 0, 0, 0) * 1000;
const SPAN_US = 3 * 86_400_000_000;
const RANGE = { fromUs: START_US, toUs: START_US + SPAN_US };

function makeTrades(n: number, seed: number, idPrefix: string, taken: Set<string>): Trade[] {
  const gen = new Rng(seed);
  const r = () => gen.next();
  const out: Trade[] = [];
  while (out.length < n) {
    const exchange = r() < 0.5 ? 'binance' : 'okx';
    const symbol = r() < 0.5 ? 'BTC/USDT' : 'ETH/USDT';
    // Clustered in a few hours per day so that buckets hold several trades.
    const day = Math.floor(r() * 3);
    const hour = [1, 2, 13][Math.floor(r() * 3)]!;
    const ts = START_US + day * 86_400_000_000 + hour * 3_600_000_000 + Math.floor(r() * 3_600_000_000);
    const key = `${exchange}${symbol}${ts}`;
    if (taken.has(key)) continue; // distinct times per instrument: open/close are unambiguous
    taken.add(key);
    out.push({ exchange, symbol, ts, received_at: ts + 1000, id: `${idPrefix}${out.length}`, side: r() < 0.5 ? 'buy' : 'sell', price: Math.round((100 + r() * 50) * 100) / 100, amount: (1 + Math.floor(r() * 4096)) / 1024 });
  }
  return out;
}

describeEachDb(['embedded', 'postgres'], (db) => {
  it('1m/1h/1d OHLCV equal an independent computation, late trades included', async () => {
    const prefix = uniquePrefix('ohlcv');
    const name = `${prefix}-trades`;
    const config = sinkTestConfig(prefix, { sink: { connectors: [{ name, table: 'trades', batchMaxRows: 1000 }] } });
    const sink = buildSink(config, { pool: db().pool, listen: false, schedule: false });
    await sink.start();
    try {
      const codec = codecFor(prefix);
      const topic = topicFor(prefix, 'trade');
      const taken = new Set<string>();
      const onTime = makeTrades(3000, 1, 'a', taken);
      const late = makeTrades(600, 2, 'b', taken);
      const rowCount = async () => (await db().pool.query<{ n: number }>('select count(*)::int as n from trades')).rows[0]!.n;

      await produce(kafka, codec, topic, 'trade', onTime);
      await waitFor('the on-time trades', async () => (await rowCount()) === onTime.length);
      await sink.refreshAggregates();
      for (const [view, width] of ROLLUP_LEVELS) expect(await readBars(db().pool, view, RANGE), view).toEqual(ohlcv(onTime, width));

      // Late trades into buckets materialized above: not in the rollups until the refresh...
      await produce(kafka, codec, topic, 'trade', late);
      await waitFor('the late trades', async () => (await rowCount()) === onTime.length + late.length);
      const all = [...onTime, ...late];
      expect(await readBars(db().pool, 'ohlcv_1m', RANGE)).not.toEqual(ohlcv(all, 60_000_000));
      // ...and exactly right after it, at every level.
      const windows: { what: string; from: string | null }[] = [];
      const off = sink.events.on('refresh', (e) => windows.push(e));
      await sink.refreshAggregates();
      off();
      if (db().kind === 'embedded') {
        // TimescaleDB: refreshed from the oldest bucket the late trades touched, not from scratch.
        const oldest = Math.min(...late.map((t) => t.ts));
        expect(windows.find((w) => w.what === 'ohlcv_1m')?.from).toBe(new Date(Math.floor(oldest / 60_000_000) * 60_000).toISOString());
      }
      for (const [view, width] of ROLLUP_LEVELS) expect(await readBars(db().pool, view, RANGE), view).toEqual(ohlcv(all, width));
    } finally {
      await sink.close();
    }
  });
});
