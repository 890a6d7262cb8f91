/**
 * Apicurio Registry 3.x, a Confluent-compatible schema registry, for the tests that run tickflow
 * with SCHEMA_REGISTRY_URL (like the local Kafka broker: fetched through Maven, run here):
 *
 *   ensureRegistryApp()  resolves io.apicurio:apicurio-registry-app:<version>:tar.gz:all
 *                        (infra/registry/pom.xml) with Maven and unpacks it once into
 *                        <cache>/registry/app (cache: TICKFLOW_CACHE_DIR, default <repo>/.cache)
 *   findJava21()         the newest JDK >= 21 under /usr/lib/jvm (or JAVA_HOME), by its release file
 *   startRegistry()      the Quarkus application on a free 127.0.0.1 port (its management
 *                        interface on another, not 0.0.0.0:9000), in-memory storage (H2), resolves
 *                        once the Confluent API answers at <url> = http://127.0.0.1:<port>/apis/ccompat/v7
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { sleep } from '../core/retry.ts';
import { freePort, isAlive } from './process.ts';

const log = logger('infra.registry');

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POM = join(REPO_ROOT, 'infra', 'registry', 'pom.xml');
const MARKER = '.tickflow-resolved';
/** The Confluent-compatible API of Apicurio Registry. */
export const CCOMPAT_PATH = '/apis/ccompat/v7';

export function registryCacheDir(): string {
  return join(resolve(process.env.TICKFLOW_CACHE_DIR ?? join(REPO_ROOT, '.cache')), 'registry');
}

function run(cmd: string, args: string[], o: { timeoutMs: number; what: string }): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: o.timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolvePromise(stdout);
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `'${cmd}' is not installed or not on PATH` : `${cmd} failed (${err.message.split('\n')[0]})`;
      // eslint-disable-next-line no-control-regex -- strips ANSI colours from Maven's output
      const out = `${stdout}${stderr}`.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-30).join('\n');
      reject(new TickflowError('INFRA', `${o.what}: ${reason}${out ? `\n${out}` : ''}`, { cause: err }));
    });
  });
}

let appPromise: Promise<string> | undefined;

/**
 * The unpacked application folder (holding quarkus-run.jar), fetched with Maven and unpacked on
 * the first call in any process; later calls find it (until pom.xml changes).
 */
export function ensureRegistryApp(): Promise<string> {
  appPromise ??= resolveApp().catch((e: unknown) => {
    appPromise = undefined;
    throw e;
  });
  return appPromise;
}

async function resolveApp(): Promise<string> {
  const pom = await readFile(POM, 'utf8');
  const pomHash = createHash('sha256').update(pom).digest('hex');
  const cache = registryCacheDir();
  const app = join(cache, 'app');
  const cached = await readFile(join(app, MARKER), 'utf8').catch(() => '');
  if (cached.trim() === pomHash && existsSync(join(app, 'quarkus-run.jar'))) return app;

  const version = /<apicurio\.version>([^<]+)</.exec(pom)?.[1] ?? '?';
  log.info({ cache: app }, `downloading Apicurio Registry ${version} with Maven (first run only, ~160 MB)...`);
  const started = Date.now();
  await mkdir(cache, { recursive: true });
  const tmp = join(cache, `app.tmp-${process.pid}-${Date.now()}`);
  try {
    await mkdir(tmp, { recursive: true });
    const what = 'Maven (resolving Apicurio Registry)';
    await run('mvn', ['-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies', '-DincludeTypes=tar.gz', `-DoutputDirectory=${tmp}`], { timeoutMs: 20 * 60_000, what });
    const archive = (await readdir(tmp)).find((n) => n.endsWith('.tar.gz'));
    if (!archive) throw new TickflowError('INFRA', `${what}: no .tar.gz in ${tmp}`);
    await run('tar', ['-xzf', join(tmp, archive), '-C', tmp], { timeoutMs: 5 * 60_000, what: `unpacking ${archive}` });
    await rm(join(tmp, archive), { force: true });
    if (!existsSync(join(tmp, 'quarkus-run.jar'))) throw new TickflowError('INFRA', `${archive} has no quarkus-run.jar at its top`);
    await writeFile(join(tmp, MARKER), pomHash + '\n');
    // Another process may have finished first: keep its copy (it may be running from it).
    const theirs = await readFile(join(app, MARKER), 'utf8').catch(() => '');
    if (theirs.trim() !== pomHash) {
      const old = `${app}.old-${process.pid}-${Date.now()}`;
      if (existsSync(app)) await rename(app, old);
      await rename(tmp, app);
      await rm(old, { recursive: true, force: true });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  log.info({ seconds: (Date.now() - started) / 1000 }, `Apicurio Registry ${version} ready in ${app}`);
  return app;
}

/** The major version of a JDK folder, from its `release` file (JAVA_VERSION="25.0.3"); undefined if none. */
export function jdkMajor(home: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(home, 'release'), 'utf8');
  } catch {
    return undefined;
  }
  const v = /^JAVA_VERSION="?([0-9._]+)/m.exec(text)?.[1];
  if (!v) return undefined;
  const parts = v.split(/[._]/).map(Number);
  return parts[0] === 1 ? parts[1] : parts[0];
}

/**
 * The `java` of the newest JDK >= `min` among JAVA_HOME and the folders of /usr/lib/jvm (read
 * from their release files). Apicurio Registry 3.x (Quarkus 3.33) needs Java 21.
 */
