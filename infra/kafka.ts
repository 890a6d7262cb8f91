/**
 * A real Apache Kafka broker (the 4.x line, KRaft, single node) for the development machines, run
 * from its Maven Central jars with the machine's Java (17+) and Maven; no Docker. See DESIGN.md,
 * "Infrastructure on the development machines". The version is infra/kafka/pom.xml's; other
 * versions (3.9 included) are used through KAFKA_BROKERS.
 *
 *   ensureKafkaJars()  resolves the jars once into <cache>/kafka/<version>-<pom hash>/ (cache:
 *                      TICKFLOW_CACHE_DIR, default <repo>/.cache)
 *   startKafka()       formats storage on first use, starts kafka.Kafka, waits until it serves clients
 *   kafkaStatus() / stopKafkaAt()  look after a detached broker recorded in its data directory
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeKafka } from '../core/kafka.ts';
import { freePort, isAlive } from './process.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { sleep } from '../core/retry.ts';

const log = logger('infra.kafka');

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POM = join(REPO_ROOT, 'infra', 'kafka', 'pom.xml');
const MARKER = '.tickflow-resolved';

export interface KafkaBroker {
  /** Bootstrap addresses for clients, e.g. ['127.0.0.1:39092']. */
  readonly brokers: string[];
  readonly pid: number;
  /** SIGTERM, wait up to ~20 s, then SIGKILL; resolves once the process is gone. */
  stop(): Promise<void>;
}

export interface StartKafkaOptions {
  /** Holds server.properties, the log directory (data/), kafka.log, kafka.pid and kafka.json. */
  dataDir: string;
  /** Client (PLAINTEXT) port; 0 or undefined picks a free one. */
  port?: number;
  /**
   * Controller port used when the storage is formatted; 0 or undefined picks a free one. A
   * formatted dataDir keeps the port it was formatted with (the quorum's voter set names it).
   */
  controllerPort?: number;
  /** Keep running after this process exits (for `tickflow infra up`). */
  detached?: boolean;
  /** Heap in MB, default 512. */
  heapMb?: number;
  /** How long to wait for the broker to serve clients, default 90 s. */
  readyTimeoutMs?: number;
  /**
   * auto.create.topics.enable, default false: tickflow creates its topics with their configured
   * partitions and retention; auto-creation would let a consumer that subscribes first create a
   * 1-partition topic with default retention and hide the mistake.
   */
  autoCreateTopics?: boolean;
}

export interface KafkaStatus {
  running: boolean;
  pid?: number;
  brokers?: string[];
  /** Started by `tickflow infra up` (outlives its starter); false: owned by a running process. */
  detached?: boolean;
}

interface KafkaRecord {
  pid: number;
  brokers: string[];
  port: number;
  controllerPort: number;
  detached: boolean;
  startedAt: string;
}

// ---------------------------------------------------------------------------------------------
// Jars

export function kafkaCacheDir(): string {
  return join(resolve(process.env.TICKFLOW_CACHE_DIR ?? join(REPO_ROOT, '.cache')), 'kafka');
}

let jarsPromise: Promise<string[]> | undefined;

/**
 * Resolves org.apache.kafka:kafka_2.13 and its runtime dependencies (infra/kafka/pom.xml) with
 * Maven into <cache>/kafka/<version>-<pom hash>/, once: later calls, in this or any process, find
 * them there and do not run Maven. A changed pom.xml (another Kafka version) gets a folder of its
 * own; folders of other versions are left alone, since a running broker may still load classes
 * from them (delete them by hand when none runs). Returns the jar paths.
 */
export function ensureKafkaJars(): Promise<string[]> {
  jarsPromise ??= resolveJars().catch((e: unknown) => {
    jarsPromise = undefined;
    throw e;
  });
  return jarsPromise;
}

async function listJars(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jar')).sort();
  return names.map((n) => join(dir, n));
}

