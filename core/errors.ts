/**
 * The one error type that crosses part boundaries. Third-party errors (ccxt, kafkajs, pg) are
 * translated at the edge into a TickflowError with a stable `code`, a `retriable` flag and the
 * original as `cause`, so callers decide on retry without knowing which library failed.
 */
export const ERROR_CODES = [
  'CONFIG_INVALID',
  'CONFIG_NOT_FOUND',
  'KAFKA_UNREACHABLE',
  'DATABASE_UNREACHABLE',
  'MIGRATION_FAILED',
  'AVRO_DECODE',
  'AVRO_ENCODE',
  'INFRA',
  'EXCHANGE_NETWORK',
  'EXCHANGE_REJECTED',
  'EXCHANGE_UNKNOWN',
  'SYMBOL_UNKNOWN',
  'CHANNEL_UNSUPPORTED',
  /** A request the source holds nothing for (a backfill range before the exchange's history). */
  'NO_DATA',
  'SINK_WRITE',
  'DEAD_LETTER',
  'CONNECTOR_FAILED',
  /** A registration's predicate does not compile (broadcast/predicate.ts). */
  'BAD_PREDICATE',
  /** A user-supplied definition (a broadcaster, a registration) refused, naming the field. */
  'VALIDATION',
  /** A broadcast delivery refused or unanswered (retriable: a timeout, 408/429/5xx, a connection error). */
  'DELIVERY_FAILED',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class TickflowError extends Error {
  override readonly name = 'TickflowError';
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

export function isTickflowError(e: unknown, code?: ErrorCode): e is TickflowError {
  return e instanceof TickflowError && (code === undefined || e.code === code);
}

/** The message of any thrown value, for logs and error records. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
