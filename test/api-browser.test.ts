/**
 * The chart page in headless Chromium (Debian's /usr/bin/chromium through playwright-core):
 * three hours of history that the sim produced (a fast sim's trades, in the database), then the
 * whole pipeline live — sim → gateway (real ccxt) → Kafka → sink → database, and Kafka → API →
 * websocket → page. The page must draw the candles (their colours are on the canvas), keep its
 * last candle updating from live trades, and leave a screenshot in test-artifacts/chart.png.
 *
 * Then a restart, as `npm start` twice: the sim (with its state file) and the gateway stop and
 * start again; the chart on 1h and 1m must show the exchange's own candle history where the
 * trades don't reach back, fill the width at load, carry no stale overlay, and the price path must
 * run on across the restart. Screenshots in bench-results/chart-restart-1h.png and -1m.png.
 *
 * User events posted to the API (POST /v1/events) are drawn as markers on their bars, those of
 * the past at load and a new one live; screenshot in test-artifacts/chart-events.png.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { REPO_ROOT } from '../core/config.ts';
import { parseConfig } from '../config/schema.ts';
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
const EVENTS_SCREENSHOT = path.join(REPO_ROOT, 'test-artifacts', 'chart-events.png');
const BENCH_RESULTS = path.join(REPO_ROOT, 'bench-results');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface ChartState {
  status: string;
  interval: string;
  bars: number;
  /** Bars drawn from each source: the trades' rollups / live trades, or the exchange's candles. */
  sources: { trades: number; exchange: number };
  /** The text over the chart ('' when none). */
  overlay: string;
  /** The time scale: its width and where the first and last bars are drawn (px from its left). */
  view: { width: number; firstX: number | null; lastX: number | null } | null;
  updates: number;
  trades: number;
  error: string | null;
  last: { time: number; open: number; high: number; low: number; close: number; volume: number } | null;
  /** User events held for the instrument, and the markers drawn. */
  events: number;
  markers: Array<{ id: string; time: number; position: string; shape: string; color: string; text: string }>;
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
      args: CHROMIUM_ARGS,
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
    const painted = await paintedCandles(page);
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

  it('draws the instrument\'s user events as markers, past ones at load and a new one live, and keeps a screenshot', async () => {
    const consoleErrors: string[] = [];
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    const post = async (body: unknown): Promise<string[]> => {
      const r = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(r.status, await r.clone().text()).toBe(202);
      return ((await r.json()) as { data: Array<{ id: string }> }).data.map((d) => d.id);
    };
    const at = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000).toISOString();
    // A strategy's signals and a note on BTC/USDT, one signal on ETH/USDT (not this chart's).
    const past = await post([
      { type: 'signal', exchange: EXCHANGE, symbol: 'BTC/USDT', ts: at(75), data: { side: 'buy', price: 1 } },
      { type: 'signal', exchange: EXCHANGE, symbol: 'BTC/USDT', ts: at(45), data: { side: 'sell' } },
      { type: 'note', exchange: EXCHANGE, symbol: 'BTC/USDT', ts: at(20), data: { label: 'rebalance' } },
      { type: 'signal', exchange: EXCHANGE, symbol: 'ETH/USDT', ts: at(30), data: { side: 'buy' } },
    ]);
    // In the table (through Kafka and the sink) before the page loads them.
    const from = at(90);
    for (let i = 0; ; i++) {
      const r = (await (await fetch(`${url}/v1/events?from=${from}`)).json()) as { data: unknown[] };
      if (r.data.length >= 4) break;
      if (i > 300) throw new Error('the events never reached the table');
      await sleep(100);
    }
    await page.goto(`${url}/?exchange=${EXCHANGE}&symbol=${encodeURIComponent('BTC/USDT')}&interval=5m`);
    await page.waitForFunction('window.tickflow.status === "live" && window.tickflow.events >= 3', undefined, { timeout: 60_000 });
    const state = () => page.evaluate('window.tickflow') as Promise<ChartState>;
    const loaded = await state();
    expect(loaded.markers.map((m) => m.id)).toEqual(past.slice(0, 3));
    expect(loaded.markers.map((m) => [m.shape, m.position, m.text])).toEqual([
      ['arrowUp', 'belowBar', 'signal buy'],
      ['arrowDown', 'aboveBar', 'signal sell'],
      ['circle', 'aboveBar', 'rebalance'],
    ]);
    // Each marker sits on a 5-minute bar.
    for (const m of loaded.markers) expect(m.time % 300).toBe(0);

    // Live: a signal posted now appears without a reload.
    const [live] = await post({ type: 'signal', exchange: EXCHANGE, symbol: 'BTC/USDT', data: { side: 'sell', label: 'exit' } });
    await page.waitForFunction(`window.tickflow.markers.some((m) => m.id === ${JSON.stringify(live)})`, undefined, { timeout: 30_000 });
    const after = await state();
    expect(after.markers.map((m) => m.id)).toEqual([...past.slice(0, 3), live]);
    expect(after.markers.at(-1)).toMatchObject({ shape: 'arrowDown', text: 'exit' });

    // The note's marker is on the canvas: pixels of its colour (#d29922), which nothing else uses.
    const notePixels = (await page.evaluate(`(() => {
      let n = 0;
      for (const c of document.querySelectorAll('#chart canvas')) {
        const ctx = c.getContext('2d');
        if (!ctx || c.width === 0 || c.height === 0) continue;
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 210) + Math.abs(d[i + 1] - 153) + Math.abs(d[i + 2] - 34) < 30) n++;
      }
      return n;
    })()`)) as number;
    expect(notePixels).toBeGreaterThan(20);

    mkdirSync(path.dirname(EVENTS_SCREENSHOT), { recursive: true });
    await page.screenshot({ path: EVENTS_SCREENSHOT });
    expect(consoleErrors).toEqual([]);
  }, 120_000);
});

