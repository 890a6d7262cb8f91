import type { Pool } from '../core/db.ts';
import { connectorSchema, type ConnectorSpec } from './config.ts';

/** Connectors created over the REST API, kept in `sink_connectors` so they survive restarts. */

export interface StoredConnector {
  readonly spec: ConnectorSpec;
  readonly paused: boolean;
}

export async function loadConnectors(pool: Pool): Promise<{ stored: StoredConnector[]; invalid: { name: string; error: string }[] }> {
  const r = await pool.query<{ name: string; config: unknown; paused: boolean }>('select name, config, paused from sink_connectors order by name');
  const stored: StoredConnector[] = [];
  const invalid: { name: string; error: string }[] = [];
  for (const row of r.rows) {
    // Validated again: the schema may have tightened since the row was written.
    const p = connectorSchema.safeParse(row.config);
    if (p.success) stored.push({ spec: p.data, paused: row.paused });
    else invalid.push({ name: row.name, error: p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
  }
  return { stored, invalid };
}

/** Inserts a new connector; false when the name is taken. */
export async function insertConnector(pool: Pool, spec: ConnectorSpec): Promise<boolean> {
  const r = await pool.query('insert into sink_connectors (name, config) values ($1, $2::jsonb) on conflict (name) do nothing', [spec.name, JSON.stringify(spec)]);
  return (r.rowCount ?? 0) > 0;
}

export async function setConnectorPaused(pool: Pool, name: string, paused: boolean): Promise<void> {
  await pool.query('update sink_connectors set paused = $2, updated_at = now() where name = $1', [name, paused]);
}

export async function deleteConnector(pool: Pool, name: string): Promise<void> {
  await pool.query('delete from sink_connectors where name = $1', [name]);
}
