/**
 * A config with bad exchange entries: an unknown ccxt id, a symbol the exchange does not list,
 * a value of the wrong type. Each is reported by name (in the start-up report, and as one line
 * on stderr from `tickflow gateway`), and the good entry still produces.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type GatewayReport } from '../gateways/index.ts';
import { buildSim, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');

function entries(sim: Sim): unknown[] {
  return [
    { id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { trades: {} }, backfillLookbackMinutes: 0, options: simOptions(sim) },
    { id: 'binanse', symbols: ['BTC/USDT'], channels: { trades: {} } },
    { id: 'binance', name: 'sim2', symbols: ['FOO/USDT'], channels: { trades: {} }, options: simOptions(sim) },
    { id: 'binance', name: 'sim3', symbols: 'BTC/USDT', channels: { trades: {} } },
  ];
}

describe('bad exchange entries', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwcfg');
  let sim: Sim;

  beforeAll(async () => {
    sim = buildSim({ seed: 5, symbols: ['BTC/USDT'], tradesPerSecond: 20, historyDays: 0 });
    await sim.start();
  });
  afterAll(async () => {
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument']).catch(() => undefined);
  });

  it('reports each by name; the good entry still produces', async () => {
    const gw = buildGateway(gatewayConfig(brokers, prefix, entries(sim)));
    let report: GatewayReport;
    try {
      report = await gw.start();
      await sleep(2_000);
    } finally {
      await gw.close();
    }
    const messages = report.problems.map((p) => `${p.severity} ${p.exchange}: ${p.message}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^error binance: exchanges\[3\]\.symbols: .*expected array, received string \(entry skipped\)$/),
        expect.stringMatching(/^error binanse: exchanges\[1\] \(binanse\): unknown exchange id "binanse": ccxt has no such exchange \(did you mean binance.*\?\)$/),
        expect.stringMatching(/^error sim2: exchanges\[2\] \(sim2\): symbol FOO\/USDT is not listed by binance$/),
        expect.stringMatching(/^error sim2: exchanges\[2\] \(sim2\): nothing to run: no listed symbol left$/),
      ]),
    );
    expect(report.problems).toHaveLength(4);
    expect(report.workers.map((w) => [w.name, w.status])).toEqual([
      ['sim', 'running'],
      ['binanse', 'failed'],
      ['sim2', 'failed'],
    ]);
    const got = await readTopics(brokers, prefix, ['trade', 'instrument']);
    expect(got.trade.length).toBeGreaterThan(10);
    expect(new Set(got.trade.map((t) => t.exchange))).toEqual(new Set(['sim']));
    expect(got.instrument.map((i) => `${i.exchange} ${i.symbol}`)).toEqual(['sim BTC/USDT']);
  });

  it('`tickflow gateway` prints one line per problem on stderr and runs the good entry until Ctrl-C', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-gw-'));
    const file = path.join(dir, 'tickflow.yaml');
    writeFileSync(file, stringify({ exchanges: entries(sim), gateway: { metricsPort: 0 } }));
    const p = spawn(process.execPath, [BIN, 'gateway', '--config', file], {
      // The default console (human log lines at info): each problem must still show once.
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), KAFKA_TOPIC_PREFIX: `${prefix}cli`, LOG_LEVEL: 'info', LOG_FORMAT: 'human' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => p.on('close', r));
    const deadline = Date.now() + 30_000;
    while (!stdout.includes('Ctrl-C to stop') && Date.now() < deadline && p.exitCode === null) await sleep(100);
    expect(stdout).toContain('gateway: sim running BTC/USDT (trades:ws)');
    await sleep(1_000);
    p.kill('SIGINT');
    expect(await exited).toBe(0);
    const lines = stderr.trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^tickflow gateway: error: exchanges\[3\]\.symbols: .*expected array/),
        expect.stringMatching(/^tickflow gateway: error: exchanges\[1\] \(binanse\): unknown exchange id "binanse"/),
        expect.stringMatching(/^tickflow gateway: error: exchanges\[2\] \(sim2\): symbol FOO\/USDT is not listed by binance/),
      ]),
    );
    for (const problem of ['exchanges[3].symbols', 'exchanges[1] (binanse)', 'exchanges[2] (sim2): symbol FOO/USDT']) {
      expect(lines.filter((l) => l.includes(problem)), `${problem} in:\n${stderr}`).toHaveLength(1);
    }
    await deleteTopics(brokers, `${prefix}cli`, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  }, 45_000);

  const leftovers: Array<() => unknown> = [];
  afterAll(() => leftovers.forEach((kill) => kill()));

  /** `tickflow gateway` on these entries: its exit code, or 'running' 5 s after it said it runs. */
  async function gatewayRun(list: unknown[], forMs: number) {
    const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-gw-'));
    const file = path.join(dir, 'tickflow.yaml');
    writeFileSync(file, stringify({ exchanges: list, gateway: { metricsPort: 0 } }));
    const p = spawn(process.execPath, [BIN, 'gateway', '--config', file], {
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), KAFKA_TOPIC_PREFIX: `${prefix}none`, LOG_LEVEL: 'fatal' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    let done = false;
    const exited = new Promise<number | null>((r) => p.on('close', r)).finally(() => (done = true));
    leftovers.push(() => done || p.kill('SIGKILL'));
    // Until it exits, or has started and then kept running for 5 s.
    const deadline = Date.now() + forMs;
    while (!done && !stdout.includes('Ctrl-C to stop') && Date.now() < deadline) await sleep(100);
    const code = await Promise.race([exited, sleep(5_000).then(() => 'running' as const)]);
    return { code, stdout: () => stdout, stderr: () => stderr, stop: async () => (p.kill('SIGINT'), exited) };
  }

  it('`tickflow gateway` with no entry able to start exits 1 with one line saying so', async () => {
    const r = await gatewayRun([entries(sim)[1], entries(sim)[2]], 40_000);
    expect(r.code, `stdout:\n${r.stdout()}\nstderr:\n${r.stderr()}`).toBe(1);
    expect(r.stderr().trimEnd().split('\n').at(-1)).toBe('tickflow gateway: no exchange entry could start (binanse, sim2); see the errors above');
    expect(r.stdout()).toBe('');
  }, 60_000);

  it('`tickflow gateway` keeps running while an entry waits for its exchange to answer', async () => {
    const silent = { id: 'binance', name: 'later', symbols: ['BTC/USDT'], channels: { trades: {} }, options: { enableRateLimit: false, urls: { api: { public: 'http://127.0.0.1:1/api/v3' } } } };
    const r = await gatewayRun([entries(sim)[1], silent], 40_000);
    expect(r.code, r.stderr()).toBe('running');
    expect(r.stdout()).toContain('gateway: later waiting for the exchange to answer');
    expect(await r.stop()).toBe(0);
  }, 60_000);
});
