import { TickflowError } from './errors.ts';

export interface RetryOptions {
  /** Attempts in total, the first included. */
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Gives up once this much time has passed since the first attempt, whatever `attempts` says. */
  readonly deadlineMs?: number;
  readonly signal?: AbortSignal;
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

const DEFAULTS: RetryOptions = { attempts: 8, initialDelayMs: 200, maxDelayMs: 30_000 };

/** Programming errors are never retried: retrying a TypeError only repeats the bug. */
function isRetriable(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return false;
  if (err instanceof TickflowError) return err.retriable;
  return true;
}

/** A rate-limit answer may say how long to wait (HTTP Retry-After, in seconds). */
function retryAfterMs(err: unknown): number | undefined {
  const anyErr = err as { retryAfterMs?: unknown; headers?: Record<string, unknown> } | null;
  if (anyErr && typeof anyErr.retryAfterMs === 'number') return anyErr.retryAfterMs;
  const h = anyErr?.headers?.['retry-after'];
  if (typeof h === 'string' && /^\d+$/.test(h)) return Number(h) * 1000;
  return undefined;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter and a cap; the one retry helper of the project. */
export function backoffDelay(attempt: number, initialDelayMs: number, maxDelayMs: number): number {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, options: Partial<RetryOptions> = {}): Promise<T> {
  const o = { ...DEFAULTS, ...options };
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const outOfTime = o.deadlineMs !== undefined && Date.now() - started >= o.deadlineMs;
      if (!isRetriable(err) || attempt >= o.attempts || outOfTime || o.signal?.aborted) throw err;
      let delay = retryAfterMs(err) ?? backoffDelay(attempt, o.initialDelayMs, o.maxDelayMs);
      if (o.deadlineMs !== undefined) delay = Math.max(0, Math.min(delay, o.deadlineMs - (Date.now() - started)));
      o.onRetry?.(err, attempt, delay);
      await sleep(delay, o.signal);
    }
  }
}
