/**
 * `npm start` from a clean state, as a newcomer runs it: the local Kafka broker, the embedded
 * TimescaleDB, the sim, the gateways, the sink and the API in one command. Candles for a sim
 * instrument come out of /v1/ohlcv within 60 s, the chart page answers, and SIGINT stops
 * everything: no process is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { isAlive, freePort } from '../infra/process.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const pid of readdirProc()) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text) && isAlive(pid)) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function readdirProc(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

describe('npm start', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-start-'));
  let child: ChildProcess | undefined;
  let stdout = '';
  let stderr = '';

  afterAll(() => {
    if (child?.pid && isAlive(child.pid)) process.kill(-child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves candles from the sim within 60 s, then stops cleanly on SIGINT', async () => {
    const [kafkaPort, simPort, sinkPort] = [await freePort(), await freePort(), await freePort()];
    const config = path.join(dir, 'tickflow.yaml');
    // The shipped default config, with this test's own folders and ports.
    const doc = parse(readFileSync(path.join(ROOT, 'config', 'tickflow.yaml'), 'utf8').replaceAll('127.0.0.1:9500', `127.0.0.1:${simPort}`));
    doc.kafka = { ...doc.kafka, partitions: 1 };
    doc.infra = { kafkaDataDir: `${dir}/kafka`, kafkaPort };
    doc.database = { dataDir: `${dir}/db` };
    doc.sim = { port: simPort, tradesPerSecond: 20 };
    doc.api = { port: 0 };
    doc.sink = { apiPort: sinkPort };
    writeFileSync(config, stringify(doc));
    const env = { ...process.env };
    for (const k of ['KAFKA_BROKERS', 'DATABASE_URL', 'TICKFLOW_DB_DIR', 'TICKFLOW_CONFIG']) delete env[k];
    child = spawn('npm', ['start', '--', '--config', config], { cwd: ROOT, env: { ...env, LOG_LEVEL: 'warn' }, detached: true });
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));

    const t0 = Date.now();
    let apiUrl: string | undefined;
    let candles: { bucket: string; open: number; close: number; trades: number }[] = [];
    while (Date.now() - t0 < 90_000 && candles.length === 0) {
      await new Promise((r) => setTimeout(r, 1000));
      apiUrl ??= /chart:\s+(http:\/\/\S+?)\/?\n/.exec(stdout)?.[1];
      if (!apiUrl) continue;
      const from = new Date(Date.now() - 10 * 60_000).toISOString();
      const to = new Date(Date.now() + 60_000).toISOString();
      const res = await fetch(`${apiUrl}/v1/ohlcv?exchange=sim&symbol=${encodeURIComponent('BTC/USDT')}&interval=1m&from=${from}&to=${to}`).catch(() => undefined);
      if (res?.ok) candles = ((await res.json()) as { data: typeof candles }).data.filter((c) => c.trades > 0);
    }
    const startupMs = Date.now() - t0;
    expect(apiUrl, `no chart URL printed; stdout:\n${stdout}\nstderr:\n${stderr.slice(-2000)}`).toBeDefined();
    expect(candles.length, `no candles; stderr:\n${stderr.slice(-2000)}`).toBeGreaterThan(0);
    // The first run downloads nothing here (the jars are cached by CI), so 60 s is the budget.
    expect(startupMs).toBeLessThan(60_000);
    expect(candles[0]!.open).toBeGreaterThan(0);

    const page = await fetch(`${apiUrl}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);

    const kafkaPid = Number(readFileSync(path.join(dir, 'kafka', 'kafka.pid'), 'utf8'));
    expect(isAlive(kafkaPid)).toBe(true);

    // npm runs node as its child: signal the whole process group, as a terminal's Ctrl-C does.
    // npm itself ends by the signal at once; tickflow (same process group) stops its parts and
    // prints "stopped" last. 'close' fires once every process holding the output pipes is gone.
    const exited = new Promise<string>((r) => child!.on('close', (code, signal) => r(`${code ?? signal}`)));
    process.kill(-child.pid!, 'SIGINT');
    const how = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
    expect(how, `stdout:\n${stdout}\nstderr:\n${stderr.slice(-2000)}`).not.toBe('hung');
    expect(stdout.trimEnd().split('\n').at(-1)).toBe('stopped');
    await new Promise((r) => setTimeout(r, 500));
    expect(isAlive(kafkaPid)).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(path.join(dir, 'db.lock'))).toBe(false);
  }, 150_000);
});
