/**
 * A throwaway PostgreSQL server for tests, from Debian's `postgresql` package: the
 * multi-connection database that survives killed clients (crash tests, several sink instances,
 * outages). No TimescaleDB here; the migrations feature-detect it.
 *
 * Layout: one temp dir (under the OS temp dir, mode 0700) holding `data/` (the cluster),
 * `sock/` (the unix socket directory; clients use TCP on 127.0.0.1) and `postgres.log`. As root
 * (initdb and postgres refuse to run as root) everything runs as the `postgres` user through
 * `runuser`, and the temp dir is owned by it.
 *
 * Lifecycle:
 * - `stop()` shuts down (`-m fast`) and deletes what this module created: the final stop.
 * - `stop({ keepData: true })` shuts down and keeps everything, so `start()` brings the same
 *   data back on the same port: an outage.
 * - `kill()` is an immediate shutdown (`-m immediate`, no checkpoint: like a crash); data is
 *   kept and `start()` recovers it from the WAL.
 * A server still running when the Node process exits (or gets SIGINT/SIGTERM/SIGHUP) is shut
 * down immediately and its temp dir removed.
 * fsync and full_page_writes are off: fine for a throwaway cluster, whose crash tests kill
 * clients or the server, not the machine. synchronous_commit stays on: with it off, an immediate
 * shutdown (`kill()`) lost transactions committed just before it, which outage tests would read
 * as lost data; with fsync off it costs next to nothing.
 */
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { TickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { freePort, isAlive } from './process.ts';
import { sleep } from '../core/retry.ts';

const log = logger('postgres-server');

export interface PostgresServerOptions {
  /** Cluster directory; initdb'd when empty or missing, kept on stop. Default: a fresh temp dir. */
  dataDir?: string;
  /** TCP port on 127.0.0.1; default: a free one. */
  port?: number;
}

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust auth, no password). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** The postmaster's pid, or 0 while stopped. */
  readonly pid: number;
  /** Fast shutdown; then removes the temp dirs this module created, unless `keepData`. */
  stop(opts?: { keepData?: boolean }): Promise<void>;
  /** Immediate shutdown (no checkpoint, like a crash); data kept for `start()`. */
  kill(): Promise<void>;
  /** Starts again after `stop({ keepData: true })` or `kill()`: same data, same port. */
  start(): Promise<void>;
  /** Creates a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
}

interface Binaries {
  initdb: string;
  pgCtl: string;
  version: string;
}

function findBinaries(): Binaries {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const version = versions[0];
  if (version === undefined) {
    throw new TickflowError(
      'INFRA',
      `no PostgreSQL server binaries under ${root}/<version>/bin; install them with: apt-get install -y postgresql`,
    );
  }
  const bin = join(root, version, 'bin');
  for (const b of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(bin, b))) {
      throw new TickflowError('INFRA', `${join(bin, b)} is missing; reinstall with: apt-get install -y postgresql`);
    }
  }
  return { initdb: join(bin, 'initdb'), pgCtl: join(bin, 'pg_ctl'), version };
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) {
    throw new TickflowError('INFRA', 'running as root but there is no postgres user; install it with: apt-get install -y postgresql');
  }
  return { uid: Number(uid), gid: Number(gid) };
}

/** The command line, as the postgres user when we are root. */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

/**
 * Runs to exit (not to the close of its pipes: pg_ctl leaves a daemon behind) and returns the
 * output; a non-zero exit throws INFRA with the output and `extra` (e.g. the server log).
 */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number, extra?: () => string): Promise<string> {
  const [file, argv] = asServerUser(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new TickflowError('INFRA', `${cmd} could not run: ${messageOf(err)}`, { cause: err }));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      if (code === 0) return resolve(out);
      const more = extra?.() ?? '';
      reject(
        new TickflowError(
          'INFRA',
          `${[cmd, ...args].join(' ')} failed (${signal ?? `exit ${code}`}): ${out.trim()}${more ? `\n${more}` : ''}`,
        ),
      );
    });
  });
}


function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function readPid(dataDir: string): number {
  try {
    return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || 0;
  } catch {
    return 0;
  }
}


function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- what to clean up when the process goes away without stop() ----
interface Live {
  pid: () => number;
  removeOnExit: string[];
}
const live = new Set<Live>();
let hooksInstalled = false;

