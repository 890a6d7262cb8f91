/**
 * HTTP-facing errors of the API. Every refusal names the parameter at fault; database trouble
 * becomes a 503 (retry later) or, for a statement that ran past the timeout, a 400 asking for a
 * narrower range. Nothing the API expects ends as a 500: that status means a bug.
 */
import type { FastifyError } from 'fastify';
import { messageOf } from '../core/errors.ts';
import { translatePgError } from '../core/pg-errors.ts';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly statusCode: number;
  /** The query parameter (or message field) at fault, when one is. */
  readonly parameter: string | undefined;
  readonly retriable: boolean;

  constructor(statusCode: number, message: string, opts: { parameter?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.statusCode = statusCode;
    this.parameter = opts.parameter;
    this.retriable = statusCode === 503;
  }
}

export function badRequest(parameter: string | undefined, message: string): ApiError {
  return new ApiError(400, message, parameter === undefined ? {} : { parameter });
}

/** Plain words for the long patterns of the API's parameters (registered by schemas.ts), said instead of the regex. */
export const PATTERN_HINTS = new Map<string, string>();

interface AjvIssue {
  readonly instancePath?: string;
  readonly keyword?: string;
  readonly message?: string;
  readonly params?: Record<string, unknown>;
}

/**
 * fastify's schema errors ("querystring/limit must be <= 10000") reworded to name the parameter
 * plainly: "limit: must be at most 10000", "from: required", "limt: unknown parameter".
 */
export function describeValidation(issues: readonly AjvIssue[], context: string | undefined): { parameter: string | undefined; message: string } {
  const i = issues[0] ?? {};
  const p = i.params ?? {};
  const path = (i.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  const where = context === 'querystring' || context === undefined ? '' : `${context} `;
  if (i.keyword === 'required' && typeof p.missingProperty === 'string') {
    const name = path ? `${path}.${p.missingProperty}` : p.missingProperty;
    return { parameter: name, message: `${where}${name}: required` };
  }
  if (i.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
    const name = path ? `${path}.${p.additionalProperty}` : p.additionalProperty;
    return { parameter: name, message: `${where}${name}: unknown parameter` };
  }
  const name = path || '(query)';
  let msg = i.message ?? 'invalid';
  if (i.keyword === 'enum' && Array.isArray(p.allowedValues)) msg = `expected one of ${p.allowedValues.join(', ')}`;
  else if (i.keyword === 'maximum') msg = `must be at most ${String(p.limit)}`;
  else if (i.keyword === 'minimum') msg = `must be at least ${String(p.limit)}`;
  else if (i.keyword === 'format' && p.format === 'date-time') msg = 'expected an RFC 3339 time with seconds and a zone, like 2024-01-31T00:00:00Z, on a date that exists';
  else if (i.keyword === 'type') msg = `expected ${Array.isArray(p.type) ? p.type.join(' or ') : String(p.type)}`;
  else if (i.keyword === 'pattern') msg = PATTERN_HINTS.get(String(p.pattern)) ?? `has an unexpected form (expected ${String(p.pattern)})`;
  return { parameter: path || undefined, message: `${where}${name}: ${msg}` };
}

/**
 * Translates a database failure into an ApiError: timeouts and unavailability are expected under
 * load or outage; anything else is returned untouched (a bug, answered with a 500).
 */
export function translateDbError(e: unknown, timeoutMs: number): unknown {
  if (e instanceof ApiError) return e;
  const msg = messageOf(e);
  switch (translatePgError(e).kind) {
    case 'timeout':
      return new ApiError(400, `the query ran past the ${timeoutMs} ms statement timeout: narrow from/to or choose a coarser interval`, { parameter: 'from', cause: e });
    case 'unavailable':
      return new ApiError(503, `the database is unavailable or busy (${msg}); retry later`, { cause: e });
    case 'undefined-table':
      return new ApiError(503, `the database lacks tickflow's tables (${msg}): run \`tickflow migrate\``, { cause: e });
    // Data exceptions (22xxx) come from values the route let through: still the caller's input.
    case 'data':
      return new ApiError(400, `a parameter was not accepted by the database: ${msg}`, { cause: e });
    default:
      return e;
  }
}

export function isFastifyValidation(e: unknown): e is FastifyError & { validation: AjvIssue[]; validationContext?: string } {
  return typeof e === 'object' && e !== null && Array.isArray((e as { validation?: unknown }).validation);
}
