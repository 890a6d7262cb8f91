/**
 * The chart page in headless Chromium (Debian's /usr/bin/chromium through playwright-core):
 * three hours of history that the sim produced (a fast sim's trades, in the database), then the
 * whole pipeline live — sim → gateway (real ccxt) → Kafka → sink → database, and Kafka → API →
 * websocket → page. The page must draw the candles (their colours are on the canvas), keep its
 * last candle updating from live trades, and leave a screenshot in test-artifacts/chart.png.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig, REPO_ROOT } from '../core/config.ts';
import { sleep } from '../core/retry.ts';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { migrate } from '../migrations/runner.ts';
import type { Trade } from '../schemas/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { openTestDb, type TestDb } from './harness/db.ts';
import { simOptions, uniquePrefix } from './harness/gateway.ts';
import { insertInstruments, insertTrades } from './harness/market-data.ts';

const CHROMIUM = '/usr/bin/chromium';
const EXCHANGE = 'sim';
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const HISTORY_MS = 3 * 3_600_000;
const SCREENSHOT = path.join(REPO_ROOT, 'test-artifacts', 'chart.png');

interface ChartState {
  status: string;
  bars: number;
  updates: number;
  trades: number;
  error: string | null;
  last: { time: number; open: number; high: number; low: number; close: number; volume: number } | null;
}

/** Runs a sim on a fast virtual clock over the last hours and returns what it traded, as records. */
async function history(): Promise<{ trades: Trade[]; lastPrice: Record<string, number> }> {
  const end = Date.now() - 60_000;
  const sim = buildSim({ seed: 11, symbols: SYMBOLS, tradesPerSecond: 0.5, startTime: end - HISTORY_MS, speed: 3_600, historyDays: 0 });
  await sim.start();
  while (sim.now() < end) await sleep(50);
  await sim.close();
  const trades: Trade[] = [];
  const lastPrice: Record<string, number> = {};
  for (const symbol of SYMBOLS) {
    for (const t of sim.emitted.trades(symbol, { until: end })) {
      trades.push({ exchange: EXCHANGE, symbol, ts: t.timestamp * 1000, received_at: t.timestamp * 1000 + 1_000, id: `h${t.id}`, side: t.side, price: t.price, amount: t.amount });
      lastPrice[symbol] = t.price;
    }
  }
  return { trades, lastPrice };
}

describe('the chart page in headless Chromium', () => {
  const prefix = uniquePrefix('apiweb');
  let db: TestDb;
  let sim: Sim;
  let sink: Sink;
  let gateway: Gateway;
  let api: Api;
  let url: string;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let historyTrades = 0;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
    db = await openTestDb('postgres', { poolMax: 8 });
    await migrate(db.pool);
    const h = await history();
    historyTrades = h.trades.length;
    await insertTrades(db.pool, h.trades);
    await insertInstruments(db.pool, SYMBOLS.map((symbol) => {
      const [base = '', quote = ''] = symbol.split('/');
      return { exchange: EXCHANGE, symbol, base, quote, type: 'spot', active: true, price_increment: 0.01, amount_increment: 0.00001, min_amount: null, exchange_symbol: `${base}${quote}`, ts: Date.now() * 1000, received_at: Date.now() * 1000 };
    }));

    // Live: the sim picks up where the history ended, at wall-clock speed.
    sim = buildSim({ seed: 12, symbols: SYMBOLS, tradesPerSecond: 4, startPrice: h.lastPrice, historyDays: 0 });
    await sim.start();
    const config = parseConfig(
      {
        kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 2 },
        api: { port: 0 },
        exchanges: [{ id: 'binance', name: EXCHANGE, symbols: SYMBOLS, channels: { trades: {} }, options: simOptions(sim) }],
      },
      { env: {} },
    );
    sink = buildSink(config, { pool: db.pool, brokers: inject('kafkaBrokers'), listen: false, schedule: false });
    await sink.start();
    gateway = buildGateway(config, { brokers: inject('kafkaBrokers') });
    await gateway.start();
    api = buildApi(config, { pool: db.pool, brokers: inject('kafkaBrokers') });
    url = await api.start();
    await api.app.hub!.ready;

    profile = mkdtempSync(path.join(tmpdir(), 'tickflow-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 720 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await api?.close();
    await gateway?.close();
    await sink?.close();
    await sim?.close();
    await db?.close();
  });

  it('draws the candles of the sim\'s trades, updates the last one live, and keeps a screenshot', async () => {
    const consoleErrors: string[] = [];
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    await page.goto(`${url}/?exchange=${EXCHANGE}&symbol=${encodeURIComponent('BTC/USDT')}&interval=1m`);

    // Browser-side code as strings: this project's TypeScript has no DOM types.
    const state = () => page.evaluate('window.tickflow') as Promise<ChartState>;
    await page.waitForFunction('window.tickflow.status === "live"', undefined, { timeout: 60_000 });
    const first = await state();
    expect(first.error).toBeNull();
    // About one candle per minute of history (a quiet minute has none).
    expect(first.bars).toBeGreaterThan(150);
    expect(historyTrades).toBeGreaterThan(5_000);
    expect(await page.locator('#instrument option').allTextContents()).toEqual(SYMBOLS.map((s) => `${EXCHANGE} ${s}`));

    // The candles are on the canvas: count pixels of the rising and falling colours.
    const painted = (await page.evaluate(`(() => {
      let up = 0;
      let down = 0;
      for (const c of document.querySelectorAll('#chart canvas')) {
        const ctx = c.getContext('2d');
        if (!ctx || c.width === 0 || c.height === 0) continue;
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        const near = (i, r, g, b) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 30;
        for (let i = 0; i < d.length; i += 4) {
          if (near(i, 38, 166, 154)) up++;
          else if (near(i, 239, 83, 80)) down++;
        }
      }
      return { up, down };
    })()`)) as { up: number; down: number };
    expect(painted.up).toBeGreaterThan(500);
    expect(painted.down).toBeGreaterThan(500);

    // Live: the newest candle changes (price, volume, or a new minute) as trades flow through the pipeline.
    const before = first.last!;
    await page.waitForFunction(
      `(() => { const l = window.tickflow.last; return !!l && (l.time !== ${before.time} || l.volume !== ${before.volume} || l.close !== ${before.close}); })()`,
      undefined,
      { timeout: 30_000 },
    );
    await sleep(3_000);
    const after = await state();
    expect(after.trades).toBeGreaterThan(0);
    expect(after.updates).toBeGreaterThan(first.updates);
    expect(after.last!.time).toBeGreaterThanOrEqual(before.time);

    // The live candle the page built from trades is the one the API serves (once the sink wrote them).
    await sleep(1_500);
    const bucket = new Date(after.last!.time * 1000).toISOString();
    const res = await fetch(`${url}/v1/ohlcv?exchange=${EXCHANGE}&symbol=${encodeURIComponent('BTC/USDT')}&interval=1m&from=${bucket}&to=${new Date(after.last!.time * 1000 + 60_000).toISOString()}`);
    const server = ((await res.json()) as { data: Array<{ open: number; low: number; volume: number }> }).data[0];
    expect(server?.open).toBe(after.last!.open);
    expect(server!.low).toBeLessThanOrEqual(after.last!.low);
    expect(server!.volume).toBeGreaterThanOrEqual(after.last!.volume - 1e-9);

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(consoleErrors).toEqual([]);
  }, 120_000);
});
