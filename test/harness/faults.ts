/**
 * The fault suite's world (test/faults/): every part a separate process, faults injected into
 * each. Per scenario, a `Rig`:
 * - the sim (in the test process): its `emitted` is the truth trades are counted against; its
 *   controls drop websockets, pause streams, refuse REST;
 * - its own Kafka broker (infra/kafka.ts), killable with -9 and restartable on the same port and
 *   data dir;
 * - its own database: a PostgreSQL server (infra/postgres-server.ts; stop/start, and
 *   pg_terminate_backend for killing connections), or the embedded TimescaleDB served by
 *   `tickflow infra up` (one client at a time: counted only while the sink is not connected);
 * - `tickflow gateway` and `tickflow sink` child processes on a YAML config of their own,
 *   with KAFKA_BROKERS and DATABASE_URL in the environment, killed and restarted at will.
 *
 * Counting (`account()`): the window is, per symbol, from the first trade stored after warm-up
 * to the last trade the sim emitted when the window is closed. `emitted` = trades the sim
 * printed in the window; `stored` = distinct trades of the window in `trades`; `lost` = emitted
 * but not stored; `doubled` = committed insert attempts beyond the first per (exchange, symbol,
 * id), counted by a BEFORE INSERT trigger into `trade_attempts` (it fires for rows that
 * `on conflict do nothing` then skips, and its count rolls back with a failed transaction): a
 * batch the sink wrote twice, or a trade that reached Kafka twice, shows even though the primary
 * key keeps the table free of duplicate rows. `doubledInKafka` = trade records read back from the
 * topic beyond one per id: what a live consumer of the topic (/v1/stream) would see twice.
 * `mismatched` = stored trades whose time, price, amount or side differ from the sim's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createKafka, ensureTopics, partitionOffsets } from '../../core/kafka.ts';
import { sleep } from '../../core/retry.ts';
import { startKafka, type KafkaBroker } from '../../infra/kafka.ts';
import { freePort, isAlive } from '../../infra/process.ts';
import { startPostgresServer, type PostgresServer } from '../../infra/postgres-server.ts';
import { migrate } from '../../migrations/runner.ts';
import { topicFor } from '../../schemas/index.ts';
import { buildSim, type Sim, type SimOptions } from '../../sim/index.ts';
import { readTopics } from './topics.ts';

export { sleep };

const REPO = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'tickflow.js');
const ARTIFACTS = path.join(REPO, 'test-artifacts', 'faults');
const RESULTS = path.join(REPO, 'bench-results', 'faults.json');
const EXCHANGE = 'sim';
/** application_name of the harness's own connections (spared by `killConnections`). */
const HARNESS_APP = 'faults-harness';

export const seconds = (ms: number): number => Math.round(ms / 100) / 10;

// ---------------------------------------------------------------------------------------------
// Child processes

export type PartKind = 'gateway' | 'sink' | 'infra';

