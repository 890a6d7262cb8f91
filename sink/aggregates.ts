import type { Pool } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import type { Flavour } from '../migrations/runner.ts';
import { intervalMs, intervalSql, type SinkConfig } from './config.ts';
import type { SinkEmitter } from './events.ts';
import { COLUMNSTORE_TABLES, OHLCV_ROLLUPS, OHLCV_VIEWS, RETENTION_TABLES, specOfTable, type TableName } from '../schemas/catalog.ts';

/**
 * The OHLCV rollups and the data lifecycle, on both flavours of migrations/:
 * - TimescaleDB: refresh, columnstore and retention policies from config, applied at start
 *   (idempotent; a changed interval replaces the policy). A server with background workers runs
 *   them; the embedded database runs none, so `refresh()` (on the sink's schedule) refreshes the
 *   continuous aggregates itself: 1m, then 1h, then 1d, each from the oldest bucket that writes
 *   touched since the last refresh (late trades included) up to now.
 * - Plain PostgreSQL: `tickflow_refresh_ohlcv(now())` (its triggers know the late buckets), and
 *   retention as scheduled deletes.
 */

const CAGGS = OHLCV_ROLLUPS.map((r) => ({ view: r.view, widthMs: r.seconds * 1000 }));
/** Rows past retention, by relation: raw tables by their time column, rollups by bucket. */
const RETENTION_TIME: Readonly<Record<string, string>> = {
  ...Object.fromEntries(RETENTION_TABLES.map((t) => [t, specOfTable(t).timeColumn])),
  ...Object.fromEntries(OHLCV_VIEWS.map((v) => [v, 'bucket'])),
};
/** Plain PostgreSQL keeps the rollups in these tables (migrations/004_ohlcv.plain.sql). */
const PLAIN_TABLE: Readonly<Record<string, string>> = Object.fromEntries(OHLCV_VIEWS.map((v) => [v, `${v}_mat`]));
const DELETE_CHUNK = 50_000;

const log = logger('sink').child({ module: 'aggregates' });

export interface DatabaseInfo {
  readonly flavour: Flavour;
  /** TimescaleDB's job scheduler runs (a real server); false on the embedded database. */
  readonly backgroundWorkers: boolean;
}

export async function detectDatabase(pool: Pool, flavour: Flavour): Promise<DatabaseInfo> {
  if (flavour !== 'timescaledb') return { flavour, backgroundWorkers: false };
  const r = await pool.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where backend_type ilike 'TimescaleDB%' or application_name ilike 'TimescaleDB Background Worker%'",
  );
  return { flavour, backgroundWorkers: (r.rows[0]?.n ?? 0) > 0 };
}

type Policies = SinkConfig['policies'];

interface JobRow {
  job_id: number;
  relation: string;
  proc_name: string;
  config: Record<string, unknown>;
  schedule_interval: string;
}

export class Aggregates {
  private readonly pool: Pool;
  readonly db: DatabaseInfo;
  private readonly policies: Policies;
  private readonly events: SinkEmitter;
  /** Oldest trade time (ms) written since the last successful refresh started. */
  private dirtyFromMs: number | undefined;
  /** End of the last successful refresh window (ms); undefined before the first one. */
  private lastToMs: number | undefined;
  private running: Promise<void> | undefined;

  constructor(pool: Pool, db: DatabaseInfo, policies: Policies, events: SinkEmitter) {
    this.pool = pool;
    this.db = db;
    this.policies = policies;
    this.events = events;
  }

  /** Called after each committed batch: the aggregates must cover these rows' buckets. */
  noteWrite(table: TableName, minTimeUs: number): void {
    if (table !== 'trades') return;
    const ms = Math.floor(minTimeUs / 1000);
    if (this.dirtyFromMs === undefined || ms < this.dirtyFromMs) this.dirtyFromMs = ms;
  }

  /** TimescaleDB: makes the jobs match the config (adds, replaces changed, removes unset). */
  async applyPolicies(): Promise<void> {
    if (this.db.flavour !== 'timescaledb') return;
    const jobs = (
      await this.pool.query<JobRow>(
        `select j.job_id, coalesce(c.view_name, j.hypertable_name) as relation, j.proc_name, j.config, j.schedule_interval::text as schedule_interval
         from timescaledb_information.jobs j
         left join timescaledb_information.continuous_aggregates c
           on j.hypertable_schema = c.materialization_hypertable_schema and j.hypertable_name = c.materialization_hypertable_name
         where j.proc_name in ('policy_compression', 'policy_retention', 'policy_refresh_continuous_aggregate')`,
      )
    ).rows;
    const job = (proc: string, relation: string) => jobs.find((j) => j.proc_name === proc && j.relation === relation);
    const same = async (a: unknown, b: string | null): Promise<boolean> => {
      if (a === undefined || a === null || b === null) return (a === undefined || a === null) && b === null;
      const r = await this.pool.query<{ eq: boolean }>('select $1::interval = $2::interval as eq', [String(a), b]);
      return r.rows[0]?.eq === true;
    };

    for (const table of COLUMNSTORE_TABLES) {
      const want = this.policies.compressAfter ? intervalSql(this.policies.compressAfter) : null;
      const have = job('policy_compression', table);
      if (have && (await same(have.config.compress_after, want))) continue;
      if (have) await this.pool.query('call remove_columnstore_policy($1::regclass, if_exists => true)', [table]);
      if (want) await this.pool.query('call add_columnstore_policy($1::regclass, after => $2::interval, if_not_exists => true)', [table, want]);
      log.debug({ table, compressAfter: want }, 'columnstore policy set');
    }

    for (const [relation, value] of Object.entries(this.policies.retention)) {
      const want = value ? intervalSql(value) : null;
      const have = job('policy_retention', relation);
      if (have && (await same(have.config.drop_after, want))) continue;
      if (!have && !want) continue;
      if (have) await this.pool.query('select remove_retention_policy($1::regclass, if_exists => true)', [relation]);
      if (want) await this.pool.query('select add_retention_policy($1::regclass, drop_after => $2::interval, if_not_exists => true)', [relation, want]);
      log.debug({ relation, dropAfter: want }, 'retention policy set');
    }

    for (const { view } of CAGGS) {
      const p = this.policies.refresh[view];
      const want = { start: p.startOffset ? intervalSql(p.startOffset) : null, end: intervalSql(p.endOffset), every: intervalSql(p.scheduleInterval) };
      const have = job('policy_refresh_continuous_aggregate', view);
      if (have && (await same(have.config.start_offset ?? null, want.start)) && (await same(have.config.end_offset, want.end)) && (await same(have.schedule_interval, want.every))) continue;
      if (have) await this.pool.query('select remove_continuous_aggregate_policy($1::regclass, if_exists => true)', [view]);
      await this.pool.query('select add_continuous_aggregate_policy($1::regclass, start_offset => $2::interval, end_offset => $3::interval, schedule_interval => $4::interval, if_not_exists => true)', [view, want.start, want.end, want.every]);
      log.debug({ view, ...want }, 'refresh policy set');
    }
  }

