import type { Pool } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import { probeKafka } from '../core/kafka.ts';
import type { Check as OpsCheck, HealthAnswer, HealthBody, HealthStatus } from '../core/ops.ts';
import type { ConnectorState } from './events.ts';

/**
 * What `/healthz` and a connector's status say about the sink: its phase (starting, and what it
 * waits for; running; stopping), and whether Kafka and the database answer now. Each check is
 * bounded (CHECK_TIMEOUT_MS), runs once at a time and is cached for a moment, so a health or
 * status request never hangs on a dead broker and a scraper cannot pile up connections.
 */

export type SinkPhase = 'starting' | 'running' | 'stopping';

/** A check of the sink: when it was obtained (ISO 8601) is always known. */
export interface Check extends OpsCheck {
  readonly at: string;
}

/** The sink's health body (core/ops.ts shape): status and checks, then its connectors. */
export interface HealthReport extends HealthBody {
  /** ok: running and every check passes; starting; degraded: running, something is wrong; stopping. */
  readonly status: HealthStatus;
  /** While starting: what the sink waits for. */
  readonly waitingFor?: string;
  readonly checks: { readonly kafka?: Check; readonly database?: Check };
  readonly connectors: Record<string, { state: ConnectorState; problem: string | null }>;
}

export const CHECK_TIMEOUT_MS = 2_500;
const CACHE_MS = 2_000;

class CachedCheck {
  private readonly run: () => Promise<void>;
  private last: (Check & { t: number }) | undefined;
  private running: Promise<Check> | undefined;

  constructor(run: () => Promise<void>) {
    this.run = run;
  }

  get(): Promise<Check> {
    if (this.last && Date.now() - this.last.t < CACHE_MS) return Promise.resolve(this.last);
    this.running ??= (async () => {
      let check: Check;
      try {
        await withTimeout(this.run(), CHECK_TIMEOUT_MS);
        check = { ok: true, at: new Date().toISOString() };
      } catch (e) {
        check = { ok: false, error: messageOf(e), at: new Date().toISOString() };
      }
      this.last = { ...check, t: Date.now() };
      this.running = undefined;
      return check;
    })();
    return this.running;
  }

  /** The latest answer without asking again (undefined before the first). */
  peek(): Check | undefined {
    if (!this.last) return undefined;
    const { t: _t, ...check } = this.last;
    return check;
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined); // lost the race: already reported
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class SinkHealth {
  phase: SinkPhase = 'starting';
  waitingFor: string | undefined = 'start-up';
  private kafka: CachedCheck | undefined;
  private database: CachedCheck | undefined;
  private connectors: () => { name: string; state: ConnectorState; problem: string | null }[] = () => [];

  watchKafka(brokers: readonly string[]): void {
    this.kafka = new CachedCheck(() => probeKafka(brokers, CHECK_TIMEOUT_MS - 500));
  }

  watchDatabase(pool: Pool): void {
    this.database = new CachedCheck(async () => {
      await pool.query('select 1');
    });
  }

  watchConnectors(list: () => { name: string; state: ConnectorState; problem: string | null }[]): void {
    this.connectors = list;
  }

  /** Kafka right now (bounded; cached for a moment): undefined before the sink knows its brokers. */
  kafkaCheck(): Promise<Check | undefined> {
    return this.kafka ? this.kafka.get() : Promise.resolve(undefined);
  }

  /** /healthz: 200 when ok, else 503 with the phase and what is wrong. */
  async answer(): Promise<HealthAnswer> {
    const report = await this.report();
    return { code: report.status === 'ok' ? 200 : 503, body: report };
  }

  async report(): Promise<HealthReport> {
    const [kafka, database] = await Promise.all([this.kafka?.get(), this.database?.get()]);
    const connectors = Object.fromEntries(this.connectors().map((c) => [c.name, { state: c.state, problem: c.problem }]));
    const checks = { ...(kafka ? { kafka } : {}), ...(database ? { database } : {}) };
    if (this.phase !== 'running') return { status: this.phase, ...(this.phase === 'starting' && this.waitingFor ? { waitingFor: this.waitingFor } : {}), checks, connectors };
    const bad = !kafka?.ok || !database?.ok || Object.values(connectors).some((c) => c.state === 'FAILED' || c.problem !== null);
    return { status: bad ? 'degraded' : 'ok', checks, connectors };
  }
}