export function findJava21(min = 21, roots: readonly string[] = ['/usr/lib/jvm']): string {
  const homes = new Set<string>();
  if (process.env.JAVA_HOME) homes.add(process.env.JAVA_HOME);
  for (const root of roots) {
    let names: string[] = [];
    try {
      names = readdirSync(root);
    } catch {
      /* no such folder */
    }
    for (const n of names) {
      try {
        homes.add(realpathSync(join(root, n)));
      } catch {
        /* dangling link */
      }
    }
  }
  const found = [...homes]
    .map((home) => ({ home, major: jdkMajor(home) }))
    .filter((j): j is { home: string; major: number } => j.major !== undefined && existsSync(join(j.home, 'bin', 'java')));
  const best = found.filter((j) => j.major >= min).sort((a, b) => b.major - a.major)[0];
  if (!best) {
    const seen = found.map((j) => `${j.home} (${j.major})`).join(', ') || 'none';
    throw new TickflowError('INFRA', `Apicurio Registry needs Java ${min} or newer: no such JDK in JAVA_HOME or ${roots.join(', ')} (found: ${seen}); install one (e.g. a Temurin ${min}+ JDK)`);
  }
  return join(best.home, 'bin', 'java');
}

export interface StartRegistryOptions {
  /** HTTP port on 127.0.0.1; 0 or undefined picks a free one. */
  readonly port?: number;
  /** Holds registry.log; default a new folder under the system's temporary folder. */
  readonly dir?: string;
  /** Heap in MB, default 384. */
  readonly heapMb?: number;
  /** How long to wait for the API, default 120 s. */
  readonly readyTimeoutMs?: number;
}

export interface RegistryServer {
  /** The Confluent-compatible API, for SCHEMA_REGISTRY_URL: http://127.0.0.1:<port>/apis/ccompat/v7 */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly version: string;
  /** From spawn to the API answering, ms. */
  readonly startupMs: number;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after 15 s; resolves once the process is gone (its folder removed, unless `dir` was given). */
  stop(): Promise<void>;
}

/** Starts Apicurio Registry (fetching it first if needed) and waits until its Confluent API answers. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RegistryServer> {
  const app = await ensureRegistryApp();
  const java = findJava21();
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tickflow-registry-'));
  await mkdir(dir, { recursive: true });
  const port = opts.port || (await freePort());
  let mgmtPort = await freePort();
  while (mgmtPort === port) mgmtPort = await freePort();
  const heapMb = opts.heapMb ?? 384;
  const version = /apicurio-registry-app-([^/]+)\.jar$/.exec(readdirSync(join(app, 'app')).find((n) => n.endsWith('.jar')) ?? '')?.[1] ?? '?';
  const props: Record<string, string | number> = {
    'quarkus.http.host': '127.0.0.1',
    'quarkus.http.port': port,
    // The management interface (health, metrics) listens on 0.0.0.0:9000 by default.
    'quarkus.management.host': '127.0.0.1',
    'quarkus.management.port': mgmtPort,
    // In-memory storage (H2), with a small connection pool.
    'apicurio.storage.kind': 'sql',
    'apicurio.storage.sql.kind': 'h2',
    'apicurio.datasource.jdbc.initial-size': 2,
    'apicurio.datasource.jdbc.min-size': 2,
    'apicurio.datasource.jdbc.max-size': 10,
    'quarkus.otel.sdk.disabled': 'true',
    'quarkus.http.access-log.enabled': 'false',
  };
  const args = [
    `-Xmx${heapMb}m`,
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1', // starts faster; a test registry does little work
    '-XX:-UsePerfData',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.net.preferIPv4Stack=true',
    `-Djava.io.tmpdir=${dir}`,
    ...Object.entries(props).map(([k, v]) => `-D${k}=${v}`),
    '-jar',
    join(app, 'quarkus-run.jar'),
  ];
  const logFile = join(dir, 'registry.log');
  const fd = openSync(logFile, 'a');
  const t0 = Date.now();
  let child: ChildProcess;
  try {
    // Its own process group: a terminal's Ctrl-C reaches the Node process, which stops it.
    child = spawn(java, args, { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
  let exited: string | undefined;
  child.on('error', (e) => (exited ??= messageOf(e)));
  child.on('exit', (code, signal) => (exited ??= signal ? `was killed by ${signal}` : `exited with code ${code}`));
  await new Promise((r) => setImmediate(r));
  const pid = child.pid;
  if (pid === undefined || exited) throw new TickflowError('INFRA', `could not start Apicurio Registry with ${java}: ${exited ?? 'no pid'}`);
  const onExit = () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  process.on('exit', onExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      process.removeListener('exit', onExit);
      const gone = () => exited !== undefined || !isAlive(pid);
      if (gone()) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      for (let deadline = Date.now() + 15_000; !gone() && Date.now() < deadline; ) await sleep(100);
      if (!gone()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        for (let deadline = Date.now() + 5_000; !gone() && Date.now() < deadline; ) await sleep(100);
      }
      if (ownDir) await rm(dir, { recursive: true, force: true });
    })());

  const url = `http://127.0.0.1:${port}${CCOMPAT_PATH}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
  let last = '';
  for (;;) {
    if (exited) break;
    try {
      const res = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) break;
      last = `answered ${res.status}`;
    } catch (e) {
      last = messageOf(e);
    }
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  if (exited || Date.now() > deadline) {
    const text = await readFile(logFile, 'utf8').catch(() => '');
    await stop();
    const tail = text.trimEnd().split('\n').slice(-20).join('\n');
    throw new TickflowError('INFRA', `Apicurio Registry did not start (${exited ? `the JVM ${exited}` : `not answering at ${url}: ${last}`}); log ${logFile}:\n${tail}`);
  }
  const startupMs = Date.now() - t0;
  log.info({ url, pid, version, seconds: startupMs / 1000 }, 'Apicurio Registry ready');
  return { url, port, pid, version, startupMs, logFile, stop };
}