export interface Part {
  readonly kind: PartKind;
  readonly child: ChildProcess;
  readonly startedAt: number;
  /** Resolves with how it ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly logFile: string;
  alive(): boolean;
  /** True once the harness asked it to stop (an exit before that is a crash). */
  readonly stopRequested: boolean;
  /** Everything it printed so far. */
  output(): string;
  /** The last lines it printed (for assertion messages). */
  tail(lines?: number): string;
  /** Waits until its output matches `re` (fails early if it exits). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs` for other signals). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let partSeq = 0;

export function spawnPart(kind: PartKind, args: string[], env: Record<string, string | undefined>, label: string): Part {
  mkdirSync(ARTIFACTS, { recursive: true });
  const logFile = path.join(ARTIFACTS, `${label}-${kind}-${++partSeq}.log`);
  const file: WriteStream = createWriteStream(logFile);
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', KAFKAJS_NO_PARTITIONER_WARNING: '1' };
  for (const k of ['KAFKA_BROKERS', 'DATABASE_URL', 'TEST_POSTGRES_URL']) delete fullEnv[k];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) fullEnv[k] = v;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const onData = (d: Buffer) => {
    const s = d.toString();
    text += s;
    if (text.length > 4_000_000) text = text.slice(-2_000_000);
    file.write(s);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      file.end();
      resolve({ code, signal });
    }),
  );
  let done = false;
  let stopRequested = false;
  void exited.then(() => (done = true));
  const part: Part = {
    kind,
    child,
    startedAt: Date.now(),
    exited,
    logFile,
    alive: () => !done,
    get stopRequested() {
      return stopRequested;
    },
    output: () => text,
    tail: (lines = 25) => `${kind} (${logFile}):\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`,
    async waitFor(re, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(text);
        if (m) return m;
        if (done) throw new Error(`${kind} exited before printing ${re}:\n${part.tail()}`);
        if (Date.now() > deadline) throw new Error(`${kind} did not print ${re} within ${timeoutMs} ms:\n${part.tail()}`);
        await sleep(50);
      }
    },
    async stop(signal = 'SIGTERM', graceMs = 30_000) {
      stopRequested = true;
      if (!done) child.kill(signal);
      if (signal !== 'SIGKILL' && !done) {
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const r = await exited;
        clearTimeout(t);
        return r;
      }
      return exited;
    },
  };
  return part;
}

// ---------------------------------------------------------------------------------------------
// Results

export interface Tally {
  readonly scenario: string;
  readonly database: 'postgres' | 'embedded';
  readonly emitted: number;
  readonly stored: number;
  readonly lost: number;
  readonly doubled: number;
  readonly doubledInKafka: number;
  readonly mismatched: number;
  /** Trade-channel gap records (open and closed) in Kafka, and what their reasons say is missing. */
  readonly gapRecords: number;
  readonly gapMissing: number;
  /** Seconds from the end of each fault until every trade emitted before it was stored (null: never). */
  readonly recoverSeconds: ReadonlyArray<number | null>;
  readonly notes: Record<string, unknown>;
  /** Parts that exited without being asked to: kind, exit, the last lines they printed. */
  readonly crashes: readonly string[];
}

