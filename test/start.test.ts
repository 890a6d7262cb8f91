/**
 * `npm start` from a clean state, as a newcomer runs it: the local Kafka broker, the embedded
 * TimescaleDB, the sim, the gateways, the sink and the API in one command. Candles for a sim
 * instrument come out of /v1/ohlcv within 60 s, the chart page answers, and SIGINT stops
 * everything: no process is left behind. A second `npm start` keeps the data of the first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freePort, isAlive } from '../infra/process.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

/** `tickflow <args>` with this test's environment (no KAFKA_BROKERS / DATABASE_URL). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn' };
  for (const k of ['KAFKA_BROKERS', 'DATABASE_URL', 'TICKFLOW_DB_DIR', 'TICKFLOW_CONFIG', 'LOG_FORMAT']) delete env[k];
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tickflow.js'), ...args], { cwd: ROOT, env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text) && isAlive(pid)) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

interface Candle { bucket: string; open: number; close: number; trades: number }

interface Run {
  /** npm's pid (tickflow runs under it). */
  readonly pid: number;
  readonly apiUrl: string;
  readonly candles: Candle[];
  readonly startupMs: number;
  readonly out: () => string;
  readonly err: () => string;
  /** Ctrl-C as a terminal sends it (to the process group); resolves when every process holding the output is gone. */
  stop(): Promise<void>;
}

