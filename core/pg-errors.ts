import { TickflowError, messageOf } from './errors.ts';

/**
 * The one reading of a PostgreSQL (pg, pg-pool) failure: what kind of trouble it is. Callers
 * decide what the kind means to them — the sink retries a write or dead-letters a row, the API
 * answers 503 or 400, the start-up probe gives up or waits — but they all read the error here.
 *
 * A failure that carries a SQLSTATE (`code`, five characters) is classified by it; one without
 * (pg's client and pool errors, sockets) by its message; TypeError and RangeError are bugs.
 * Anything without a SQLSTATE that is not a bug counts as retriable: the connection's, not the SQL's.
 */
export type PgErrorKind =
  /** The connection or the server's state: refused, reset, terminated, 08 connection, 53 resources, 57P shutdown. */
  | 'unavailable'
  /** 57014: cancelled, statement_timeout. */
  | 'timeout'
  /** 40 serialization failure or deadlock, 55P03 lock not available: the same statement may go through next time. */
  | 'contention'
  /** 57000 operator intervention, 58 system error (I/O). */
  | 'server'
  /** 22: a value the statement takes was not accepted (a data exception). */
  | 'data'
  /** 23: a row breaks a constraint (an integrity violation). */
  | 'integrity'
  /** 28 wrong credentials, 3D no such database: retrying the same URL will not help. */
  | 'access'
  /** 42P01: a table is missing (a database not migrated). */
  | 'undefined-table'
  /** Any other SQLSTATE: a bug or a schema problem, repeated by a retry. */
  | 'other'
  /** TypeError, RangeError: a programming error. */
  | 'bug'
  /** No SQLSTATE and nothing known in the message. */
  | 'unknown';

export interface PgFailure {
  readonly kind: PgErrorKind;
  /** The SQLSTATE, when the error has one. */
  readonly sqlstate: string | undefined;
  /** Whether retrying may help: everything but the records' own faults, access, schema and bugs. */
  readonly retriable: boolean;
}

/** pg's and the socket's own words for a connection that is gone or never came. */
const CONNECTION_MESSAGE = /Query read timeout|timeout exceeded when trying to connect|Connection terminated|ECONNREFUSED|ECONNRESET|Client has encountered a connection error|Cannot use a pool after calling end/i;

const RETRIABLE: ReadonlySet<PgErrorKind> = new Set(['unavailable', 'timeout', 'contention', 'server', 'unknown']);

/**
 * A SQLSTATE: five digits or capitals. Node's socket errors (`EPIPE`, `ECONNRESET`) also sit in
 * `code`; no SQLSTATE class starts with E, so those are read by their message like pg's own.
 */
const SQLSTATE = /^[0-9A-DF-Z][0-9A-Z]{4}$/;

function kindOf(e: unknown): { kind: PgErrorKind; sqlstate: string | undefined } {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !SQLSTATE.test(code)) {
    if (e instanceof TypeError || e instanceof RangeError) return { kind: 'bug', sqlstate: undefined };
    return { kind: CONNECTION_MESSAGE.test(messageOf(e)) ? 'unavailable' : 'unknown', sqlstate: undefined };
  }
  const of = (kind: PgErrorKind) => ({ kind, sqlstate: code });
  if (code === '57014') return of('timeout');
  if (/^(08|53|57P)/.test(code)) return of('unavailable');
  if (/^(57|58)/.test(code)) return of('server');
  if (/^40/.test(code) || code === '55P03') return of('contention');
  if (/^22/.test(code)) return of('data');
  if (/^23/.test(code)) return of('integrity');
  if (/^(28|3D)/.test(code)) return of('access');
  if (code === '42P01') return of('undefined-table');
  return of('other');
}

export function translatePgError(e: unknown): PgFailure {
  const { kind, sqlstate } = kindOf(e);
  return { kind, sqlstate, retriable: RETRIABLE.has(kind) };
}

/** A database failure as a TickflowError: retriable when transient, with the cause kept. */
export function dbError(e: unknown, what: string): TickflowError {
  if (e instanceof TickflowError) return e;
  const transient = translatePgError(e).retriable;
  return new TickflowError(transient ? 'DATABASE_UNREACHABLE' : 'SINK_WRITE', `${what}: ${messageOf(e)}`, { retriable: transient, cause: e });
}