async function resolveJars(): Promise<string[]> {
  const pom = await readFile(POM, 'utf8');
  const pomHash = createHash('sha256').update(pom).digest('hex');
  const version = /<kafka\.version>([^<]+)</.exec(pom)?.[1] ?? 'unknown';
  const cache = kafkaCacheDir();
  const libs = join(cache, `${version.replace(/[^A-Za-z0-9._-]/g, '_')}-${pomHash.slice(0, 12)}`);

  const cached = await readFile(join(libs, MARKER), 'utf8').catch(() => '');
  if (cached.trim() === pomHash) {
    const jars = await listJars(libs);
    if (jars.length > 0) return jars;
  }

  log.info({ cache: libs }, `downloading Apache Kafka ${version} jars with Maven (first run only, ~50 MB)...`);
  const started = Date.now();
  await mkdir(cache, { recursive: true });
  const tmp = join(cache, `libs.tmp-${process.pid}-${Date.now()}`);
  try {
    await run(
      'mvn',
      ['-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${tmp}`],
      { timeoutMs: 15 * 60_000, what: 'Maven (resolving the Kafka jars)' },
    );
    if ((await listJars(tmp)).length === 0) throw new TickflowError('INFRA', `Maven put no jars into ${tmp}`);
    await writeFile(join(tmp, MARKER), pomHash + '\n');
    // Another process may have finished first: use its copy (callers may already run from it).
    // A folder without the marker is one an interrupted run left: set aside, not deleted.
    const theirs = await readFile(join(libs, MARKER), 'utf8').catch(() => '');
    if (theirs.trim() !== pomHash) {
      if (existsSync(libs)) await rename(libs, `${libs}.partial-${process.pid}-${Date.now()}`);
      await rename(tmp, libs).catch(async (e: unknown) => {
        const now = await readFile(join(libs, MARKER), 'utf8').catch(() => '');
        if (now.trim() !== pomHash) throw e; // not a lost race
      });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const jars = await listJars(libs);
  const bytes = (await Promise.all(jars.map((j) => stat(j)))).reduce((s, st) => s + st.size, 0);
  log.info(
    { jars: jars.length, mb: Math.round(bytes / 1e6), seconds: (Date.now() - started) / 1000 },
    `Kafka ${version} jars ready in ${libs}`,
  );
  return jars;
}

/** Runs a command to completion; fails with TickflowError('INFRA') carrying the output's tail. */
function run(cmd: string, args: string[], o: { timeoutMs: number; what: string; env?: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: o.timeoutMs, maxBuffer: 64 * 1024 * 1024, env: o.env ?? process.env }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      if (!err) return resolvePromise(stdout);
      const code = (err as NodeJS.ErrnoException).code;
      const reason =
        code === 'ENOENT' ? `'${cmd}' is not installed or not on PATH` : `${cmd} failed (${err.message.split('\n')[0]})`;
      reject(new TickflowError('INFRA', `${o.what}: ${reason}${out.trim() ? `\n${tail(out, 40)}` : ''}`, { cause: err }));
    });
  });
}

function tail(text: string, lines: number): string {
  // eslint-disable-next-line no-control-regex -- strips ANSI colours from Maven's output
  return text.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-lines).join('\n');
}

/** The first errors of a broker log (the cause; the end is mostly shutdown noise), then its tail. */
function logExcerpt(text: string): string {
  const lines = text.trimEnd().split('\n');
  const errors = lines.filter((l) => /\] (ERROR|FATAL) |^\S*(Exception|Error)\b|^Caused by:/.test(l)).slice(0, 8);
  const last = lines.slice(-15);
  return [...errors, ...(errors.length ? ['...'] : []), ...last].map((l) => (l.length > 400 ? l.slice(0, 400) + '…' : l)).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Start / stop

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

function paths(dataDir: string) {
  const dir = resolve(dataDir);
  return {
    dir,
    props: join(dir, 'server.properties'),
    log4j: join(dir, 'log4j2.properties'),
    logDir: join(dir, 'data'),
    meta: join(dir, 'data', 'meta.properties'),
    brokerLog: join(dir, 'kafka.log'),
    pidFile: join(dir, 'kafka.pid'),
    jsonFile: join(dir, 'kafka.json'),
  };
}


function serverProperties(p: ReturnType<typeof paths>, port: number, controllerPort: number, autoCreate: boolean): string {
  return [
    '# Written by tickflow infra/kafka.ts on every start; edits are overwritten.',
    'process.roles=broker,controller',
    'node.id=1',
    // KIP-853 dynamic quorum, formatted with `StorageTool format --standalone`.
    `controller.quorum.bootstrap.servers=127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${p.logDir}`,
    'num.partitions=1',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    `auto.create.topics.enable=${autoCreate}`,
    'delete.topic.enable=true',
    // A small machine: fewer threads, and a compaction buffer that fits a 512 MB heap.
    'num.network.threads=2',
    'num.io.threads=4',
    'log.cleaner.dedupe.buffer.size=33554432',
    '',
  ].join('\n');
}

