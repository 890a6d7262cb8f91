/**
 * Expands the Grafana PostgreSQL datasource macros and template variables the way Grafana does
 * with its TimescaleDB option on, so dashboard queries can run against a real database in tests.
 */
export interface GrafanaContext {
  readonly from: Date;
  readonly to: Date;
  readonly intervalMs: number;
  readonly vars: Readonly<Record<string, string>>;
}

function intervalText(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function expandGrafanaSql(sql: string, ctx: GrafanaContext): string {
  const from = `'${ctx.from.toISOString()}'`;
  const to = `'${ctx.to.toISOString()}'`;
  const bucket = `'${Math.max(1, Math.round(ctx.intervalMs / 1000))}s'`;
  let out = sql
    .replace(/\$__timeFilter\(\s*([^)]+?)\s*\)/g, (_, col) => `${col} BETWEEN ${from} AND ${to}`)
    .replace(/\$__timeGroupAlias\(\s*([^,]+?)\s*,[^)]*\)/g, (_, col) => `time_bucket(${bucket}, ${col}) AS "time"`)
    .replace(/\$__timeGroup\(\s*([^,]+?)\s*,[^)]*\)/g, (_, col) => `time_bucket(${bucket}, ${col})`)
    .replace(/\$__timeFrom\(\)/g, from)
    .replace(/\$__timeTo\(\)/g, to)
    .replace(/\$__interval_ms\b/g, String(ctx.intervalMs))
    .replace(/\$__interval\b/g, intervalText(ctx.intervalMs));
  for (const [name, value] of Object.entries(ctx.vars)) {
    out = out.replace(new RegExp(`\\$\\{${name}\\}|\\$${name}\\b`, 'g'), value.replace(/'/g, "''"));
  }
  return out;
}
