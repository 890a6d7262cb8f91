/**
 * A sim in another process (`tickflow sim`) is faulted and read over its HTTP control endpoint
 * (`POST /__sim/faults`, `GET /__sim/...` through `connectSim`), while the real ccxt classes talk to
 * it: what they see changes the way the fault says, and what they parse is what the control
 * endpoint says the sim emitted.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import ccxt, { type Exchange } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connectSim, type SimControl } from './control.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const SYMBOL = 'BTC/USDT';

interface Started {
  url: string;
  ccxtOptions: Record<string, unknown>;
  control: string;
}

let child: ChildProcessWithoutNullStreams;
let started: Started;
let sim: SimControl;

beforeAll(async () => {
  child = spawn(process.execPath, [BIN, 'sim', '--port', '0', '--history-days', '0', '--rate', '50', '--symbols', SYMBOL], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const deadline = Date.now() + 30_000;
  while (!stdout.includes('\n') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  started = JSON.parse(stdout.split('\n')[0]!) as Started;
  sim = connectSim(started.url);
}, 40_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const closed = new Promise((r) => child.once('close', r));
    child.kill('SIGTERM');
    await closed;
  }
});

const rest = (): Exchange => new ccxt.binance({ ...started.ccxtOptions, httpAgent: new http.Agent(), enableRateLimit: false });

function wsUpgradeStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => undefined);
  });
}

describe('the control endpoint of a sim in another process', () => {
  it('prints where its control endpoint is, and says which dialects it speaks', async () => {
    expect(started.control).toBe(`${started.url}/__sim`);
    const info = await sim.info();
    expect(info.symbols).toEqual([SYMBOL]);
    expect(Object.keys(info.dialects)).toContain('binance');
    expect(info.dialects.binance!.ccxtOptions).toEqual(started.ccxtOptions);
  });

  it('emitted trades read over HTTP are the trades ccxt fetches', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const ex = rest();
    const got = await ex.fetchTrades(SYMBOL, undefined, 20);
    const want = await sim.emitted.trades(SYMBOL, { fromId: Number(got[0]!.id) });
    expect(got.map((t) => [Number(t.id), t.timestamp, t.price, t.amount, t.side])).toEqual(want.slice(0, got.length).map((t) => [t.id, t.timestamp, t.price, t.amount, t.side]));
  });

  it('refuse (REST): ccxt gets ExchangeNotAvailable until it ends; clear ends it early', async () => {
    const ex = rest();
    await ex.loadMarkets(); // ccxt keeps a failed loadMarkets promise: load before the refusal
    await sim.refuseService(60_000, 503);
    await expect(ex.fetchTrades(SYMBOL)).rejects.toBeInstanceOf(ccxt.ExchangeNotAvailable);
    await sim.clearFaults();
    await expect(ex.fetchTrades(SYMBOL)).resolves.toBeInstanceOf(Array);
  });

  it('rateLimit: requests beyond the limit per second get the exchange\'s 429 (a ccxt DDoSProtection)', async () => {
    const ex = rest();
    await ex.loadMarkets();
    await sim.rateLimit(1, 60_000);
    const results = await Promise.allSettled([ex.fetchTrades(SYMBOL), ex.fetchTrades(SYMBOL), ex.fetchTrades(SYMBOL)]);
    const rejected = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    for (const err of rejected) expect(err).toBeInstanceOf(ccxt.DDoSProtection);
    await sim.clearFaults();
  });

  it('refuse (ws): upgrades are answered with the status; open sockets stay until dropped', async () => {
    const wsUrl = started.url.replace('http', 'ws') + '/ws/btcusdt@trade';
    await sim.refuseWebsocket(60_000, 403);
    expect(await wsUpgradeStatus(wsUrl)).toBe(403);
    await sim.clearFaults();
    expect(await wsUpgradeStatus(wsUrl)).toBe(101);
  });

  it('drop: the pending ccxt.pro watch fails with a NetworkError, and the next watch goes on', async () => {
    const o = started.ccxtOptions as { options: Record<string, unknown> };
    const ex = new ccxt.pro.binance({ ...o, httpAgent: new http.Agent(), enableRateLimit: false, options: { ...o.options, ws: { backoff: { base: 100 } } } });
    try {
      await ex.watchTrades(SYMBOL);
      await sim.setTradeRate(0); // nothing in flight: the pending watch can only end by the drop
      await new Promise((r) => setTimeout(r, 200));
      const pending = ex.watchTrades(SYMBOL);
      pending.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));
      expect(await sim.dropConnections()).toBeGreaterThanOrEqual(1);
      await expect(pending).rejects.toBeInstanceOf(ccxt.NetworkError);
      await sim.setTradeRate(50);
      expect((await ex.watchTrades(SYMBOL)).length).toBeGreaterThan(0);
      expect((await sim.stats()).ws.connectionsOpened).toBeGreaterThanOrEqual(2);
    } finally {
      await ex.close();
    }
  });

  it('rejects a malformed fault with 400 naming what is wrong', async () => {
    const res = await fetch(`${started.control}/faults`, { method: 'POST', body: JSON.stringify({ kind: 'pause', channel: 'nope', ms: 1 }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/channel/);
  });
});