function emergencyCleanup(): void {
  for (const s of live) {
    const pid = s.pid();
    if (isAlive(pid)) {
      try {
        process.kill(pid, 'SIGQUIT'); // postmaster: immediate shutdown
      } catch {
        // gone
      }
      for (let waited = 0; isAlive(pid) && waited < 5000; waited += 50) sleepSync(50);
      if (isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const dir of s.removeOnExit) rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', emergencyCleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      emergencyCleanup();
      // Nobody else handles it: keep the default behaviour (die of the signal).
      if (process.listenerCount(sig) === 1) {
        process.off(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

export async function startPostgresServer(opts: PostgresServerOptions = {}): Promise<PostgresServer> {
  const bins = findBinaries();
  const started = Date.now();
  const owner = isRoot() ? postgresUser() : undefined;
  const own = (dir: string): void => {
    if (owner) chownSync(dir, owner.uid, owner.gid);
  };

  // The run dir (socket, log; the data too unless given) is ours to delete on the final stop.
  const runDir = mkdtempSync(join(tmpdir(), 'tickflow-pg-'));
  own(runDir); // mkdtemp makes it 0700
  const sockDir = join(runDir, 'sock');
  mkdirSync(sockDir, { mode: 0o700 });
  own(sockDir);
  const logFile = join(runDir, 'postgres.log');
  const dataDir = opts.dataDir ?? join(runDir, 'data');
  const ownsData = opts.dataDir === undefined;
  const removeOnExit = [runDir];

  const handle: Live = { pid: () => pid, removeOnExit };
  let pid = 0;
  let port = opts.port ?? 0;

  const fail = (err: unknown): never => {
    rmSync(runDir, { recursive: true, force: true });
    throw err;
  };

  try {
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      if (!ownsData) {
        mkdirSync(dataDir, { recursive: true, mode: 0o700 });
        own(dataDir);
      }
      const t = Date.now();
      await run(
        bins.initdb,
        ['-D', dataDir, '--auth=trust', '-U', 'postgres', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
        runDir,
        120_000,
      );
      log.debug({ ms: Date.now() - t, dataDir }, 'initdb done');
    }
  } catch (err) {
    fail(err);
  }

  const pgCtlStart = async (): Promise<void> => {
    const o = [
      `-p ${port}`,
      `-k ${sockDir}`,
      '-c listen_addresses=127.0.0.1',
      '-c fsync=off',
      '-c full_page_writes=off',
      '-c max_connections=200',
    ].join(' ');
    await run(bins.pgCtl, ['-D', dataDir, '-o', o, '-l', logFile, '-w', '-t', '60', 'start'], runDir, 90_000, () =>
      tail(logFile),
    );
    pid = readPid(dataDir);
    live.add(handle);
    installHooks();
    await waitAcceptingConnections();
  };

  const url = (db = 'postgres'): string => `postgres://postgres@127.0.0.1:${port}/${db}`;

  const waitAcceptingConnections = async (): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 2000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('select 1');
        await client.end();
        return;
      } catch (err) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline) {
          throw new TickflowError('INFRA', `PostgreSQL on port ${port} does not accept connections: ${messageOf(err)}\n${tail(logFile)}`, {
            cause: err,
          });
        }
        await sleep(100);
      }
    }
  };

  const pgCtlStop = async (mode: 'fast' | 'immediate'): Promise<void> => {
    if (pid === 0 && !existsSync(join(dataDir, 'postmaster.pid'))) return;
    await run(bins.pgCtl, ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop'], runDir, 90_000, () => tail(logFile));
    pid = 0;
  };

  try {
    if (opts.port) {
      await pgCtlStart();
    } else {
      // A free port can be taken between the probe and the bind: try a few.
      for (let attempt = 1; ; attempt++) {
        port = await freePort();
        try {
          await pgCtlStart();
          break;
        } catch (err) {
          if (attempt >= 3 || !/could not bind|address already in use/i.test(tail(logFile, 10))) throw err;
        }
      }
    }
  } catch (err) {
    if (isAlive(pid)) await pgCtlStop('immediate').catch(() => undefined);
    live.delete(handle);
    fail(err);
  }
  log.info({ url: url(), version: bins.version, ms: Date.now() - started }, 'PostgreSQL server started');

  let removed = false;
  const server: PostgresServer = {
    get url() {
      return url();
    },
    port,
    dataDir,
    get pid() {
      return pid;
    },
    async stop(stopOpts = {}) {
      if (removed) return;
      await pgCtlStop('fast');
      if (stopOpts.keepData) return;
      live.delete(handle);
      removed = true;
      rmSync(runDir, { recursive: true, force: true }); // holds the data dir unless one was given
      log.info({ port }, 'PostgreSQL server stopped and removed');
    },
    async kill() {
      if (removed) return;
      await pgCtlStop('immediate');
    },
    async start() {
      if (removed) throw new TickflowError('INFRA', 'PostgreSQL server was stopped for good (stop() without keepData)');
      if (pid !== 0 && isAlive(pid)) return;
      await pgCtlStart();
    },
    async createDatabase(name: string) {
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        await client.query(`create database ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
  };
  return server;
}