/**
 * log4j2 (Kafka 4 logs through it; without a configuration it prints `Reconfiguration failed: No
 * configuration found` and only errors): everything to stdout, which goes to kafka.log.
 */
function log4j2Properties(level: 'INFO' | 'WARN'): string {
  return [
    '# Written by tickflow infra/kafka.ts on every start; edits are overwritten.',
    'status = warn',
    'name = tickflow-kafka',
    // The broker stops its own logging last; log4j2's hook would end it early (and complain).
    'shutdownHook = disable',
    'appender.stdout.type = Console',
    'appender.stdout.name = STDOUT',
    'appender.stdout.layout.type = PatternLayout',
    'appender.stdout.layout.pattern = [%d] %p %m (%c)%n',
    `rootLogger.level = ${level}`,
    'rootLogger.appenderRef.stdout.ref = STDOUT',
    'logger.request.name = kafka.request.logger',
    'logger.request.level = WARN',
    'logger.stateChange.name = state.change.logger',
    'logger.stateChange.level = WARN',
    '',
  ].join('\n');
}

function jvmArgs(jars: string[], p: ReturnType<typeof paths>, heapMb: number, log4j = p.log4j): string[] {
  return [
    `-Xmx${heapMb}m`,
    `-Xms${Math.min(heapMb, 256)}m`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-XX:+ExitOnOutOfMemoryError',
    '-XX:-UsePerfData', // no /tmp/hsperfdata file
    '-Xshare:auto', // class-data sharing for the JDK classes: faster start
    '-Djava.awt.headless=true',
    '-Djava.net.preferIPv4Stack=true',
    `-Dlog4j2.configurationFile=${log4j}`,
    `-Dkafka.logs.dir=${p.dir}`,
    '-cp',
    jars.join(':'),
  ];
}

/** The controller port of a formatted data directory, from the server.properties it was run with. */
async function previousControllerPort(p: ReturnType<typeof paths>): Promise<number | undefined> {
  const props = await readFile(p.props, 'utf8').catch(() => '');
  const m = /^controller\.quorum\.bootstrap\.servers=[^:\n]+:(\d+)\s*$/m.exec(props);
  return m ? Number(m[1]) : undefined;
}

async function formatIfNeeded(jars: string[], p: ReturnType<typeof paths>, heapMb: number): Promise<void> {
  if (existsSync(p.meta)) return;
  // The tool logs its whole configuration at INFO; WARN is enough here.
  const toolLog4j = join(p.dir, 'log4j2-tools.properties');
  await writeFile(toolLog4j, log4j2Properties('WARN'));
  const quiet = [...jvmArgs(jars, p, Math.min(heapMb, 256), toolLog4j), 'kafka.tools.StorageTool'];
  const what = 'Kafka storage format (kafka.tools.StorageTool)';
  const clusterId = (await run(javaBin(), [...quiet, 'random-uuid'], { timeoutMs: 60_000, what })).trim().split('\n').pop()!.trim();
  if (!/^[A-Za-z0-9_-]{22}$/.test(clusterId)) throw new TickflowError('INFRA', `${what}: unexpected cluster id '${clusterId}'`);
  await run(javaBin(), [...quiet, 'format', '-t', clusterId, '-c', p.props, '--standalone'], { timeoutMs: 60_000, what });
  log.info({ dataDir: p.dir, clusterId }, 'formatted Kafka storage');
}

/**
 * Starts a single-node KRaft broker (broker+controller) on 127.0.0.1 with its data in
 * opts.dataDir, formatting the storage on first use (data survive restarts), and resolves
 * once it answers clients. Fails with TickflowError('INFRA') with the tail of kafka.log if
 * the JVM exits early or the broker is not ready within the timeout.
 */
export async function startKafka(opts: StartKafkaOptions): Promise<KafkaBroker> {
  const p = paths(opts.dataDir);
  for (let attempt = 1; ; attempt++) {
    const fresh = !existsSync(p.meta);
    try {
      return await startOnce(opts);
    } catch (e) {
      // A port picked here was free a moment before the JVM bound it, and another process took it
      // in between (busy test machines). Pick again when that port was ours to choose: the client
      // port always; the controller port only on storage formatted by this call (the quorum's
      // voter set names it), which is then formatted anew.
      const bind = /failed to bind to [^\s:]+:(\d+)/.exec(messageOf(e));
      if (!bind || attempt >= 3) throw e;
      const busy = Number(bind[1]);
      const controller = await previousControllerPort(p);
      if (busy === controller) {
        if (opts.controllerPort || !fresh) throw e;
        await rm(p.logDir, { recursive: true, force: true });
      } else if (opts.port) throw e;
      log.warn({ port: busy, attempt }, 'a port picked for Kafka was taken meanwhile; picking again');
    }
  }
}