  /**
   * Brings the rollups up to `now`. One refresh at a time: a call while one runs waits for it
   * and then runs again (its writes may have come after the running one's window was taken).
   */
  async refresh(now = new Date()): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
    const run = this.refreshOnce(now);
    this.running = run;
    try {
      await run;
    } finally {
      this.running = undefined;
    }
  }

  private async refreshOnce(now: Date): Promise<void> {
    const t0 = performance.now();
    if (this.db.flavour === 'plain') {
      try {
        await this.pool.query('select tickflow_refresh_ohlcv($1::timestamptz)', [now.toISOString()]);
        this.events.emit('refresh', { what: 'ohlcv', seconds: (performance.now() - t0) / 1000, from: null, to: now.toISOString() });
      } catch (e) {
        this.events.emit('refreshError', { what: 'ohlcv', error: messageOf(e) });
        throw e;
      }
      return;
    }
    // Take the dirty mark now: writes committed from here on belong to the next refresh.
    const dirty = this.dirtyFromMs;
    this.dirtyFromMs = undefined;
    // With background workers the policies advance the aggregates; only late writes need us.
    if (this.db.backgroundWorkers && dirty === undefined) return;
    let fromMs: number | null;
    if (this.lastToMs === undefined && !this.db.backgroundWorkers) {
      // First refresh of this process: whatever an earlier (perhaps killed) process wrote and did
      // not refresh; the invalidation log makes untouched ranges cheap. Not past raw retention:
      // refreshing where raw chunks were dropped would empty those buckets.
      const keep = this.policies.retention.trades;
      fromMs = keep ? now.getTime() - intervalMs(keep) : null;
    } else {
      fromMs = Math.min(dirty ?? Infinity, this.lastToMs ?? Infinity);
      if (!Number.isFinite(fromMs)) fromMs = now.getTime();
    }
    try {
      for (const { view, widthMs } of CAGGS) {
        const to = Math.floor(now.getTime() / widthMs) * widthMs;
        const from = fromMs === null ? null : Math.floor(fromMs / widthMs) * widthMs;
        // TimescaleDB refreshes whole buckets only, and refuses a window without one.
        if (from !== null && to - from < widthMs) continue;
        const t1 = performance.now();
        await this.pool.query(`call refresh_continuous_aggregate('${view}', $1::timestamptz, $2::timestamptz)`, [from === null ? null : new Date(from).toISOString(), new Date(to).toISOString()]);
        this.events.emit('refresh', { what: view, seconds: (performance.now() - t1) / 1000, from: from === null ? null : new Date(from).toISOString(), to: new Date(to).toISOString() });
      }
      this.lastToMs = now.getTime();
    } catch (e) {
      // Not refreshed: the window must be covered next time.
      if (dirty !== undefined) this.dirtyFromMs = Math.min(dirty, this.dirtyFromMs ?? Infinity);
      this.events.emit('refreshError', { what: 'ohlcv', error: messageOf(e) });
      throw e;
    }
  }

  /** Plain PostgreSQL: deletes rows past their retention, in chunks (TimescaleDB drops chunks by policy). */
  async applyRetention(now = new Date()): Promise<void> {
    if (this.db.flavour !== 'plain') return;
    for (const [relation, value] of Object.entries(this.policies.retention)) {
      if (!value) continue;
      const table = PLAIN_TABLE[relation] ?? relation;
      const column = RETENTION_TIME[relation]!;
      const before = new Date(now.getTime() - intervalMs(value)).toISOString();
      let deleted = 0;
      for (;;) {
        const r = await this.pool.query(`delete from ${table} where ctid in (select ctid from ${table} where ${column} < $1::timestamptz limit ${DELETE_CHUNK})`, [before]);
        deleted += r.rowCount ?? 0;
        if ((r.rowCount ?? 0) < DELETE_CHUNK) break;
      }
      this.events.emit('retention', { table, deleted });
    }
  }
}