/**
 * Pixels of the candle colours on the chart's canvases: how many rising and falling, and the
 * leftmost and rightmost column holding either, as a share of the canvas width.
 */
async function paintedCandles(page: Page): Promise<{ up: number; down: number; left: number; right: number }> {
  // Browser-side code as a string: this project's TypeScript has no DOM types.
  return (await page.evaluate(`(() => {
    let up = 0;
    let down = 0;
    let left = Infinity;
    let right = -Infinity;
    for (const c of document.querySelectorAll('#chart canvas')) {
      const ctx = c.getContext('2d');
      if (!ctx || c.width === 0 || c.height === 0) continue;
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      const near = (i, r, g, b) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 30;
      for (let i = 0; i < d.length; i += 4) {
        const isUp = near(i, 38, 166, 154);
        if (!isUp && !near(i, 239, 83, 80)) continue;
        if (isUp) up++;
        else down++;
        const x = ((i / 4) % c.width) / c.width;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
    return { up, down, left, right };
  })()`)) as { up: number; down: number; left: number; right: number };
}

describe('the chart page after a restart, on 1h and 1m', () => {
  const prefix = uniquePrefix('apiwebrs');
  const SYMBOL = 'BTC/USDT';
  const NEW_EXCHANGE = 'simnew';
  const HISTORY_DAYS = 7;
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-restart-'));
  const stateFile = path.join(dir, 'sim-state.json');
  let db: TestDb;
  let sink: Sink;
  let api: Api;
  let url: string;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let sim: Sim | undefined;
  let gateway: Gateway | undefined;
  const consoleErrors: string[] = [];

  /**
   * What `npm start` builds around the sim: the sim (resuming from its state file) and a gateway
   * on it, with trades and 1m candles. The first run is given another start price than the
   * configured one, standing in for the hours a real run drifts: a sim that started over would
   * jump back to the configured price.
   */
  async function startExchange(startPrice?: number, second = false): Promise<{ sim: Sim; gateway: Gateway }> {
    const s = buildSim({ seed: 31, symbols: SYMBOLS, tradesPerSecond: 3, historyDays: HISTORY_DAYS, stateFile, ...(startPrice ? { startPrice: { [SYMBOL]: startPrice } } : {}) });
    await s.start();
    const config = parseConfig(
      {
        kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 2 },
        exchanges: [
          {
            id: 'binance',
            name: EXCHANGE,
            symbols: SYMBOLS,
            channels: { trades: {}, ohlcv: { timeframes: ['1m'] } },
            backfillLookbackMinutes: HISTORY_DAYS * 1440,
            options: simOptions(s),
          },
          // The second run adds an instrument with no history at all: trades only, from now on.
          ...(second ? [{ id: 'binance', name: NEW_EXCHANGE, symbols: ['ETH/USDT'], channels: { trades: {} }, options: simOptions(s) }] : []),
        ],
      },
      { env: {} },
    );
    const g = buildGateway(config, { brokers: inject('kafkaBrokers') });
    await g.start();
    return { sim: s, gateway: g };
  }

  async function rows<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await db.pool.query(sql, params)).rows as T[];
  }

  async function waitFor(what: string, pred: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await pred())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(500);
    }
  }

  /** Trades in the database after `after`, oldest first. */
  const tradesAfter = (after: Date) =>
    rows<{ id: string; price: number; ts: Date }>(`select id, price, ts from trades where exchange = $1 and symbol = $2 and ts > $3 order by ts, id`, [EXCHANGE, SYMBOL, after]);

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
    db = await openTestDb('postgres', { poolMax: 8 });
    await migrate(db.pool);
    const config = parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 2 }, api: { port: 0 } }, { env: {} });
    sink = buildSink(config, { pool: db.pool, brokers: inject('kafkaBrokers'), listen: false, schedule: false });
    await sink.start();
    api = buildApi(config, { pool: db.pool, brokers: inject('kafkaBrokers') });
    url = await api.start();
    await api.app.hub!.ready;
    profile = mkdtempSync(path.join(tmpdir(), 'tickflow-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 720 }, args: CHROMIUM_ARGS });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await gateway?.close();
    await sim?.close();
    await api?.close();
    await sink?.close();
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the exchange candle history before the trades, fitted to the width, no stale overlay, the price running on across the restart', async () => {
    // First run: the exchange's 7 days of candles are backfilled, trades flow.
    ({ sim, gateway } = await startExchange(50_000));
    const historyCandles = HISTORY_DAYS * 1440;
    await waitFor('the backfilled candles and the first trades', async () => {
      const [c] = await rows<{ n: string }>(`select count(*) as n from candles where exchange = $1 and symbol = $2 and timeframe = '1m'`, [EXCHANGE, SYMBOL]);
      return Number(c!.n) >= historyCandles && (await tradesAfter(new Date(0))).length >= 20;
    });
    await sleep(3_000);
    // Restart: the gateway and the sim stop (the sim saves its state), then start again.
    await gateway.close();
    await sim.close();
    await sleep(2_000); // the sink writes what the gateway flushed
    const run1 = await tradesAfter(new Date(0));
    const last = run1.at(-1)!;
    ({ sim, gateway } = await startExchange(undefined, true));
    expect(sim.resumed).toBe(true);
    await waitFor('trades of the second run', async () => (await tradesAfter(last.ts)).length >= 10);

    // No trade id of the first run comes again (the gateway, resuming its position from Kafka,
    // would drop repeated ones as already produced: sim/sim.test.ts checks the ids themselves),
    // and the price runs on from where it stopped.
    const run2 = await tradesAfter(last.ts);
    const ids1 = new Set(run1.map((t) => t.id));
    expect(run2.filter((t) => ids1.has(t.id))).toEqual([]);
    expect(Math.min(...run2.map((t) => Number(t.id)))).toBeGreaterThan(Math.max(...run1.map((t) => Number(t.id))));
    expect(Math.abs(run2[0]!.price / last.price - 1)).toBeLessThan(0.002);

    mkdirSync(BENCH_RESULTS, { recursive: true });
    for (const interval of ['1h', '1m'] as const) {
      await page.goto(`${url}/?exchange=${EXCHANGE}&symbol=${encodeURIComponent(SYMBOL)}&interval=${interval}`);
      await page.waitForFunction('window.tickflow.status === "live" && window.tickflow.trades > 0', undefined, { timeout: 60_000 });
      await sleep(1_000);
      const st = (await page.evaluate('window.tickflow')) as ChartState;
      await page.screenshot({ path: path.join(BENCH_RESULTS, `chart-restart-${interval}.png`) });
      const painted = await paintedCandles(page);
      expect(st.error).toBeNull();
      expect(st.interval).toBe(interval);
      // History from the exchange's candles where the trades don't reach back: 7 days of hours
      // (not the one candle the trades alone make), 300 minutes on 1m (trades: the last few).
      expect(st.bars).toBeGreaterThan(interval === '1h' ? HISTORY_DAYS * 24 - 2 : 290);
      expect(st.sources.exchange).toBeGreaterThan(interval === '1h' ? HISTORY_DAYS * 24 - 4 : 280);
      expect(st.sources.trades).toBeGreaterThanOrEqual(1);
      // No overlay once a candle is drawn.
      expect(st.overlay).toBe('');
      expect((await page.locator('#message').textContent()) ?? '').toBe('');
      // The candles fill the width at load: the first bar near the left edge, the last near the
      // right one, on the time scale and in the pixels.
      expect(st.view!.firstX).toBeGreaterThanOrEqual(0);
      expect(st.view!.firstX!).toBeLessThan(st.view!.width * 0.05);
      expect(st.view!.lastX!).toBeGreaterThan(st.view!.width * 0.9);
      expect(st.view!.lastX!).toBeLessThanOrEqual(st.view!.width);
      expect(painted.left).toBeLessThan(0.05);
      expect(painted.right).toBeGreaterThan(0.85);
      expect(painted.up + painted.down).toBeGreaterThan(1_000);
    }
    // An instrument with no candles yet: the note shows until its first trade, then goes (1d: no
    // history unless this runs across midnight UTC).
    await waitFor('the new instrument', async () => (await rows(`select 1 from instruments where exchange = $1`, [NEW_EXCHANGE])).length > 0);
    await page.goto(`${url}/?exchange=${NEW_EXCHANGE}&symbol=${encodeURIComponent('ETH/USDT')}&interval=1d`);
    await page.waitForFunction('window.tickflow.status === "live" && window.tickflow.trades > 0', undefined, { timeout: 60_000 });
    await sleep(500);
    const fresh = (await page.evaluate('window.tickflow')) as ChartState;
    await page.screenshot({ path: path.join(BENCH_RESULTS, 'chart-new-instrument-1d.png') });
    expect(fresh.bars).toBeGreaterThanOrEqual(1);
    expect(fresh.overlay).toBe('');
    expect((await page.locator('#message').textContent()) ?? '').toBe('');
    expect(fresh.view!.lastX!).toBeGreaterThan(fresh.view!.width * 0.8);

    // The last candles carry on across the restart: no 1m close more than 0.3 % from the one before.
    const recent = ((await (await fetch(`${url}/v1/ohlcv?exchange=${EXCHANGE}&symbol=${encodeURIComponent(SYMBOL)}&interval=1m&source=exchange&from=${new Date(Date.now() - 30 * 60_000).toISOString()}`)).json()) as { data: Array<{ close: number }> }).data;
    expect(recent.length).toBeGreaterThan(25);
    for (let i = 1; i < recent.length; i++) expect(Math.abs(recent[i]!.close / recent[i - 1]!.close - 1)).toBeLessThan(0.003);
    expect(consoleErrors).toEqual([]);
  }, 240_000);
});
