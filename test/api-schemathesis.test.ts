/**
 * schemathesis (PyPI; `.ci/run` installs it with pip) against the running API's own OpenAPI
 * document: every operation, every check (`--checks all`: no server error, responses that
 * conform to the declared status codes, content types, headers and schemas, requests the
 * document calls valid accepted and invalid ones refused, 405 with Allow for undeclared methods),
 * in its examples, coverage and fuzzing phases, on the PostgreSQL server with data in every table.
 * Not installed is a failure, never a skip. Settings and hooks (real paging cursors) beside it in
 * test/api-schemathesis/; more examples or another seed with TICKFLOW_SCHEMATHESIS_EXAMPLES /
 * TICKFLOW_SCHEMATHESIS_SEED.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { migrate } from '../migrations/runner.ts';
import type { Trade } from '../schemas/index.ts';
import { openTestDb, type TestDb } from './harness/db.ts';
import { insertCandles, insertGaps, insertInstruments, insertTickers, insertTrades } from './harness/market-data.ts';

/** The version .ci/run installs (tested with it). */
const SCHEMATHESIS = '4.32.5';
const EXAMPLES = Number(process.env.TICKFLOW_SCHEMATHESIS_EXAMPLES ?? 20);
const SEED = Number(process.env.TICKFLOW_SCHEMATHESIS_SEED ?? 20241128);
const HERE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'api-schemathesis');
const T = Date.UTC(2024, 6, 1) * 1000;
const MIN = 60_000_000;

function run(args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-m', 'schemathesis.cli', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('schemathesis against /docs/json', () => {
  let db: TestDb;
  let api: Api;
  let url: string;
  let work: string;

  beforeAll(async () => {
    db = await openTestDb('postgres', { poolMax: 4 });
    await migrate(db.pool);
    const trades: Trade[] = [];
    for (let i = 0; i < 600; i++) {
      const ts = T + i * 7_000_000 + i;
      trades.push({ exchange: i % 3 ? 'binance' : 'okx', symbol: i % 2 ? 'BTC/USDT' : 'ETH/USDT', ts, received_at: ts + 5, id: String(i), side: i % 2 ? 'buy' : 'sell', price: 100 + (i % 17), amount: 0.1 + (i % 3) * 0.01 });
    }
    await insertTrades(db.pool, trades);
    await insertTickers(db.pool, trades.slice(0, 100).map((t) => ({ exchange: t.exchange, symbol: t.symbol, ts: t.ts, received_at: t.received_at, bid: t.price, bid_size: 1, ask: t.price + 1, ask_size: null, last: t.price, open_24h: null, high_24h: null, low_24h: null, base_volume_24h: null, quote_volume_24h: null })));
    await insertCandles(db.pool, Array.from({ length: 60 }, (_, i) => ({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: T + i * MIN, received_at: T + i * MIN + 1, open: 1, high: 2, low: 0.5, close: 1.5, volume: 3, closed: true })));
    await insertGaps(db.pool, [{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', from_ts: T + 10 * MIN, to_ts: T + 11 * MIN, reason: 'connection closed (1006)', refilled: 3, ts: T + 11 * MIN, received_at: T + 11 * MIN }]);
    await db.pool.query(
      `insert into events (exchange, symbol, ts, received_at, id, type, data) select case when i % 4 = 0 then '' else 'binance' end, case when i % 4 = 0 then '' else 'BTC/USDT' end,
       timestamptz 'epoch' + ($1::int8 + i::int8 * 60000000) * interval '1 microsecond', now(), 'e' || i, case when i % 2 = 0 then 'signal' else 'note' end, '{"i":' || i || '}' from generate_series(1, 40) i`,
      [T],
    );
    await insertInstruments(db.pool, [{ exchange: 'binance', symbol: 'BTC/USDT', base: 'BTC', quote: 'USDT', type: 'spot', active: true, price_increment: null, amount_increment: null, min_amount: null, exchange_symbol: 'BTCUSDT', ts: T, received_at: T }]);
    // Kafka for POST /v1/events (its events go to topics of this run's own prefix).
    const prefix = `tst${randomBytes(4).toString('hex')}`;
    api = buildApi(parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix }, api: { port: 0, maxRows: 200, maxScanRows: 1_000 } }, { env: {} }), { pool: db.pool, brokers: inject('kafkaBrokers') });
    url = await api.start();
    work = await mkdtemp(path.join(tmpdir(), 'tickflow-schemathesis-'));
  });

  afterAll(async () => {
    await api?.close();
    await db?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it(`finds no server error, no schema violation and no valid request refused, in every operation (schemathesis ${SCHEMATHESIS})`, async () => {
    const version = spawnSync('python3', ['-m', 'schemathesis.cli', '--version'], { encoding: 'utf8' });
    expect(version.status, `schemathesis is not installed (python3 -m pip install schemathesis==${SCHEMATHESIS}, as .ci/run does): ${version.stderr || version.error?.message}`).toBe(0);
    expect(version.stdout).toContain(SCHEMATHESIS);

    const { code, out } = await run(
      ['--config-file', path.join(HERE, 'schemathesis.toml'), 'run', `${url}/docs/json`, '--checks', 'all', '--max-examples', String(EXAMPLES), '--seed', String(SEED), '--generation-database', 'none', '--no-color', '--request-timeout', '20'],
      { TICKFLOW_API_URL: url, SCHEMATHESIS_HOOKS: 'hooks', PYTHONPATH: HERE, PYTHONDONTWRITEBYTECODE: '1' },
      work,
    );
    const summary = out.slice(out.lastIndexOf('SUMMARY'));
    console.log(`schemathesis: ${summary.replace(/\s+/g, ' ').slice(0, 600)}`);
    expect(code, out.slice(-6_000)).toBe(0);
    const operations = /Tested: (\d+)/.exec(summary);
    const generated = /(\d+) generated, (\d+) passed/.exec(summary);
    expect(Number(operations?.[1]), summary).toBeGreaterThanOrEqual(13);
    expect(generated?.[1], summary).toBe(generated?.[2]);
    expect(Number(generated?.[1]), summary).toBeGreaterThan(500);
    expect(summary).toMatch(/No issues found/);
  }, 240_000);
});
