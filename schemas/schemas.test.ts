import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { generate } from './generate.ts';
import { RECORD_KINDS, schemaJson } from './index.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

describe('Avro schemas', () => {
  it('generated TypeScript types are up to date (run: node --import tsx schemas/generate.ts)', () => {
    expect(readFileSync(path.join(here, 'types.gen.ts'), 'utf8')).toBe(generate());
  });

  it.each(RECORD_KINDS)('%s: namespace tickflow.v1, every field documented, common fields present', (kind) => {
    const s = schemaJson(kind) as unknown as { namespace: string; doc?: string; fields: { name: string; doc?: string; type: unknown }[] };
    expect(s.namespace).toBe('tickflow.v1');
    expect(s.doc).toBeTruthy();
    for (const f of s.fields) expect(f.doc, `${kind}.${f.name} has no doc`).toBeTruthy();
    const names = s.fields.map((f) => f.name);
    expect(names.slice(0, 4)).toEqual(['exchange', 'symbol', 'ts', 'received_at']);
    for (const t of ['ts', 'received_at']) {
      expect(JSON.stringify(s.fields.find((f) => f.name === t)!.type)).toContain('timestamp-micros');
    }
  });
});
