/**
 * Every SQL query of every provisioned dashboard (panels and template variables), with Grafana's
 * macros and variables expanded, runs against a migrated database holding sim/ data and returns
 * rows. Prometheus panels are checked against the metrics the code registers (test/compose.test.ts
 * checks the provisioning files themselves).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../migrations/runner.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { describeEachDb, type TestDb } from './harness/db.ts';
import { expandGrafanaSql } from './harness/grafana.ts';

const DASHBOARDS = path.resolve(import.meta.dirname, '..', 'grafana', 'dashboards');

interface Target { refId: string; rawSql?: string; expr?: string; datasource?: { type?: string } }
interface Panel { title: string; type: string; targets?: Target[]; panels?: Panel[]; datasource?: { type?: string } }
interface Dashboard {
  title: string;
  panels: Panel[];
  templating?: { list: { name: string; query: unknown; datasource?: { type?: string } }[] };
  annotations?: { list: { name: string; datasource?: { type?: string }; target?: { rawSql?: string } }[] };
}

const dashboards: { file: string; dash: Dashboard }[] = readdirSync(DASHBOARDS)
  .filter((f) => f.endsWith('.json'))
  .map((file) => ({ file, dash: JSON.parse(readFileSync(path.join(DASHBOARDS, file), 'utf8')) as Dashboard }));

const isSql = (ds?: { type?: string }) => ds?.type === 'grafana-postgresql-datasource';
const sqlPanels = dashboards.flatMap(({ file, dash }) =>
  dash.panels
    .flatMap((p) => [p, ...(p.panels ?? [])])
    .flatMap((p) => (p.targets ?? []).filter((t) => t.rawSql && (isSql(t.datasource) || isSql(p.datasource))).map((t) => ({ file, title: p.title, sql: t.rawSql! }))),
);
const sqlVariables = dashboards.flatMap(({ file, dash }) =>
  (dash.templating?.list ?? []).filter((v) => isSql(v.datasource)).map((v) => ({ file, name: v.name, sql: typeof v.query === 'string' ? v.query : (v.query as { rawSql: string }).rawSql })),
);

const sqlAnnotations = dashboards.flatMap(({ file, dash }) =>
  (dash.annotations?.list ?? []).filter((a) => isSql(a.datasource) && a.target?.rawSql).map((a) => ({ file, name: a.name, sql: a.target!.rawSql! })),
);

let sim: Sim;
let windowFrom: Date;
let windowTo: Date;

beforeAll(async () => {
  // 40 trades/s at 60x speed: a few virtual hours of market in a few seconds.
  sim = buildSim({ seed: 7, symbols: ['BTC/USDT', 'ETH/USDT'], tradesPerSecond: 40, speed: 60, tickerPushIntervalMs: 200 });
  await sim.start();
  windowFrom = new Date(sim.now());
  await new Promise((r) => setTimeout(r, 4000));
  windowTo = new Date(sim.now());
  await sim.close();
});

async function load(db: TestDb): Promise<void> {
  await migrate(db.pool);
  const trades = sim.emitted.trades();
  const iso = (ms: number) => new Date(ms).toISOString();
  await db.pool.query(
    `insert into trades (exchange, symbol, ts, id, side, price, amount, received_at)
     select 'sim', * from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::float8[], $6::float8[], $2::timestamptz[])`,
    [trades.map((t) => t.symbol), trades.map((t) => iso(t.timestamp)), trades.map((t) => String(t.id)), trades.map((t) => t.side), trades.map((t) => t.price), trades.map((t) => t.amount)],
  );
  const tickers = sim.emitted.tickers(undefined, 'ws');
  await db.pool.query(
    `insert into tickers (exchange, symbol, ts, received_at, bid, bid_size, ask, ask_size, last)
     select 'sim', s, t, t, b, bs, a, az, l from unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[]) as u(s, t, b, bs, a, az, l)
     on conflict do nothing`,
    [tickers.map((t) => t.symbol), tickers.map((t) => iso(t.timestamp)), tickers.map((t) => t.bid), tickers.map((t) => t.bidVolume), tickers.map((t) => t.ask), tickers.map((t) => t.askVolume), tickers.map((t) => t.last)],
  );
  // An outage as the gateway records it: the trade stream dropped for a while and was refilled.
  await db.pool.query(
    `insert into gaps (exchange, symbol, channel, from_ts, to_ts, reason, refilled, ts, received_at)
     values ('sim', 'BTC/USDT', 'trades', $1, $2, 'connection closed (1006)', 12, $2, $2)`,
    [iso(windowFrom.getTime() + 60_000), iso(windowFrom.getTime() + 120_000)],
  );
  // User events: a signal on BTC/USDT, one on ETH/USDT, a note naming no instrument.
  await db.pool.query(
    `insert into events (exchange, symbol, ts, received_at, id, type, data) values
     ('sim', 'BTC/USDT', $1, $1, 'e1', 'signal', '{"side":"buy"}'), ('sim', 'ETH/USDT', $1, $1, 'e2', 'signal', '{"side":"sell"}'), ('', '', $2, $2, 'e3', 'news', '"rates unchanged"')`,
    [iso(windowFrom.getTime() + 90_000), iso(windowFrom.getTime() + 150_000)],
  );
  for (const symbol of sim.symbols) {
    const [base, quote] = symbol.split('/');
    await db.pool.query(
      `insert into instruments (exchange, symbol, base, quote, type, active, exchange_symbol, ts, received_at) values ('sim', $1, $2, $3, 'spot', true, $4, now(), now())`,
      [symbol, base, quote, `${base}${quote}`],
    );
  }
}

describe('grafana dashboards', () => {
  it('have SQL panels and variables to check', () => {
    expect(dashboards.length).toBeGreaterThan(0);
    expect(sqlPanels.length).toBeGreaterThan(3);
    expect(sqlVariables.map((v) => v.name)).toEqual(expect.arrayContaining(['exchange', 'symbol']));
    expect(sqlAnnotations.map((a) => a.name)).toContain('User events');
  });

  describeEachDb(['embedded', 'postgres'], (db) => {
    beforeAll(async () => {
      await load(db());
    });

    it.each(sqlVariables)('$file: variable $name lists the sim instruments', async ({ sql }) => {
      const expanded = expandGrafanaSql(sql, { from: windowFrom, to: windowTo, intervalMs: 60_000, vars: { exchange: 'sim' } });
      const { rows } = await db().pool.query(expanded);
      expect(rows.length).toBeGreaterThan(0);
    });

    it.each(sqlPanels)('$file: panel "$title" returns rows', async ({ sql }) => {
      const expanded = expandGrafanaSql(sql, { from: windowFrom, to: windowTo, intervalMs: 300_000, vars: { exchange: 'sim', symbol: 'BTC/USDT' } });
      expect(expanded).not.toMatch(/\$\w/);
      const { rows } = await db().pool.query(expanded);
      expect(rows.length).toBeGreaterThan(0);
      // Time series carry a time column; every numeric column holds finite numbers.
      for (const row of rows) for (const v of Object.values(row)) if (typeof v === 'number') expect(Number.isFinite(v)).toBe(true);
    });

    it.each(sqlAnnotations)('$file: annotation "$name" gives the instrument\'s events and those naming none, as time/text/tags', async ({ sql }) => {
      const expanded = expandGrafanaSql(sql, { from: windowFrom, to: windowTo, intervalMs: 300_000, vars: { exchange: 'sim', symbol: 'BTC/USDT' } });
      expect(expanded).not.toMatch(/\$\w/);
      const { rows } = await db().pool.query<{ time: Date; text: string; tags: string }>(expanded);
      expect(rows.map((r) => [r.text, r.tags])).toEqual([
        ['signal: {"side":"buy"}', 'signal'],
        ['news: "rates unchanged"', 'news'],
      ]);
      expect(rows[0]!.time).toBeInstanceOf(Date);
    });
  });
});

