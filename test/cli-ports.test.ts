/**
 * The ports the config file sets are the ports the commands use: `tickflow sim` listens on
 * `sim.port` (flags still win), and `tickflow infra up` runs the broker's KRaft controller on
 * `infra.kafkaControllerPort`. Real processes: the command as a user runs it, a real broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../infra/process.ts';
import { stopKafkaAt } from '../infra/kafka.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'tickflow.js');
const dirs: string[] = [];

/** The environment of a user with no KAFKA_BROKERS (the harness's own would say "nothing started"). */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { KAFKA_BROKERS: _k, DATABASE_URL: _d, TICKFLOW_CONFIG: _c, ...env } = process.env;
  return { ...env, LOG_LEVEL: 'error', ...extra };
}

function configFile(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-ports-'));
  dirs.push(dir);
  const file = path.join(dir, 'tickflow.yaml');
  writeFileSync(file, text);
  return file;
}

function tickflow(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts `tickflow sim ...` and resolves with the URL it prints once it listens. */
async function startSim(args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'sim', ...args], { env: userEnv() });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tickflow sim printed nothing within 30 s; stderr: ${stderr}`)), 30_000);
    child.stdout!.on('data', (d) => {
      stdout += d;
      const line = stdout.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(t);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    child.on('exit', (code) => reject(new Error(`tickflow sim exited (${code}): ${stderr}`)));
  });
  return { url, child };
}

async function stopSim(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return exited;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('tickflow sim', () => {
  it('listens on sim.port from the config file, and answers there like the exchange', async () => {
    const port = await freePort();
    const { url, child } = await startSim(['--config', configFile(`sim:\n  port: ${port}\n`)]);
    try {
      expect(new URL(url).port).toBe(String(port));
      const r = await fetch(`http://127.0.0.1:${port}/api/v3/ping`);
      expect(r.status).toBe(200);
    } finally {
      expect(await stopSim(child)).toBe(0);
    }
  }, 60_000);

  it('takes --port over sim.port', async () => {
    const [configured, flag] = [await freePort(), await freePort()];
    const { url, child } = await startSim(['--config', configFile(`sim:\n  port: ${configured}\n`), '--port', String(flag)]);
    try {
      expect(new URL(url).port).toBe(String(flag));
    } finally {
      await stopSim(child);
    }
  }, 60_000);
});

describe('tickflow infra up', () => {
  let kafkaDir: string | undefined;
  afterAll(async () => {
    if (kafkaDir) await stopKafkaAt(kafkaDir).catch(() => undefined);
  }, 60_000);

  it('runs the broker with its controller on infra.kafkaControllerPort', async () => {
    const [port, controllerPort] = [await freePort(), await freePort()];
    const root = mkdtempSync(path.join(tmpdir(), 'tickflow-infra-'));
    dirs.push(root);
    kafkaDir = path.join(root, 'kafka');
    const config = configFile(`infra:\n  kafkaDataDir: ${kafkaDir}\n  kafkaPort: ${port}\n  kafkaControllerPort: ${controllerPort}\n`);
    // DATABASE_URL: this test is about the broker, so no embedded database is started.
    const env = userEnv({ DATABASE_URL: inject('postgresUrl') });

    const up = await tickflow(['infra', 'up', '--config', config], env);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(up.stdout).toContain(`kafka: started`);
    expect(up.stdout).toContain(`127.0.0.1:${port}`);
    expect(readFileSync(path.join(kafkaDir, 'server.properties'), 'utf8')).toContain(`CONTROLLER://127.0.0.1:${controllerPort}`);
    expect(await accepts(controllerPort)).toBe(true);
    expect((await tickflow(['infra', 'status', '--config', config], env)).stdout).toContain(`kafka: running`);

    const down = await tickflow(['infra', 'down', '--config', config], env);
    expect(down.stdout).toContain('kafka: stopped');
    expect(await accepts(controllerPort)).toBe(false);

    // The quorum's voter set names the port the storage was formatted with: another setting on
    // the same folder leaves it there (with a warning) instead of a broker that cannot start.
    const moved = configFile(`infra:\n  kafkaDataDir: ${kafkaDir}\n  kafkaPort: ${port}\n  kafkaControllerPort: ${await freePort()}\n`);
    const again = await tickflow(['infra', 'up', '--config', moved], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`kafka: started`);
    expect(await accepts(controllerPort)).toBe(true);
    expect((await tickflow(['infra', 'down', '--config', moved], env)).stdout).toContain('kafka: stopped');
  }, 300_000);
});