async function startOnce(opts: StartKafkaOptions): Promise<KafkaBroker> {
  const started = Date.now();
  const p = paths(opts.dataDir);
  const heapMb = opts.heapMb ?? 512;
  const detached = opts.detached ?? false;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;

  const current = await kafkaStatus(p.dir);
  if (current.running) {
    throw new TickflowError(
      'INFRA',
      `a Kafka broker (pid ${current.pid}, ${current.brokers?.join(',')}) is already running on ${p.dir}; stop it first`,
    );
  }

  const jars = await ensureKafkaJars();
  await mkdir(p.dir, { recursive: true });

  // The controller's endpoint is part of the quorum's voter set written at format time: keep it.
  const formatted = existsSync(p.meta);
  const previous = formatted ? await previousControllerPort(p) : undefined;
  if (previous && opts.controllerPort && opts.controllerPort !== previous) {
    log.warn(
      { dataDir: p.dir, controllerPort: previous, configured: opts.controllerPort },
      `Kafka's storage in ${p.dir} was formatted with controller port ${previous}, which it keeps; remove the folder (its data too) to move it to ${opts.controllerPort}`,
    );
  }
  const controllerPort = previous || opts.controllerPort || (await freePort());
  let port = opts.port || (await freePort());
  while (port === controllerPort) port = await freePort();

  await writeFile(p.props, serverProperties(p, port, controllerPort, opts.autoCreateTopics ?? false));
  await writeFile(p.log4j, log4j2Properties('INFO'));
  await formatIfNeeded(jars, p, heapMb);

  if (existsSync(p.brokerLog)) await rename(p.brokerLog, p.brokerLog + '.1');
  const fd = openSync(p.brokerLog, 'a');
  let child: ChildProcess;
  try {
    child = spawn(javaBin(), [...jvmArgs(jars, p, heapMb), 'kafka.Kafka', p.props], {
      cwd: p.dir,
      stdio: ['ignore', fd, fd],
      // Always its own process group: a terminal's Ctrl-C reaches only the Node process, which
      // stops its parts first (the gateways flush into this broker) and the broker last.
      detached: true,
    });
  } finally {
    closeSync(fd);
  }

  let exited: string | undefined;
  const exitWaiters: Array<() => void> = [];
  let onGone: (why: string) => void = () => undefined;
  const exit = new Promise<string>((r) => (onGone = r));
  const gone = (why: string) => {
    exited ??= why;
    onGone(exited);
    exitWaiters.splice(0).forEach((w) => w());
  };
  child.on('error', (e) => {
    gone((e as NodeJS.ErrnoException).code === 'ENOENT' ? `'${javaBin()}' could not be run (is Java installed?)` : messageOf(e));
  });
  child.on('exit', (code, signal) => gone(signal ? `was killed by ${signal}` : `exited with code ${code}`));
  await new Promise((r) => setImmediate(r)); // let a spawn 'error' (ENOENT) surface
  const pid = child.pid;
  if (pid === undefined || exited) {
    throw new TickflowError('INFRA', `could not start Kafka: ${exited ?? 'no pid'}`);
  }
  const brokers = [`127.0.0.1:${port}`];
  const record: KafkaRecord = { pid, brokers, port, controllerPort, detached, startedAt: new Date().toISOString() };
  await writeFile(p.pidFile, `${pid}\n`);
  await writeFile(p.jsonFile, JSON.stringify(record, null, 2) + '\n');

  // Never leave an attached broker behind this process.
  const onExit = () => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    // If nobody else handles the signal, keep its default meaning: terminate, broker included.
    // Otherwise the handler's owner stops the broker in its own order (stop()); 'exit' is the
    // backstop.
    if (process.listenerCount(sig) === 1) {
      onExit();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    }
  };
  if (detached) {
    child.unref();
  } else {
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      process.removeListener('exit', onExit);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (!exited) await terminate(pid, () => exited !== undefined, (w) => exitWaiters.push(w));
      await removeRecord(p, pid);
      log.info({ pid, dataDir: p.dir }, 'Kafka stopped');
    })());

  try {
    await waitReady(brokers, readyTimeoutMs, exit);
  } catch (e) {
    await stop().catch(() => undefined);
    const why = exited ? `the broker ${exited}` : messageOf(e);
    const logText = await readFile(p.brokerLog, 'utf8').catch(() => '');
    throw new TickflowError('INFRA', `Kafka did not start (${why}); log ${p.brokerLog}:\n${logExcerpt(logText)}`, { cause: e });
  }
  log.info({ brokers, pid, detached, seconds: (Date.now() - started) / 1000, dataDir: p.dir }, 'Kafka ready');
  return { brokers, pid, stop };
}

