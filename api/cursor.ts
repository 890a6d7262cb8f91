/**
 * Paging cursors: opaque base64url JSON holding where the next page starts, plus a fingerprint
 * of the query that issued it, so a cursor replayed against different parameters is refused
 * (400) instead of silently returning rows of another range. `limit` may change between pages.
 */
import { createHash } from 'node:crypto';
import { badRequest } from './errors.ts';

export interface CursorState {
  /** Position: the next bucket start, or the last row's time (µs). */
  readonly p: number;
  /** Tie-breaker after `p` (e.g. the last trade id, or instrument key). */
  readonly i?: string;
  /** The `to` the first page resolved (µs) when the query left it to default to now. */
  readonly t?: number;
}

export function fingerprint(route: string, params: Readonly<Record<string, unknown>>): string {
  const canonical = JSON.stringify([route, Object.keys(params).sort().map((k) => [k, params[k] ?? null])]);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 12);
}

export function encodeCursor(state: CursorState, fp: string): string {
  return Buffer.from(JSON.stringify({ ...state, f: fp }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, fp: string): CursorState {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badRequest('cursor', 'cursor: not a cursor this API issued (pass the `next` value of the previous page unchanged)');
  }
  const o = raw as { p?: unknown; i?: unknown; t?: unknown; f?: unknown } | null;
  if (!o || typeof o !== 'object' || !Number.isSafeInteger(o.p) || (o.i !== undefined && typeof o.i !== 'string') || (o.t !== undefined && !Number.isSafeInteger(o.t))) {
    throw badRequest('cursor', 'cursor: not a cursor this API issued (pass the `next` value of the previous page unchanged)');
  }
  if (o.f !== fp) throw badRequest('cursor', 'cursor: belongs to a query with other parameters; repeat the original parameters with it');
  return { p: o.p as number, ...(o.i !== undefined ? { i: o.i as string } : {}), ...(o.t !== undefined ? { t: o.t as number } : {}) };
}