/** One summary line, and the row in bench-results/faults.json (one key per scenario). */
export function report(t: Tally): void {
  const rec = t.recoverSeconds.map((s) => (s === null ? 'never' : `${s}s`)).join(',');
  console.log(
    `FAULTS ${t.scenario} [${t.database}]: crashes=${t.crashes.length} emitted=${t.emitted} stored=${t.stored} lost=${t.lost} doubled=${t.doubled} doubledInKafka=${t.doubledInKafka} mismatched=${t.mismatched} gaps=${t.gapRecords} gapMissing=${t.gapMissing} recover=${rec} ${JSON.stringify(t.notes)}`,
  );
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(RESULTS, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[`${t.scenario} [${t.database}]`] = { ...t, at: new Date().toISOString() };
  const tmp = `${RESULTS}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n');
  renameSync(tmp, RESULTS);
}

// ---------------------------------------------------------------------------------------------
// The rig

export interface RigOptions {
  /** Names the scenario (summary line, log files). */
  readonly scenario: string;
  readonly database?: 'postgres' | 'embedded';
  readonly symbols?: readonly string[];
  /** Per symbol; default 100. */
  readonly tradesPerSecond?: number;
  readonly seed?: number;
  readonly partitions?: number;
  /** More sim options (e.g. a small `maxStoredTrades`: an exchange that cannot refill far back). */
  readonly sim?: Partial<SimOptions>;
}

export type Counted = Omit<Tally, 'scenario' | 'database' | 'notes'>;

interface OwnKafka {
  dataDir: string;
  port: number;
  broker: KafkaBroker | undefined;
}

export class Rig {
  readonly opts: RigOptions;
  readonly sim: Sim;
  readonly prefix: string;
  readonly dir: string;
  readonly configFile: string;
  readonly symbols: readonly string[];
  readonly database: 'postgres' | 'embedded';
  pg: PostgresServer | undefined;
  dbUrl = '';
  gateway: Part | undefined;
  sink: Part | undefined;
  /** Every part ever started (for cleanup and the log). */
  readonly parts: Part[] = [];
  private kafka: OwnKafka;
  private pool: pg.Pool | undefined;
  private embedded: Part | undefined;
  private embeddedPid = 0;
  /** The embedded server's port, kept across its restarts. */
  private embeddedPort = 0;
  /** First trade id of the window, per symbol. */
  firstIds = new Map<string, number>();
  private readonly recoveries: Array<Promise<number | null>> = [];
  readonly notes: Record<string, unknown> = {};

  private constructor(opts: RigOptions, dir: string) {
    this.opts = opts;
    this.dir = dir;
    this.symbols = opts.symbols ?? ['BTC/USDT', 'ETH/USDT'];
    this.database = opts.database ?? 'postgres';
    this.prefix = `f${opts.scenario.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 12)}`;
    this.configFile = path.join(dir, 'tickflow.yaml');
    this.sim = buildSim({ seed: opts.seed ?? 7, symbols: this.symbols, tradesPerSecond: opts.tradesPerSecond ?? 100, historyDays: 0, ...opts.sim });
    this.kafka = { dataDir: path.join(dir, 'kafka'), port: 0, broker: undefined };
  }

  /** Starts the sim, the broker and the database (migrated, with the attempts trigger), writes the config. */
  static async start(opts: RigOptions): Promise<Rig> {
    const rig = new Rig(opts, mkdtempSync(path.join(tmpdir(), 'tickflow-faults-')));
    try {
      await rig.sim.start();
      const started = await Promise.allSettled([rig.startKafka(), rig.database === 'postgres' ? rig.startPostgres() : Promise.resolve()]);
      for (const r of started) if (r.status === 'rejected') throw r.reason;
      if (rig.database === 'embedded') await rig.startEmbedded();
      await rig.createTopics();
    } catch (e) {
      await rig.close();
      throw e;
    }
    return rig;
  }

  private async createTopics(): Promise<void> {
    await ensureTopics(createKafka({ brokers: this.brokers, clientId: this.prefix, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }), {
      topicPrefix: this.prefix,
      partitions: this.opts.partitions ?? 3,
      replicationFactor: 1,
      retentionMs: 3_600_000,
    });
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.kafka.port}`];
  }

  private writeConfig(): void {
    const config = {
      kafka: { topicPrefix: this.prefix, clientId: this.prefix, partitions: this.opts.partitions ?? 3, retentionMs: 3_600_000 },
      database: { dataDir: path.join(this.dir, 'db'), connectTimeoutMs: 3_000, ...(this.embeddedPort ? { embeddedPort: this.embeddedPort } : {}) },
      infra: { kafkaDataDir: path.join(this.dir, 'infra-kafka') },
      gateway: { metricsPort: 0 },
      sink: {
        apiPort: 0,
        connectors: [
          { name: 'trades', table: 'trades', insertMode: 'insert' },
          { name: 'gaps', table: 'gaps', insertMode: 'upsert' },
        ],
      },
      // As an operator would run the sim: its URLs, ccxt's defaults otherwise (rate limiter, backoff).
      exchanges: [{ id: 'binance', name: EXCHANGE, symbols: [...this.symbols], channels: { trades: {} }, backfillLookbackMinutes: 0, options: this.sim.ccxtOptions() }],
    };
    writeFileSync(this.configFile, JSON.stringify(config, null, 2) + '\n'); // JSON is YAML
  }

  // ---- Kafka ----

  private async startKafka(): Promise<void> {
    mkdirSync(this.kafka.dataDir, { recursive: true });
    const broker = await startKafka({ dataDir: this.kafka.dataDir, ...(this.kafka.port ? { port: this.kafka.port } : {}), heapMb: 384 });
    this.kafka.broker = broker;
    this.kafka.port = Number(broker.brokers[0]!.split(':')[1]);
  }

  /** kill -9 of the broker; resolves once the process is gone. */
  async killBroker(): Promise<void> {
    const b = this.kafka.broker!;
    process.kill(b.pid, 'SIGKILL');
    while (isAlive(b.pid)) await sleep(50);
    await b.stop(); // forgets it (exit hooks, pid file)
    this.kafka.broker = undefined;
  }

  /** Starts the broker again on the same port and data dir. */
  async restartBroker(): Promise<void> {
    await this.startKafka();
  }

  // ---- databases ----

  private async startPostgres(): Promise<void> {
    this.pg = await startPostgresServer();
    this.dbUrl = await this.pg.createDatabase(`faults_${this.prefix}`);
    await this.prepareDb();
  }

  /** `tickflow infra up` with KAFKA_BROKERS set: only the embedded TimescaleDB server, detached. */
  private async startEmbedded(): Promise<void> {
    this.embeddedPort ||= await freePort();
    this.writeConfig();
    const up = this.track(spawnPart('infra', ['infra', 'up', '--config', this.configFile], { KAFKA_BROKERS: this.brokers.join(',') }, this.opts.scenario));
    const m = await up.waitFor(/embedded TimescaleDB (?:started|already running) \(pid (\d+)\) at (\S+)/, 150_000);
    await up.exited;
    this.embeddedPid = Number(m[1]);
    this.dbUrl = m[2]!.replace(/,$/, '');
    this.embedded = up;
    await this.prepareDb();
  }

  /**
   * Stops the embedded server `tickflow infra up` started (SIGTERM: it closes PGlite cleanly),
   * waits `downMs`, then `tickflow infra up` again: same data dir, same port.
   */
  async restartEmbedded(downMs: number): Promise<void> {
    const pid = this.embeddedPid;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 600 && isAlive(pid); i++) await sleep(100);
    if (isAlive(pid)) throw new Error(`the embedded database server (pid ${pid}) did not stop within 60 s`);
    await sleep(downMs);
    const up = this.track(spawnPart('infra', ['infra', 'up', '--config', this.configFile], { KAFKA_BROKERS: this.brokers.join(',') }, this.opts.scenario));
    this.embeddedPid = Number((await up.waitFor(/embedded TimescaleDB (?:started|already running) \(pid (\d+)\)/, 150_000))[1]);
    await up.exited;
  }

  /** Migrations, then the trigger that counts every committed insert attempt per trade. */
  private async prepareDb(): Promise<void> {
    await this.withDb(async (pool) => {
      await migrate(pool);
      await pool.query(`create table if not exists trade_attempts (exchange text, symbol text, id text, n int not null, primary key (exchange, symbol, id))`);
      await pool.query(`create or replace function count_trade_attempt() returns trigger language plpgsql as $$
        begin
          insert into trade_attempts values (new.exchange, new.symbol, new.id, 1)
          on conflict (exchange, symbol, id) do update set n = trade_attempts.n + 1;
          return new;
        end $$`);
      await pool.query('drop trigger if exists trades_count_attempts on trades');
      await pool.query('create trigger trades_count_attempts before insert on trades for each row execute function count_trade_attempt()');
    });
  }

  /**
   * Runs `fn` on a pool to the database. On the PostgreSQL server the pool is kept; on the
   * embedded server (one client at a time) it is opened and closed around `fn`: call it only
   * while no sink is connected.
   */
  async withDb<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
    if (this.database === 'postgres') {
      this.pool ??= this.newPool(3);
      return fn(this.pool);
    }
    const pool = this.newPool(1);
    try {
      return await fn(pool);
    } finally {
      await pool.end();
    }
  }

  private newPool(max: number): pg.Pool {
    const pool = new pg.Pool({ connectionString: this.dbUrl, max, connectionTimeoutMillis: this.database === 'embedded' ? 30_000 : 5_000, application_name: HARNESS_APP, idleTimeoutMillis: 0 });
    pool.on('error', () => undefined);
    return pool;
  }

  /** Stops the PostgreSQL server (fast shutdown), data kept. */
  async stopDb(): Promise<void> {
    await this.pg!.stop({ keepData: true });
  }

  async startDb(): Promise<void> {
    await this.pg!.start();
  }

  /** pg_terminate_backend on every connection to the scenario's database but the harness's own; returns how many. */
  async killConnections(): Promise<number> {
    const r = await this.withDb((pool) =>
      pool.query<{ n: number }>(
        `select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and coalesce(application_name, '') <> $1`,
        [HARNESS_APP],
      ),
    );
    return r.rows[0]!.n;
  }

  // ---- parts ----

  private track(p: Part): Part {
    this.parts.push(p);
    void p.exited.then(async (e) => {
      if (p.stopRequested || p.kind === 'infra' || this.closing) return;
      this.crashes.push(`${p.kind} exited (${e.signal ?? `code ${e.code}`}) ${seconds(Date.now() - p.startedAt)} s after its start: ${p.tail(6)}`);
      // As a supervisor (systemd, Kubernetes) would: start it again a second later, so the
      // scenario goes on and its figures count what the crash cost.
      if (this.supervise && (p === this.sink || p === this.gateway)) {
        await sleep(1_000);
        if (this.closing) return;
        if (p === this.sink) this.startSink();
        else this.startGateway();
      }
    });
    return p;
  }

  /** Parts that exited without being asked to (see Tally.crashes). */
  readonly crashes: string[] = [];
  /** Restart a crashed gateway or sink (the crash still counts). */
  supervise = true;
  private closing = false;

  private env(): Record<string, string | undefined> {
    return { KAFKA_BROKERS: this.brokers.join(','), DATABASE_URL: this.database === 'postgres' ? this.dbUrl : undefined };
  }

  startGateway(): Part {
    this.writeConfig();
    this.gateway = this.track(spawnPart('gateway', ['gateway', '--config', this.configFile], this.env(), this.opts.scenario));
    return this.gateway;
  }

  startSink(): Part {
    this.writeConfig();
    this.sink = this.track(spawnPart('sink', ['sink', '--config', this.configFile], this.env(), this.opts.scenario));
    return this.sink;
  }

  /** The sink's REST API base URL, from its start-up line. */
  async sinkUrl(p = this.sink!): Promise<string> {
    return (await p.waitFor(/REST API at (http:\/\/\S+)/, 120_000))[1]!;
  }

  // ---- counting ----

  /** The sim's latest trade id per symbol: a window's end. */
  lastIds(): Map<string, number> {
    const s = this.sim.stats().symbols;
    return new Map(this.symbols.map((sym) => [sym, s[sym]!.lastId]));
  }

  /** Stored trades of the window up to `upTo` (per symbol, inclusive), counting each id once. */
  async storedUpTo(upTo: Map<string, number>): Promise<number> {
    let n = 0;
    await this.withDb(async (pool) => {
      for (const sym of this.symbols) {
        const r = await pool.query<{ n: number }>(
          'select count(distinct id)::int as n from trades where exchange = $1 and symbol = $2 and id::int8 between $3 and $4',
          [EXCHANGE, sym, this.firstIds.get(sym)!, upTo.get(sym)!],
        );
        n += r.rows[0]!.n;
      }
    });
    return n;
  }

  private emittedUpTo(upTo: Map<string, number>): number {
    let n = 0;
    for (const sym of this.symbols) n += Math.max(0, upTo.get(sym)! - this.firstIds.get(sym)! + 1);
    return n;
  }

  /**
   * Waits until trades of every symbol are stored (the pipeline runs), then fixes the window's
   * start: the first trade stored per symbol.
   */
  async warmUp(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const r = await this.withDb((pool) =>
        pool.query<{ symbol: string; first: string }>('select symbol, min(id::int8)::text as first from trades where exchange = $1 group by symbol', [EXCHANGE]),
      ).catch((e: unknown) => {
        last = String(e);
        return { rows: [] as { symbol: string; first: string }[] };
      });
      if (r.rows.length === this.symbols.length) {
        this.firstIds = new Map(r.rows.map((x) => [x.symbol, Number(x.first)]));
        return;
      }
      if (r.rows.length) last = `trades of ${r.rows.map((x) => x.symbol).join(', ')} only`;
      if (Date.now() > deadline) throw new Error(`no trades stored within ${timeoutMs} ms (${last})\n${this.parts.map((p) => p.tail(15)).join('\n')}`);
      await sleep(250);
    }
  }

  /**
   * Starts a new window right after the sim's latest trade (the pipeline must be healthy): counts,
   * recoveries, crashes, notes and gap records start afresh.
   */
  newWindow(): void {
    this.firstIds = new Map([...this.lastIds()].map(([sym, id]) => [sym, id + 1]));
    this.windowStartUs = Date.now() * 1000;
    this.recoveries.length = 0;
    this.crashes.length = 0;
    for (const k of Object.keys(this.notes)) delete this.notes[k];
  }

  private windowStartUs = 0;

  /**
   * Fixes the window's start from the database (embedded: with the sink stopped, so the one client
   * is free). A sink stopped before every symbol had a stored trade leaves a symbol without a
   * start: the sink then runs again for a few seconds (a warm-up, stopped cleanly) until each has one.
   */
  async fixWindowStart(): Promise<void> {
    for (let round = 0; ; round++) {
      try {
        await this.warmUp(round < 5 ? 2_000 : 30_000);
        return;
      } catch (e) {
        if (round >= 5) throw e;
      }
      const sink = this.startSink();
      await this.sinkUrl(sink).catch(() => undefined);
      await sleep(3_000);
      await sink.stop('SIGTERM');
    }
  }

  /**
   * Starts measuring a recovery: the seconds from `sinceMs` (the fault's end) until every trade
   * emitted before now is stored (null after `timeoutMs`). PostgreSQL only (polls the table).
   */
  recovery(sinceMs = Date.now(), timeoutMs = 60_000): Promise<number | null> {
    const target = this.lastIds();
    const want = this.emittedUpTo(target);
    const p = (async () => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = await this.storedUpTo(target).catch(() => -1);
        if (got >= want) return seconds(Date.now() - sinceMs);
        if (Date.now() > deadline) return null;
        await sleep(250);
      }
    })();
    this.recoveries.push(p);
    return p;
  }

  /**
   * Recovery through the sink's status API (the embedded database serves the sink alone): the
   * seconds from `sinceMs` until the sink's stored offsets reach the topic's end as of now.
   */
  recoveryBySinkStatus(sinkUrl: Promise<string>, sinceMs = Date.now(), timeoutMs = 60_000): Promise<number | null> {
    const p = (async () => {
      const target = await this.topicEnds();
      return (await this.untilSinkReaches(await sinkUrl, target, timeoutMs)) ? seconds(Date.now() - sinceMs) : null;
    })();
    this.recoveries.push(p);
    return p;
  }

  /** Waits until the sink's stored offsets reach `target` (the trades topic's ends); false after the timeout. */
  async waitSinkCaughtUp(target: Map<number, number>, timeoutMs = 60_000): Promise<boolean> {
    return this.untilSinkReaches(await this.sinkUrl(), target, timeoutMs);
  }

  /** Polls the sink's status until its stored offsets reach `target` per partition; false after the timeout. */
  private async untilSinkReaches(url: string, target: Map<number, number>, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ok = await fetch(`${url}/connectors/trades/status`, { signal: AbortSignal.timeout(5_000) })
        .then((r) => r.json() as Promise<{ partitions?: { partition: number; nextOffset: number | null }[] }>)
        .then((s) => [...target].every(([part, high]) => (s.partitions?.find((x) => x.partition === part)?.nextOffset ?? 0) >= high))
        .catch(() => false);
      if (ok) return true;
      if (Date.now() > deadline) return false;
      await sleep(250);
    }
  }

  /** High watermark per partition of the trades topic. */
  async topicEnds(): Promise<Map<number, number>> {
    const admin = createKafka({ brokers: this.brokers, clientId: `${this.prefix}-h`, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 }).admin();
    await admin.connect();
    try {
      const o = await partitionOffsets(admin, topicFor(this.prefix, 'trade'));
      return new Map([...o].map(([p, x]) => [p, x.high]));
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Closes the window at the sim's latest trade, waits (up to `timeoutMs`) for every trade of it
   * to be stored (PostgreSQL: polling the table; embedded: `waitStored` is the caller's), then
   * counts. `recoverSeconds` are the recoveries started so far.
   */
  async account(opts: { timeoutMs?: number; waitStored?: boolean; settleMs?: number } = {}): Promise<Counted> {
    // The recoveries under way first (each has its own timeout): a part slow to recover is slow,
    // not lossy, as long as it recovers within them.
    await Promise.all(this.recoveries);
    const end = this.lastIds();
    const want = this.emittedUpTo(end);
    if (opts.waitStored ?? this.database === 'postgres') {
      // Until all are stored, or nothing more came for `settleMs` (15 s), or the timeout.
      const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
      let last = -1;
      let lastChange = Date.now();
      for (;;) {
        const got = await this.storedUpTo(end).catch(() => -1);
        if (got >= want || Date.now() > deadline) break;
        if (got !== last) [last, lastChange] = [got, Date.now()];
        else if (Date.now() - lastChange > (opts.settleMs ?? 15_000)) break;
        await sleep(500);
      }
    }
    return this.count(end);
  }

  /** Counts the window ending at `end` (see the module comment). */
  async count(end: Map<string, number>): Promise<Counted> {
    let emitted = 0;
    let stored = 0;
    let lost = 0;
    let mismatched = 0;
    let doubled = 0;
    const lostIds: string[] = [];
    await this.withDb(async (pool) => {
      for (const sym of this.symbols) {
        const first = this.firstIds.get(sym)!;
        const last = end.get(sym)!;
        // The sim's ids are consecutive: the window is every id from first to last. Its `emitted`
        // may have forgotten the oldest (maxStoredTrades): their fields are not compared.
        const known = new Map(this.sim.emitted.trades(sym, { fromId: first }).map((t) => [t.id, t]));
        emitted += last - first + 1;
        const rows = (
          await pool.query<{ id: string; ts: string; price: number; amount: number; side: string }>(
            `select id, (extract(epoch from ts) * 1000000)::int8::text as ts, price, amount, side from trades
             where exchange = $1 and symbol = $2 and id::int8 between $3 and $4`,
            [EXCHANGE, sym, first, last],
          )
        ).rows;
        const byId = new Map(rows.map((r) => [Number(r.id), r]));
        stored += byId.size;
        for (let id = first; id <= last; id++) {
          const r = byId.get(id);
          if (!r) {
            lost++;
            // As ranges: "BTC/USDT 3000000100-3000000180".
            const prev = lostIds.at(-1);
            const m = prev && new RegExp(`^${sym.replace('/', '\\/')} (\\d+)-(\\d+)$`).exec(prev);
            if (m && Number(m[2]) === id - 1) lostIds[lostIds.length - 1] = `${sym} ${m[1]}-${id}`;
            else if (lostIds.length < 30) lostIds.push(`${sym} ${id}-${id}`);
            continue;
          }
          const t = known.get(id);
          if (t && (Number(r.ts) !== t.timestamp * 1000 || Number(r.price) !== t.price || Number(r.amount) !== t.amount || r.side !== t.side)) mismatched++;
        }
        const a = await pool.query<{ extra: number }>(
          'select coalesce(sum(n - 1), 0)::int as extra from trade_attempts where exchange = $1 and symbol = $2 and id::int8 between $3 and $4',
          [EXCHANGE, sym, first, last],
        );
        doubled += a.rows[0]!.extra;
      }
    });
    // What Kafka holds: duplicates a topic reader would see, and the gap records.
    const topics = await readTopics(this.brokers, this.prefix, ['trade', 'gap'], 120_000);
    const seen = new Map<string, number>();
    for (const t of topics.trade) {
      const id = Number(t.id);
      if (t.exchange !== EXCHANGE || id < this.firstIds.get(t.symbol)! || id > end.get(t.symbol)!) continue;
      const k = `${t.symbol}#${t.id}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
    }
    const doubledInKafka = [...seen.values()].reduce((n, c) => n + c - 1, 0);
    this.notes.inKafka = seen.size; // distinct trades of the window in the topic: a loss before or after Kafka
    const gaps = topics.gap.filter((g) => g.channel === 'trades' && g.ts >= this.windowStartUs);
    const gapMissing = gaps
      .filter((g) => g.to_ts !== null)
      .reduce((n, g) => n + Number(/(\d+) trades? (?:may be )?(?:missing|lost|not refilled)/i.exec(g.reason)?.[1] ?? /missing (\d+)/i.exec(g.reason)?.[1] ?? 0), 0);
    this.notes.gapReasons = [...new Set(gaps.filter((g) => g.to_ts !== null).map((g) => `${g.symbol}: ${g.reason} (refilled ${g.refilled})`))].slice(0, 10);
    if (lostIds.length) this.notes.lostRanges = lostIds;
    const recoverSeconds = await Promise.all(this.recoveries);
    return { emitted, stored, lost, doubled, doubledInKafka, mismatched, gapRecords: gaps.length, gapMissing, recoverSeconds, crashes: [...this.crashes] };
  }

  /** Stops every part, the sim, the broker and the database; removes the temp dir. */
  async close(): Promise<void> {
    this.closing = true;
    for (const p of this.parts) if (p.alive()) await p.stop('SIGTERM', 15_000).catch(() => undefined);
    await this.pool?.end().catch(() => undefined);
    if (this.embeddedPid && isAlive(this.embeddedPid)) {
      process.kill(this.embeddedPid, 'SIGTERM');
      for (let i = 0; i < 300 && isAlive(this.embeddedPid); i++) await sleep(100);
      if (isAlive(this.embeddedPid)) process.kill(this.embeddedPid, 'SIGKILL');
    }
    void this.embedded;
    await this.sim.close().catch(() => undefined);
    await this.kafka.broker?.stop().catch(() => undefined);
    await this.pg?.stop().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A random integer in [lo, hi]. */
export const between = (lo: number, hi: number): number => lo + Math.floor(Math.random() * (hi - lo + 1));

/** What every scenario asserts is all zero, beside the message that explains a failure. */
export function outcome(t: Tally, rig: Rig): { verdict: Record<string, number>; why: string } {
  return {
    verdict: { lost: t.lost, doubled: t.doubled, doubledInKafka: t.doubledInKafka, mismatched: t.mismatched, crashes: t.crashes.length },
    why: [
      `FAULTS ${t.scenario}: emitted ${t.emitted}, stored ${t.stored}, recover ${JSON.stringify(t.recoverSeconds)}`,
      ...t.crashes,
      `notes: ${JSON.stringify(t.notes)}`,
      ...rig.parts.filter((p) => p.kind !== 'infra').slice(-3).map((p) => p.tail(6)),
    ].join('\n'),
  };
}

export const CLEAN = { lost: 0, doubled: 0, doubledInKafka: 0, mismatched: 0, crashes: 0 } as const;
