/**
 * Bad input at the command line: a bad config file and unreachable endpoints stop the process
 * quickly with one message naming what was wrong. What the commands print is for people: one
 * short line per log event (JSON with --json), a backfill that finds nothing fails naming what
 * the exchange holds.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildSim, type Sim } from '../sim/index.ts';
import { simOptions, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics } from './harness/topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const ROOT = path.resolve(import.meta.dirname, '..');
/** A state folder of its own, so a `tickflow start` running in the checkout is not this test's. */
const ownDbDir = () => path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-cli-db-')), 'db');

function tickflow(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'error', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

function configFile(text: string): string {
  const p = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-cli-')), 'tickflow.yaml');
  writeFileSync(p, text);
  return p;
}

/** A port that accepts connections and never answers: the worst case for a hang. */
let blackhole: Server;
const held: Socket[] = [];
let blackholePort = 0;
beforeAll(async () => {
  blackhole = createServer((s) => held.push(s));
  await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
  blackholePort = (blackhole.address() as { port: number }).port;
});
afterAll(() => {
  held.forEach((s) => s.destroy());
  blackhole.close();
});

describe('tickflow command line', () => {
  it('stops on a config value of the wrong type, naming the key', async () => {
    const r = await tickflow(['migrate', '--config', configFile('database:\n  poolMax: lots\n')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/database\.poolMax: .*expected number/i);
  });

  it('stops on an unknown config key, naming it', async () => {
    const r = await tickflow(['migrate', '--config', configFile('databse:\n  url: postgres://x\n')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('databse: unknown key');
  });

  it('fails fast naming DATABASE_URL when nothing listens there', async () => {
    const r = await tickflow(['migrate'], { DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/db' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/DATABASE_URL=postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/db is unreachable/);
    expect(r.stderr).not.toContain('secret');
    expect(r.ms).toBeLessThan(20_000);
  });

  it('fails naming DATABASE_URL, not hanging, when the server never answers', async () => {
    const r = await tickflow(['migrate'], { DATABASE_URL: `postgres://u@127.0.0.1:${blackholePort}/db` });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`DATABASE_URL=postgres://u@127\\.0\\.0\\.1:${blackholePort}/db is unreachable`));
  });

  it('fails fast naming KAFKA_BROKERS when the brokers are unreachable', async () => {
    const r = await tickflow(['start'], { KAFKA_BROKERS: '127.0.0.1:1', DATABASE_URL: inject('postgresUrl'), TICKFLOW_DB_DIR: ownDbDir() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/KAFKA_BROKERS=127\.0\.0\.1:1 is unreachable/);
  });

  it('fails naming KAFKA_BROKERS, not hanging, when a broker never answers', async () => {
    const r = await tickflow(['start'], { KAFKA_BROKERS: `127.0.0.1:${blackholePort}`, DATABASE_URL: inject('postgresUrl'), TICKFLOW_DB_DIR: ownDbDir() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`KAFKA_BROKERS=127\\.0\\.0\\.1:${blackholePort} is unreachable`));
  });

  it('names the file, line and column of a YAML syntax error in one line', async () => {
    const file = configFile('kafka:\n  brokers: [a, b\ndatabase:\n  url: x\nsim:\n\tport: 1\n');
    const r = await tickflow(['migrate', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toEqual([`tickflow: ${file}:3:1: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] (and 1 more problem after it)`]);
  });

  it('refuses a bad --shard / --shard-group in one line, and a bad gateway.shard naming the key', async () => {
    for (const [args, re] of [
      [['--shard', '3/3'], /--shard expects i\/n with 0 <= i < n .*got 3\/3/],
      [['--shard', '0/3', '--shard-group', 'main'], /--shard and --shard-group exclude each other/],
      [['--shard-group', 'a b'], /--shard-group expects a name/],
    ] as const) {
      const r = await tickflow(['gateway', ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }
    const r = await tickflow(['gateway', '--config', configFile('gateway:\n  shard: { index: 2, count: 2 }\n')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/gateway\.shard/);
  });

  it('refuses an unknown command in one line', async () => {
    const r = await tickflow(['strat']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('tickflow: unknown command strat (commands: start, infra, migrate, gateway, backfill, sink, api, broadcast, sim; tickflow --help)\n');
  });

  it('says in one line, without a stack, when a port it needs is taken', async () => {
    const r = await tickflow(['api', '--config', configFile(`api:\n  port: ${blackholePort}\nexchanges: []\n`)], { DATABASE_URL: inject('postgresUrl') });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tickflow: listen EADDRINUSE: address already in use 127.0.0.1:${blackholePort} (LOG_LEVEL=debug shows where)\n`);
  });

  it('migrates a server database, and a second run applies nothing', async () => {
    const env = { DATABASE_URL: inject('postgresUrl') };
    const first = await tickflow(['migrate'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/migrations \(plain\)/);
    const second = await tickflow(['migrate'], env);
    expect(second.stdout).toMatch(/nothing to apply/);
  });
});

/** Runs `tickflow sim` until it prints where it listens, then Ctrl-C; returns its stderr. */
async function simLogs(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const p = spawn(process.execPath, [BIN, 'sim', '--port', '0', '--history-days', '0', ...args], { env: { ...process.env, LOG_FORMAT: '', ...env } });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((r) => p.on('close', r));
  const deadline = Date.now() + 90_000;
  while (!stdout.includes('"url"') && p.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  p.kill('SIGINT');
  return { code: await closed, stderr };
}

describe('console output', () => {
  it('logs one short line per event by default: time, level, part, message, key fields', async () => {
    const r = await simLogs([], { LOG_LEVEL: 'info' });
    expect(r.code).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/^\d\d:\d\d:\d\d (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S+: \S/);
    expect(r.stderr).toMatch(/^\d\d:\d\d:\d\d INFO {2}sim: sim exchange listening {2}url=http:\/\/127\.0\.0\.1:\d+ /m);
    expect(r.stderr).not.toContain('{"level"');
  });

  it('logs JSON lines with --json or LOG_FORMAT=json, at the LOG_LEVEL asked', async () => {
    for (const [args, env] of [[['--json'], {}], [[], { LOG_FORMAT: 'json' }]] as const) {
      const r = await simLogs([...args], { LOG_LEVEL: 'info', ...env });
      expect(r.code).toBe(0);
      const recs = r.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as { level: number; part: string; msg: string });
      expect(recs).toContainEqual(expect.objectContaining({ level: 30, part: 'sim', msg: 'sim exchange listening' }));
    }
    const quiet = await simLogs(['--json'], { LOG_LEVEL: 'warn' });
    expect(quiet.stderr).toBe('');
  });

  it('says in one line that LOG_LEVEL is not a level, and goes on at info', async () => {
    const r = await simLogs([], { LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n')[0]).toMatch(/^\d\d:\d\d:\d\d WARN {2}log: LOG_LEVEL=verbose is not a level \(fatal, error, warn, info, debug, trace, silent\); using info$/);
    expect(r.stderr).toContain('sim exchange listening');
  });
});

describe('tickflow backfill', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('bfcli');
  let sim: Sim;
  let file: string;
  const run = (args: string[]) => tickflow(['backfill', ...args, '--config', file], { KAFKA_BROKERS: brokers.join(',') });
  const iso = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';

  beforeAll(async () => {
    // One day of history: the exchange holds candles from about a day ago to now.
    sim = buildSim({ seed: 3, symbols: ['BTC/USDT'], tradesPerSecond: 5, historyDays: 1 });
    await sim.start();
    file = configFile(stringify({ kafka: { topicPrefix: prefix, partitions: 1 }, exchanges: [{ id: 'binance', name: 'sim', symbols: ['BTC/USDT'], channels: { ohlcv: { mode: 'poll' } }, options: simOptions(sim) }] }));
  });
  afterAll(async () => {
    await sim?.close();
    await deleteTopics(brokers, prefix, ['candle']).catch(() => undefined);
  });

  it('a range the exchange holds nothing of is an error naming the range and what it holds', async () => {
    const r = await run(['sim', 'BTC/USDT', '1m', '--from', '2024-01-01T00:00:00Z', '--to', '2024-01-02T00:00:00Z']);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('done');
    const last = r.stderr.trimEnd().split('\n').at(-1)!;
    const m = new RegExp(`^tickflow: backfill: sim has no closed BTC/USDT 1m candles from 2024-01-01T00:00:00\\.000Z to 2024-01-02T00:00:00\\.000Z; it holds them from (${iso}) to (${iso}); try --from \\1 or later$`).exec(last);
    expect(m, last).not.toBeNull();
    expect(Math.abs(Date.parse(m![1]!) - (Date.now() - 86_400_000))).toBeLessThan(10 * 60_000);
    expect(Math.abs(Date.parse(m![2]!) - Date.now())).toBeLessThan(10 * 60_000);
  }, 60_000);

  it('a range the exchange holds only the end of warns with the first time it had, and sends that part', async () => {
    const from = new Date(Date.now() - 2 * 86_400_000).toISOString();
    const to = new Date(Date.now() - 23 * 3_600_000).toISOString();
    const r = await run(['sim', 'BTC/USDT', '1m', '--from', from, '--to', to]);
    expect(r.code, r.stderr).toBe(0);
    const warning = new RegExp(`^tickflow backfill: warning: sim has no BTC/USDT 1m candles before (${iso}) \\(asked from ${from.replace(/\./g, '\\.')}\\); the backfill starts there$`, 'm').exec(r.stderr);
    expect(warning, r.stderr).not.toBeNull();
    const first = Date.parse(warning![1]!);
    expect(Math.abs(first - (Date.now() - 86_400_000))).toBeLessThan(10 * 60_000);
    const sent = Number(/backfill: (\d+) closed candles/.exec(r.stdout)?.[1]);
    // From the exchange's first candle to `to`, one a minute (the bucket `to` falls in or not).
    expect(sent).toBeGreaterThanOrEqual(Math.floor((Date.parse(to) - first) / 60_000));
    expect(sent).toBeLessThanOrEqual(Math.floor((Date.parse(to) - first) / 60_000) + 1);
  }, 60_000);

  it("the gateways README's example works as written", async () => {
    const readme = readFileSync(path.join(ROOT, 'gateways', 'README.md'), 'utf8');
    const line = /^(?:npx )?tickflow (backfill sim [^\n#]*?)\s*(?:#.*)?$/m.exec(readme)?.[1];
    expect(line, 'a `tickflow backfill sim ...` line in gateways/README.md').toBeDefined();
    const r = await tickflow([...line!.split(/\s+/), '--config', file], { KAFKA_BROKERS: brokers.join(',') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(Number(/backfill: (\d+) closed candles/.exec(r.stdout)?.[1])).toBeGreaterThan(0);
    const got = await readTopics(brokers, prefix, ['candle']);
    expect(got.candle.length).toBeGreaterThan(0);
  }, 60_000);
});
