import type { SchemaRegistry } from '../../core/avro.ts';
import { TickflowError } from '../../core/errors.ts';

/**
 * An in-memory schema registry with the Confluent semantics the codec relies on (one global id
 * per distinct schema). It isolates the codec from the HTTP registry client; the real registry
 * (Apicurio Registry, infra/registry.ts) is in test/registry.test.ts.
 */
export class MemoryRegistry implements SchemaRegistry {
  private readonly schemas: string[] = [];
  readonly subjects = new Map<string, number[]>();

  async register(subject: string, schema: string): Promise<number> {
    let i = this.schemas.indexOf(schema);
    if (i < 0) i = this.schemas.push(schema) - 1;
    const ids = this.subjects.get(subject) ?? [];
    if (!ids.includes(i + 1)) this.subjects.set(subject, [...ids, i + 1]);
    return i + 1;
  }

  async getById(id: number): Promise<string> {
    const s = this.schemas[id - 1];
    if (!s) throw new TickflowError('AVRO_DECODE', `no schema with id ${id}`); // a 404: not retriable
    return s;
  }
}
