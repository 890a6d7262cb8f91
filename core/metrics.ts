import client from 'prom-client';

/**
 * The one metrics registry of the process. Names follow `tickflow_<part>_<what>_<unit>`;
 * each part declares all its metrics in one module, `<part>/telemetry.ts` (beside the
 * subscriber that feeds them from the part's events, core/events.ts), through these getters,
 * which return the existing metric when a name is declared twice (tests build a part several times).
 */
export const registry = new client.Registry();
registry.setDefaultLabels({ app: 'tickflow' });

let defaultsCollected = false;
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  client.collectDefaultMetrics({ register: registry, prefix: 'tickflow_process_' });
}

function getOrCreate<T>(name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): client.Counter<L> {
  return getOrCreate(name, () => new client.Counter<L>({ name, help, labelNames, registers: [registry] }));
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): client.Gauge<L> {
  return getOrCreate(name, () => new client.Gauge<L>({ name, help, labelNames, registers: [registry] }));
}

export function histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): client.Histogram<L> {
  return getOrCreate(name, () => new client.Histogram<L>({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) }));
}
