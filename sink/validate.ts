import { describeIssues } from '../core/config.ts';
import type { Pool } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import type { Admin } from '../core/kafka.ts';
import { connectorSchema, resolveConnector, type ConnectorSpec } from './config.ts';
import { withTimeout } from './health.ts';
import { TABLES } from './tables.ts';

/**
 * The one check of a connector's config, used for those of the config file and those stored in
 * sink_connectors at start-up, and for every REST write before anything is stored: the schema,
 * then the table against the database's catalog (it exists, the key fields are its columns and
 * match one of its unique keys exactly, as `on conflict (…)` needs), then the topics against
 * Kafka (they exist). Each outside check is bounded; one that cannot answer says so (503 over
 * REST) instead of passing or hanging.
 */

export const VALIDATE_TIMEOUT_MS = 5_000;

export type Verdict =
  | { readonly ok: true; readonly spec: ConnectorSpec }
  /** 400: the config is wrong (the message names the field and what is allowed); 503: the database or Kafka did not answer. */
  | { readonly ok: false; readonly status: 400 | 503; readonly error: string };

export interface ValidateContext {
  readonly pool: Pool;
  readonly admin: Admin;
  readonly topicPrefix: string;
  /** How fields are named in messages: '' (the config file: `table`) or 'config.' (a REST body: `config.table`). */
  readonly fieldPrefix?: string;
  readonly timeoutMs?: number;
}

const list = (xs: readonly string[]) => `(${xs.join(', ')})`;

export async function validateConnector(raw: unknown, ctx: ValidateContext): Promise<Verdict> {
  const f = (field: string) => `${ctx.fieldPrefix ?? ''}${field}`;
  const timeoutMs = ctx.timeoutMs ?? VALIDATE_TIMEOUT_MS;
  const parsed = connectorSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = describeIssues(parsed.error).map((l) => (l.startsWith('name:') ? l : `${ctx.fieldPrefix ?? ''}${l}`));
    return { ok: false, status: 400, error: issues.join('; ') };
  }
  const spec = parsed.data;
  const table = spec.table;
  const errors: string[] = [];

  // The table as the database has it now (it may differ from the sink's view after a migration).
  let catalog: { columns: string[]; uniqueKeys: string[][] } | undefined;
  try {
    catalog = await withTimeout(readCatalog(ctx.pool, table), timeoutMs, `the database gave no catalog of ${table}`);
  } catch (e) {
    return { ok: false, status: 503, error: `cannot check ${f('table')} against the database: ${messageOf(e)}` };
  }
  if (!catalog) return { ok: false, status: 400, error: `${f('table')}: table ${table} does not exist in the database (run the migrations)` };
  const writes = TABLES[table].columns.map((c) => c.name);
  const missing = writes.filter((c) => !catalog.columns.includes(c));
  if (missing.length) errors.push(`${f('table')}: ${table} in the database lacks the column(s) ${missing.join(', ')} the sink writes`);
  // Key fields: columns the sink writes (it dedupes batches on them) that the table has.
  const columns = writes.filter((c) => catalog.columns.includes(c));
  const key = spec.keyFields ?? TABLES[table].primaryKey;
  const unknown = key.filter((k) => !columns.includes(k));
  const dupes = key.filter((k, i) => key.indexOf(k) !== i);
  const uniqueKeys = catalog.uniqueKeys.filter((u) => u.every((c) => columns.includes(c)));
  const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));
  if (unknown.length) {
    errors.push(`${f('keyFields')}: ${unknown.join(', ')} ${unknown.length > 1 ? 'are not columns' : 'is not a column'} of ${table} (columns: ${columns.join(', ')})`);
  } else if (dupes.length) {
    errors.push(`${f('keyFields')}: ${[...new Set(dupes)].join(', ')} given twice`);
  } else if (!uniqueKeys.some((u) => sameSet(u, key))) {
    const allowed = uniqueKeys.length ? `one of its unique keys: ${uniqueKeys.map(list).join(' or ')}` : 'a unique key, and the table has none';
    errors.push(
      spec.keyFields
        ? `${f('keyFields')}: ${list(key)} is not a unique key of ${table}; on conflict (…) needs ${allowed}`
        : `${f('keyFields')}: absent, so the primary key ${list(key)}, which is not a unique key of ${table} in the database; give ${allowed}`,
    );
  }

  // The topics must exist: a consumer of a missing topic waits for it without saying so.
  const topics = resolveConnector(spec, ctx.topicPrefix).topics;
  let existing: string[];
  try {
    existing = await withTimeout(ctx.admin.listTopics(), timeoutMs, 'Kafka gave no topic list');
  } catch (e) {
    return { ok: false, status: 503, error: `cannot check ${f('topics')} against Kafka: ${messageOf(e)}` };
  }
  const absent = topics.filter((t) => !existing.includes(t));
  if (absent.length) {
    const near = existing.filter((t) => t.startsWith(`${ctx.topicPrefix}.`) && !t.endsWith('.dlq')).sort();
    errors.push(`${f('topics')}: ${absent.join(', ')} ${absent.length > 1 ? 'do not exist' : 'does not exist'} in Kafka${spec.topics ? '' : ` (the default, <kafka.topicPrefix>.${table})`}; create it first${near.length ? ` (topics under ${ctx.topicPrefix}.: ${near.join(', ')})` : ''}`);
  }
  return errors.length ? { ok: false, status: 400, error: errors.join('; ') } : { ok: true, spec };
}

/** The table's columns and its unique keys (primary key included; partial and expression indexes can't serve `on conflict (cols)`); undefined when it does not exist. */
async function readCatalog(pool: Pool, table: string): Promise<{ columns: string[]; uniqueKeys: string[][] } | undefined> {
  const cols = await pool.query<{ attname: string }>(
    `select a.attname::text as attname from pg_attribute a
     where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped order by a.attnum`,
    [table],
  );
  if (cols.rows.length === 0) {
    const exists = await pool.query('select to_regclass($1) is not null as e', [table]);
    if (!(exists.rows[0] as { e: boolean }).e) return undefined;
  }
  const keys = await pool.query<{ cols: string[] }>(
    `select array(select a.attname::text from unnest(i.indkey::int2[]) with ordinality k(attnum, n)
                  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum order by k.n) as cols
     from pg_index i
     where i.indrelid = to_regclass($1) and i.indisunique and i.indpred is null and i.indexprs is null`,
    [table],
  );
  return { columns: cols.rows.map((r) => r.attname), uniqueKeys: keys.rows.map((r) => r.cols) };
}