async function waitReady(brokers: string[], timeoutMs: number, exit: Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | undefined;
  const died = exit.then((why) => {
    exited = why;
    throw new TickflowError('INFRA', `the broker ${why}`);
  });
  died.catch(() => undefined);
  let last: unknown;
  while (Date.now() < deadline) {
    if (exited) throw new TickflowError('INFRA', `the broker ${exited}`);
    try {
      await Promise.race([probeKafka(brokers, Math.min(5_000, Math.max(500, deadline - Date.now()))), died]);
      return;
    } catch (e) {
      if (exited) throw e;
      last = e;
    }
    await Promise.race([sleep(250), died.catch(() => undefined)]);
  }
  throw new TickflowError('INFRA', `not ready after ${timeoutMs} ms: ${messageOf(last)}`, { cause: last });
}

// ---------------------------------------------------------------------------------------------
// Processes


/** Whether pid is a kafka.Kafka JVM started with this data directory's server.properties. */
function isOurBroker(pid: number, propsPath: string): boolean {
  if (!isAlive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /(^|\/)java$/.test(argv[0] ?? '') && argv.includes('kafka.Kafka') && argv.includes(propsPath);
  } catch {
    return false;
  }
}

async function terminate(pid: number, gone: () => boolean, onGone?: (w: () => void) => void): Promise<void> {
  const isGone = () => gone() || !isAlive(pid);
  const waitGone = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (!isGone() && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        onGone?.(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return isGone();
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitGone(20_000)) return;
  log.warn({ pid }, 'Kafka did not stop within 20 s after SIGTERM; sending SIGKILL');
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  if (!(await waitGone(10_000))) throw new TickflowError('INFRA', `Kafka (pid ${pid}) survived SIGKILL`);
}

async function readRecord(p: ReturnType<typeof paths>): Promise<Partial<KafkaRecord> | undefined> {
  const json = await readFile(p.jsonFile, 'utf8').then((t) => JSON.parse(t) as Partial<KafkaRecord>, () => undefined);
  const pidText = await readFile(p.pidFile, 'utf8').catch(() => undefined);
  const pid = pidText ? Number(pidText.trim()) : json?.pid;
  if (!pid || !Number.isInteger(pid)) return undefined;
  return { ...json, pid };
}

async function removeRecord(p: ReturnType<typeof paths>, pid: number): Promise<void> {
  const rec = await readRecord(p);
  if (rec && rec.pid !== pid) return; // a newer broker's record
  await rm(p.pidFile, { force: true });
  await rm(p.jsonFile, { force: true });
}

/** Whether a broker recorded in dataDir (kafka.pid / kafka.json) is running. */
export async function kafkaStatus(dataDir: string): Promise<KafkaStatus> {
  const p = paths(dataDir);
  const rec = await readRecord(p);
  if (!rec?.pid || !isOurBroker(rec.pid, p.props)) return { running: false };
  return { running: true, pid: rec.pid, ...(rec.brokers ? { brokers: rec.brokers } : {}), ...(rec.detached !== undefined ? { detached: rec.detached } : {}) };
}

/** Stops the broker recorded in dataDir (typically a detached one); false if none was running. */
export async function stopKafkaAt(dataDir: string): Promise<boolean> {
  const p = paths(dataDir);
  const rec = await readRecord(p);
  if (!rec?.pid || !isOurBroker(rec.pid, p.props)) {
    if (rec?.pid) await removeRecord(p, rec.pid);
    return false;
  }
  await terminate(rec.pid, () => false);
  await removeRecord(p, rec.pid);
  log.info({ pid: rec.pid, dataDir: p.dir }, 'Kafka stopped');
  return true;
}
