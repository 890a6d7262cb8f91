/**
 * The record catalog (schemas/catalog.ts) against the tables the migrations create, on both
 * databases: column names in order, types, nullability, primary key; on TimescaleDB also the
 * hypertable's time column and the columnstore.
 */
import { describe, expect, it } from 'vitest';
import { migrate } from '../migrations/runner.ts';
import { CATALOG, RECORD_KINDS } from '../schemas/catalog.ts';
import { describeEachDb } from './harness/db.ts';

interface ColumnRow {
  column_name: string;
  udt_name: string;
  is_nullable: 'YES' | 'NO';
}

describe('record catalog vs information_schema', () => {
  describeEachDb(['embedded', 'postgres'], (db) => {
    it('matches every record table: columns, types, nullability, primary key', async () => {
      const { pool } = db();
      await migrate(pool);
      for (const kind of RECORD_KINDS) {
        const s = CATALOG[kind];
        const cols = await pool.query<ColumnRow>(
          'select column_name, udt_name, is_nullable from information_schema.columns where table_schema = current_schema() and table_name = $1 order by ordinal_position',
          [s.table],
        );
        expect(
          cols.rows.map((c) => ({ name: c.column_name, type: c.udt_name, nullable: c.is_nullable === 'YES' })),
          `table ${s.table}`,
        ).toEqual(s.columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable })));
        const pk = await pool.query<{ column_name: string }>(
          `select k.column_name from information_schema.table_constraints t
           join information_schema.key_column_usage k on k.constraint_schema = t.constraint_schema and k.constraint_name = t.constraint_name and k.table_name = t.table_name
           where t.table_schema = current_schema() and t.table_name = $1 and t.constraint_type = 'PRIMARY KEY' order by k.ordinal_position`,
          [s.table],
        );
        expect(pk.rows.map((r) => r.column_name), `primary key of ${s.table}`).toEqual([...s.primaryKey]);
      }
      if (db().kind === 'embedded') {
        const ht = await pool.query<{ hypertable_name: string; column_name: string; compression_enabled: boolean }>(
          `select h.hypertable_name, d.column_name, h.compression_enabled from timescaledb_information.hypertables h
           join timescaledb_information.dimensions d on d.hypertable_schema = h.hypertable_schema and d.hypertable_name = h.hypertable_name`,
        );
        const byTable = new Map(ht.rows.map((r) => [r.hypertable_name, r]));
        for (const kind of RECORD_KINDS) {
          const s = CATALOG[kind];
          const h = byTable.get(s.table);
          // Time series (a retention policy applies) are hypertables partitioned by their time column.
          expect(h?.column_name, `hypertable ${s.table}`).toBe(s.retention ? s.timeColumn : undefined);
          expect(h?.compression_enabled ?? false, `columnstore of ${s.table}`).toBe(s.columnstore);
        }
      }
    });
  });
});
