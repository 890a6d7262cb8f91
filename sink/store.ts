import type { Pool } from '../core/db.ts';
import type { ConnectorSpec } from './config.ts';

/**
 * Connectors created over the REST API, kept in `sink_connectors` so they survive restarts.
 * Rows are returned as stored: the sink checks each again (sink/validate.ts) before starting it,
 * since the schema, the table or the topics may have changed since it was written (or an older
 * sink stored it without the full check).
 */

export interface StoredRow {
  readonly name: string;
  /** The stored config with the row's name (which wins over any name inside it). */
  readonly config: unknown;
  readonly paused: boolean;
}

function rowOf(row: { name: string; config: unknown; paused: boolean }): StoredRow {
  const c = row.config;
  const config = typeof c === 'object' && c !== null && !Array.isArray(c) ? { ...(c as Record<string, unknown>), name: row.name } : c;
  return { name: row.name, config, paused: row.paused };
}

export async function loadConnectors(pool: Pool): Promise<StoredRow[]> {
  const r = await pool.query<{ name: string; config: unknown; paused: boolean }>('select name, config, paused from sink_connectors order by name');
  return r.rows.map(rowOf);
}

export async function loadConnector(pool: Pool, name: string): Promise<StoredRow | undefined> {
  const r = await pool.query<{ name: string; config: unknown; paused: boolean }>('select name, config, paused from sink_connectors where name = $1', [name]);
  return r.rows[0] ? rowOf(r.rows[0]) : undefined;
}

/** Inserts a new connector; false when the name is taken. */
export async function insertConnector(pool: Pool, spec: ConnectorSpec): Promise<boolean> {
  const r = await pool.query('insert into sink_connectors (name, config) values ($1, $2::jsonb) on conflict (name) do nothing', [spec.name, JSON.stringify(spec)]);
  return (r.rowCount ?? 0) > 0;
}

/** Replaces a connector's config (inserting it if another instance deleted it meanwhile); its paused flag stays. */
export async function updateConnector(pool: Pool, spec: ConnectorSpec): Promise<void> {
  await pool.query('insert into sink_connectors (name, config) values ($1, $2::jsonb) on conflict (name) do update set config = excluded.config, updated_at = now()', [spec.name, JSON.stringify(spec)]);
}

export async function setConnectorPaused(pool: Pool, name: string, paused: boolean): Promise<void> {
  await pool.query('update sink_connectors set paused = $2, updated_at = now() where name = $1', [name, paused]);
}

export async function deleteConnector(pool: Pool, name: string): Promise<void> {
  await pool.query('delete from sink_connectors where name = $1', [name]);
}
