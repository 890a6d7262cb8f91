/**
 * The embedded TimescaleDB as a background server, for `tickflow infra up|down`: a detached
 * `tickflow infra serve-db` process on the data folder, which records itself in
 * `<dataDir>.server.json` (infra/database.ts) so later commands connect to it instead of opening
 * the folder themselves. Its output goes to `<dataDir>.log`.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, resolveDir, type SharedConfig } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { sleep } from '../core/retry.ts';
import { embeddedServerStatus, type EmbeddedServerRecord } from './database.ts';
import { isAlive } from './process.ts';

/**
 * Starts `tickflow infra serve-db` detached (same config file and environment) and resolves with
 * its record once it serves, within 120 s; fails with INFRA naming the log when it exits first.
 */
export async function spawnDbServer(config: Pick<SharedConfig, 'database' | 'source'>): Promise<EmbeddedServerRecord> {
  const dbDir = resolveDir(config.database.dataDir);
  mkdirSync(path.dirname(dbDir), { recursive: true });
  const logFd = openSync(`${dbDir}.log`, 'a');
  const args = [path.join(REPO_ROOT, 'bin', 'tickflow.js'), 'infra', 'serve-db', ...(config.source ? ['--config', config.source] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd], env: process.env });
  child.unref();
  const deadline = Date.now() + 120_000;
  let started = embeddedServerStatus(dbDir);
  while (!started) {
    if (child.exitCode !== null || !isAlive(child.pid!)) throw new TickflowError('INFRA', `the embedded TimescaleDB server exited at start; see ${dbDir}.log`);
    if (Date.now() > deadline) throw new TickflowError('INFRA', `the embedded TimescaleDB server did not start within 120 s; see ${dbDir}.log`);
    await sleep(200);
    started = embeddedServerStatus(dbDir);
  }
  return started;
}

/** Stops the background server of this data folder (SIGTERM, SIGKILL after 30 s); false if none ran. */
export async function stopDbServer(dataDir: string): Promise<boolean> {
  const rec = embeddedServerStatus(dataDir);
  if (!rec) return false;
  process.kill(rec.pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (isAlive(rec.pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(rec.pid)) process.kill(rec.pid, 'SIGKILL');
  return true;
}
