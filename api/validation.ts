/**
 * Numbers in query strings. A query string is text; fastify's ajv coerces it to the declared
 * types (`coerceTypes`), and its coercion reads numbers the way JavaScript does: `0x10` → 16,
 * `1e3` → 1000, ` 5 ` → 5, `+5` → 5. An `integer` parameter of the OpenAPI document means
 * decimal digits on the wire, so the `decimalNumbers` keyword — put on every querystring schema
 * by `plainNumbersOnRoute` — runs before the properties are coerced and refuses integer and
 * number parameters written any other way, naming the parameter. One place for every route.
 */
import type { RouteOptions } from 'fastify';

const INTEGER = /^-?[0-9]+$/;
const NUMBER = /^-?[0-9]+(?:\.[0-9]+)?$/;

interface PropertySchema {
  readonly type?: unknown;
}

interface KeywordError {
  instancePath: string;
  keyword: string;
  message: string;
  params: Record<string, unknown>;
}

type Validate = ((data: unknown) => boolean) & { errors?: KeywordError[] };

/** The subset of Ajv 8 this plugin uses (fastify's own Ajv instance is handed to it). */
interface AjvLike {
  addKeyword(def: {
    keyword: string;
    type: string;
    schemaType: string;
    before: string;
    errors: boolean;
    compile(schema: boolean, parentSchema: { properties?: Record<string, PropertySchema> }): Validate;
  }): unknown;
}

/** An Ajv plugin (fastify's `ajv.plugins`): the `decimalNumbers` keyword. */
export function decimalNumbersKeyword(ajv: AjvLike): AjvLike {
  ajv.addKeyword({
    keyword: 'decimalNumbers',
    type: 'object',
    schemaType: 'boolean',
    // Before `properties`, whose subschemas coerce each value in place.
    before: 'properties',
    errors: true,
    compile(enabled, parentSchema) {
      const checks = Object.entries(parentSchema.properties ?? {}).flatMap(([name, s]) => {
        const types = Array.isArray(s.type) ? (s.type as unknown[]) : [s.type];
        if (types.includes('integer') && !types.includes('string')) return [{ name, re: INTEGER, what: 'an integer' }];
        if (types.includes('number') && !types.includes('string')) return [{ name, re: NUMBER, what: 'a number' }];
        return [];
      });
      const validate: Validate = (data) => {
        if (!enabled || typeof data !== 'object' || data === null) return true;
        for (const { name, re, what } of checks) {
          const v = (data as Record<string, unknown>)[name];
          for (const x of Array.isArray(v) ? v : [v]) {
            if (typeof x === 'string' && !re.test(x)) {
              validate.errors = [{ instancePath: `/${name}`, keyword: 'decimalNumbers', message: `expected ${what} in plain decimal digits (like 100), got ${JSON.stringify(x.slice(0, 40))}`, params: { value: x.slice(0, 40) } }];
              return false;
            }
          }
        }
        return true;
      };
      return validate;
    },
  });
  return ajv;
}

/** An onRoute hook: every querystring schema with properties gets `decimalNumbers`. */
export function plainNumbersOnRoute(route: RouteOptions): void {
  const schema = route.schema as { querystring?: unknown } | undefined;
  const qs = schema?.querystring as { type?: unknown; properties?: unknown } | undefined;
  if (schema && qs && typeof qs === 'object' && qs.type === 'object' && qs.properties) schema.querystring = { ...qs, decimalNumbers: true };
}