describe('npm start', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-start-'));
  const config = path.join(dir, 'tickflow.yaml');
  const children: ChildProcess[] = [];

  afterAll(() => {
    for (const c of children) if (c.pid && isAlive(c.pid)) process.kill(-c.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  async function npmStart(): Promise<Run> {
    const env = { ...process.env };
    for (const k of ['KAFKA_BROKERS', 'DATABASE_URL', 'TICKFLOW_DB_DIR', 'TICKFLOW_CONFIG', 'LOG_FORMAT']) delete env[k];
    const child = spawn('npm', ['start', '--', '--config', config], { cwd: ROOT, env: { ...env, LOG_LEVEL: 'warn' }, detached: true });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const closed = new Promise<string>((r) => child.on('close', (code, signal) => r(`${code ?? signal}`)));
    const t0 = Date.now();
    let apiUrl: string | undefined;
    let candles: Candle[] = [];
    while (Date.now() - t0 < 90_000 && candles.length === 0) {
      await new Promise((r) => setTimeout(r, 1000));
      apiUrl ??= /chart:\s+(http:\/\/\S+?)\/?\n/.exec(stdout)?.[1];
      if (!apiUrl) continue;
      const from = new Date(Date.now() - 30 * 60_000).toISOString();
      const to = new Date(Date.now() + 60_000).toISOString();
      const res = await fetch(`${apiUrl}/v1/ohlcv?exchange=sim&symbol=${encodeURIComponent('BTC/USDT')}&interval=1m&from=${from}&to=${to}`).catch(() => undefined);
      if (res?.ok) candles = ((await res.json()) as { data: Candle[] }).data.filter((c) => c.trades > 0);
    }
    expect(apiUrl, `no chart URL printed; stdout:\n${stdout}\nstderr:\n${stderr.slice(-2000)}`).toBeDefined();
    expect(candles.length, `no candles; stderr:\n${stderr.slice(-2000)}`).toBeGreaterThan(0);
    return {
      pid: child.pid!,
      apiUrl: apiUrl!,
      candles,
      startupMs: Date.now() - t0,
      out: () => stdout,
      err: () => stderr,
      stop: async () => {
        process.kill(-child.pid!, 'SIGINT');
        const how = await Promise.race([closed, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
        expect(how, `stdout:\n${stdout}\nstderr:\n${stderr.slice(-2000)}`).not.toBe('hung');
        expect(stdout.trimEnd().split('\n').at(-1), `exit: ${how}\nstdout:\n${stdout}\nstderr:\n${stderr.slice(-3000)}`).toBe('stopped');
      },
    };
  }

  it('serves candles from the sim within 60 s, stops cleanly on SIGINT, and keeps its data for the next start', async () => {
    const [kafkaPort, simPort, sinkPort] = [await freePort(), await freePort(), await freePort()];
    // The shipped default config, with this test's own folders and ports.
    const doc = parse(readFileSync(path.join(ROOT, 'config', 'tickflow.yaml'), 'utf8').replaceAll('127.0.0.1:9500', `127.0.0.1:${simPort}`));
    doc.kafka = { ...doc.kafka, partitions: 1 };
    doc.infra = { kafkaDataDir: `${dir}/kafka`, kafkaPort };
    doc.database = { dataDir: `${dir}/db` };
    doc.sim = { port: simPort, tradesPerSecond: 20 };
    doc.api = { port: 0 };
    doc.sink = { ...doc.sink, apiPort: sinkPort };
    writeFileSync(config, stringify(doc));

    const first = await npmStart();
    // The jars are cached (CI fetches them before the tests), so 60 s is the whole budget.
    expect(first.startupMs).toBeLessThan(60_000);
    expect(first.candles[0]!.open).toBeGreaterThan(0);
    const page = await fetch(`${first.apiUrl}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const trades1 = (await (await fetch(`${first.apiUrl}/v1/trades?exchange=sim&symbol=${encodeURIComponent('BTC/USDT')}&from=2000-01-01T00:00:00Z&limit=10000`)).json()) as { data: { id: string; ts: string }[] };
    expect(trades1.data.length).toBeGreaterThan(0);

    const kafkaPid = Number(readFileSync(path.join(dir, 'kafka', 'kafka.pid'), 'utf8'));
    expect(isAlive(kafkaPid)).toBe(true);

    // What it printed is for people: the README's block as printed, log lines one per event.
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const block = /where to look[^`]*```\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, 'the printed block in README.md').toBeDefined();
    expect(first.out()).toContain(block!.replaceAll('http://127.0.0.1:8080', first.apiUrl));
    for (const line of first.err().split('\n').filter(Boolean)) expect(line).toMatch(/^(\d\d:\d\d:\d\d (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S+: |tickflow|npm )/);

    // A second start on the same folder says at once, in one line, that this one runs.
    const again = await cli(['start', '--config', config]);
    const npmPid = first.pid;
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^tickflow: tickflow start is already running on ${dir}: \`tickflow start\` \\(pid (\\d+), since \\S+ UTC, chart at ${first.apiUrl}/\\); stop it first`)),
    ]);
    const startPid = Number(/pid (\d+)/.exec(again.stderr)![1]);
    expect(processesMentioning(dir)).toContain(startPid);
    expect(startPid).not.toBe(npmPid);
    // And infra status says who holds the broker and the database.
    const status = await cli(['infra', 'status', '--config', config]);
    expect(status.code).toBe(0);
    expect(status.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^kafka: running \\(pid ${kafkaPid}\\) at 127\\.0\\.0\\.1:${kafkaPort}, run by \`tickflow start\` \\(pid ${startPid}, `)),
      expect.stringMatching(new RegExp(`^database: embedded TimescaleDB in ${dir}/db open in \`tickflow start\` \\(pid ${startPid}, .*\\), serving only that process$`)),
    ]);
    // npm itself ends by the signal at once; tickflow (same process group) stops its parts and
    // prints "stopped" last.
    await first.stop();
    await new Promise((r) => setTimeout(r, 500));
    expect(isAlive(kafkaPid)).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(path.join(dir, 'db.lock'))).toBe(false);

    // The next start finds the database migrated and the first run's trades still there.
    const restartedAt = new Date().toISOString();
    const second = await npmStart();
    expect(second.out()).toMatch(/migrations \(\w+\) up to date/);
    // And new trades keep arriving on the reopened database.
    let fresh: unknown[] = [];
    for (let i = 0; i < 60 && fresh.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      fresh = ((await (await fetch(`${second.apiUrl}/v1/trades?exchange=sim&symbol=${encodeURIComponent('BTC/USDT')}&from=${restartedAt}&limit=10`)).json()) as { data: unknown[] }).data;
    }
    expect(fresh.length, `no trades written after the restart; stderr so far:\n${second.err().slice(-2000)}`).toBeGreaterThan(0);
    const trades2 = (await (await fetch(`${second.apiUrl}/v1/trades?exchange=sim&symbol=${encodeURIComponent('BTC/USDT')}&from=2000-01-01T00:00:00Z&to=${new Date(Date.parse(trades1.data.at(-1)!.ts) + 1000).toISOString()}&limit=10000`)).json()) as { data: { id: string; ts: string }[] };
    const key = (t: { id: string; ts: string }) => `${t.ts}/${t.id}`;
    const kept = new Set(trades2.data.map(key));
    expect(trades1.data.filter((t) => !kept.has(key(t)))).toEqual([]);
    await second.stop();
    expect(processesMentioning(dir)).toEqual([]);
  }, 240_000);
});
