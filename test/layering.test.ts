/**
 * The layering, checked on every import (static, `export ... from` and dynamic `import()`) of
 * every source file, so it stays true:
 *
 *   schemas, core                 the shared bottom: import no part (core reads no part's config)
 *   infra, migrations             local infrastructure and the database's migrations: core, schemas
 *   gateways, sink, api, sim,     the parts: the layers below, never each other, except that the
 *   broadcast                     API serves broadcasters and registrations over REST with the
 *                                 broadcast part's model: api/ may import exactly
 *                                 broadcast/{model,predicate,store,config}.ts (not its runtime)
 *   config                        composes the whole config file: core and each part's config.ts
 *   cli, bin                      the entry points: anything
 *   test, bench, *.test.ts        anything (tests build configs and wire parts together)
 *
 * A new top-level folder fails here until it is given a place.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';

const BELOW_PARTS = ['schemas', 'core', 'infra', 'migrations'];
const PARTS = ['gateways', 'sink', 'api', 'sim', 'broadcast'];

/** Top-level folder → the folders it may import from (besides itself); '*' = any. */
const MAY_IMPORT: Readonly<Record<string, readonly string[] | '*'>> = {
  schemas: [],
  core: ['schemas'],
  infra: ['core', 'schemas'],
  migrations: ['core', 'schemas'],
  ...Object.fromEntries(PARTS.map((p) => [p, BELOW_PARTS])),
  api: [...BELOW_PARTS, 'broadcast'],
  config: ['core', 'schemas', ...PARTS],
  cli: '*',
  bin: '*',
  test: '*',
  bench: '*',
};

/** config/ composes the parts' sections: of a part it may import only that part's config.ts. */
const PART_FILES_CONFIG_MAY_IMPORT = new Set(PARTS.map((p) => `${p}/config.ts`));

/** Of another part, a folder may import only these files (config/: each part's config.ts; api/: the broadcast model). */
const PART_FILES_MAY_IMPORT: Readonly<Record<string, ReadonlySet<string>>> = {
  config: PART_FILES_CONFIG_MAY_IMPORT,
  api: new Set(['broadcast/model.ts', 'broadcast/predicate.ts', 'broadcast/store.ts', 'broadcast/config.ts']),
};

/** Tooling beside a part's code that runs other parts, as a test does. */
const TOOLING = [/\.test\.ts$/, /^gateways\/(exchanges\/)?fixtures\//];

const SKIP_DIRS = new Set(['node_modules', '.cache', '.tickflow', '.git', 'test-artifacts', 'public', 'grafana']);

function sourceFiles(dir = ''): string[] {
  return readdirSync(path.join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((d) => {
    const rel = dir ? `${dir}/${d.name}` : d.name;
    if (d.isDirectory()) return SKIP_DIRS.has(d.name) ? [] : sourceFiles(rel);
    return dir && /\.(ts|js|mjs)$/.test(d.name) ? [rel] : [];
  });
}

/** Repository-relative paths of the repository files `file` imports. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(path.join(REPO_ROOT, file), 'utf8'), true, true);
  return info.importedFiles.map((i) => i.fileName).filter((f) => f.startsWith('.')).map((f) => path.posix.normalize(path.posix.join(path.posix.dirname(file), f)));
}

function violations(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles()) {
    const from = file.split('/')[0]!;
    const allowed = MAY_IMPORT[from];
    if (allowed === undefined) {
      found.push(`${file}: the folder ${from}/ has no place in the layering (add it to MAY_IMPORT in test/layering.test.ts)`);
      continue;
    }
    if (allowed === '*' || TOOLING.some((t) => t.test(file))) continue;
    for (const target of importsOf(file)) {
      const to = target.split('/')[0]!;
      const only = PART_FILES_MAY_IMPORT[from];
      if (to === from || (allowed.includes(to) && (!only || !PARTS.includes(to) || only.has(target)))) continue;
      found.push(`${file} imports ${target} (${from}/ may import ${allowed.length ? allowed.join(', ') : 'nothing outside itself'}${only ? `; of a part only ${[...only].join(', ')}` : ''})`);
    }
  }
  return found;
}

describe('layering', () => {
  it('core imports no part, and parts import each other only through core and schemas', () => {
    expect(violations()).toEqual([]);
  });

  it('every relative import names an existing file, extension included', () => {
    // Node runs the .ts files as they are (bin/tickflow.js): it maps no `.js` to `.ts` and guesses no extension, as tsx did.
    const missing = sourceFiles().flatMap((file) => importsOf(file).filter((t) => !existsSync(path.join(REPO_ROOT, t))).map((t) => `${file} imports ${t}`));
    expect(missing).toEqual([]);
  });

  it('reads imports of every kind', () => {
    // The check is only as good as its parser: static, re-export and dynamic imports all count.
    expect(importsOf('cli/main.ts')).toEqual(expect.arrayContaining(['config/schema.ts', 'sim/main.ts', 'sink/cli.ts']));
    expect(importsOf('cli/start.ts')).toEqual(expect.arrayContaining(['core/config.ts', 'sink/index.ts', 'api/index.ts']));
    expect(importsOf('config/schema.ts')).toEqual(expect.arrayContaining(['api/config.ts', 'sink/config.ts', 'gateways/config.ts', 'broadcast/config.ts']));
    expect(sourceFiles()).toEqual(expect.arrayContaining(['core/config.ts', 'config/schema.ts', 'bin/tickflow.js']));
  });
});
