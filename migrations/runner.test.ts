import { describe, expect, it } from 'vitest';
import { listMigrations, splitStatements } from './runner.ts';

describe('splitStatements', () => {
  it('splits at top-level semicolons only', () => {
    const sql = `create table a (x text default 'a;b'); -- c;d
      create function f() returns int language sql as $$ select 1; $$;
      /* e; f */ select "we;ird" from a;
      do $body$ begin perform 1; end $body$;`;
    expect(splitStatements(sql)).toEqual([
      "create table a (x text default 'a;b')",
      '-- c;d\n      create function f() returns int language sql as $$ select 1; $$',
      '/* e; f */ select "we;ird" from a',
      'do $body$ begin perform 1; end $body$',
    ]);
  });

  it('drops comment-only tails', () => {
    expect(splitStatements('select 1;\n-- the end\n')).toEqual(['select 1']);
  });
});

describe('listMigrations', () => {
  it('picks the file of the flavour, one per version, in order', () => {
    const ts = listMigrations('timescaledb');
    const plain = listMigrations('plain');
    expect(ts[0]!.file).toBe('001_extension.timescaledb.sql');
    expect(plain[0]!.file).toBe('001_extension.plain.sql');
    for (const list of [ts, plain]) {
      const versions = list.map((m) => m.version);
      expect(versions).toEqual([...new Set(versions)].sort((a, b) => a - b));
    }
  });
});
