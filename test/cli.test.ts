/**
 * Bad input at the command line: a bad config file and unreachable endpoints stop the process
 * quickly with one message naming what was wrong.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');

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
    const r = await tickflow(['start'], { KAFKA_BROKERS: '127.0.0.1:1', DATABASE_URL: inject('postgresUrl') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/KAFKA_BROKERS=127\.0\.0\.1:1 is unreachable/);
  });

  it('fails naming KAFKA_BROKERS, not hanging, when a broker never answers', async () => {
    const r = await tickflow(['start'], { KAFKA_BROKERS: `127.0.0.1:${blackholePort}`, DATABASE_URL: inject('postgresUrl') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`KAFKA_BROKERS=127\\.0\\.0\\.1:${blackholePort} is unreachable`));
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
