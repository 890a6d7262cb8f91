import cron, { type ScheduledTask } from 'node-cron';
import type { Aggregates } from './aggregates.ts';
import type { SinkConfig } from './config.ts';

/**
 * The sink's own jobs, on node-cron: the OHLCV refresh (the embedded TimescaleDB runs no
 * background jobs; plain PostgreSQL has none; a TimescaleDB server's policies still miss late
 * writes outside their window) and, on plain PostgreSQL, retention by deletes. A run that is
 * still going when the next is due is skipped, not stacked. Failures are reported through the
 * sink's events (metrics, logs) and retried at the next tick.
 */
export interface Scheduler {
  stop(): Promise<void>;
}

export function startScheduler(aggregates: Aggregates, config: Pick<SinkConfig, 'refreshSchedule' | 'retentionSchedule'>): Scheduler {
  const running = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    const q = p.catch(() => undefined);
    running.add(q);
    void q.finally(() => running.delete(q));
    return q;
  };
  const tasks: ScheduledTask[] = [cron.schedule(config.refreshSchedule, () => track(aggregates.refresh()), { name: 'sink-refresh', noOverlap: true })];
  if (aggregates.db.flavour === 'plain') {
    tasks.push(cron.schedule(config.retentionSchedule, () => track(aggregates.applyRetention()), { name: 'sink-retention', noOverlap: true }));
  }
  return {
    async stop() {
      for (const t of tasks) await t.destroy();
      await Promise.all(running);
    },
  };
}
