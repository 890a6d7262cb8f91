import { describe, expect, it } from 'vitest';
import { TickflowError } from './errors.ts';
import { dbError, translatePgError } from './pg-errors.ts';

const pgErr = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });

describe('translatePgError', () => {
  it.each([
    ['57014', 'timeout', true],
    ['08006', 'unavailable', true],
    ['53300', 'unavailable', true],
    ['57P01', 'unavailable', true],
    ['57000', 'server', true],
    ['58030', 'server', true],
    ['40001', 'contention', true],
    ['40P01', 'contention', true],
    ['55P03', 'contention', true],
    ['22003', 'data', false],
    ['23514', 'integrity', false],
    ['28P01', 'access', false],
    ['3D000', 'access', false],
    ['42P01', 'undefined-table', false],
    ['42703', 'other', false],
  ])('SQLSTATE %s: %s, retriable %s', (code, kind, retriable) => {
    expect(translatePgError(pgErr(code))).toEqual({ kind, sqlstate: code, retriable });
  });

  it('reads errors without a SQLSTATE by their message; TypeError and RangeError are bugs', () => {
    for (const m of ['Connection terminated unexpectedly', 'connect ECONNREFUSED 127.0.0.1:5432', 'timeout exceeded when trying to connect', 'Query read timeout']) {
      expect(translatePgError(new Error(m))).toMatchObject({ kind: 'unavailable', retriable: true });
    }
    expect(translatePgError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toMatchObject({ kind: 'unavailable', sqlstate: undefined });
    expect(translatePgError(new Error('something odd'))).toMatchObject({ kind: 'unknown', retriable: true });
    // A broken socket's EPIPE is no SQLSTATE (it used to read as one, failing the connector).
    expect(translatePgError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toMatchObject({ kind: 'unknown', sqlstate: undefined, retriable: true });
    expect(translatePgError(new TypeError('x is undefined'))).toMatchObject({ kind: 'bug', retriable: false });
    expect(translatePgError(new RangeError('out of range'))).toMatchObject({ kind: 'bug', retriable: false });
  });

  it('dbError: retriable DATABASE_UNREACHABLE for transient failures, SINK_WRITE otherwise; a TickflowError as it is', () => {
    expect(dbError(pgErr('08006'), 'writing')).toMatchObject({ code: 'DATABASE_UNREACHABLE', retriable: true, message: 'writing: error 08006' });
    expect(dbError(pgErr('42703'), 'writing')).toMatchObject({ code: 'SINK_WRITE', retriable: false });
    const t = new TickflowError('DEAD_LETTER', 'dlq down', { retriable: true });
    expect(dbError(t, 'writing')).toBe(t);
  });
});
