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

/** How patiently to wait for one thing: spread into retry()'s options (`{ ...RETRY.database, signal }`). */
export interface RetryPolicy {
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly deadlineMs?: number;
}

/** Attempts of a policy that retries until it works, a non-retriable error, or its `signal` aborts (close()). */
export const UNTIL_CLOSED = Number.POSITIVE_INFINITY;

/**
 * The retry policies of the project, named by what they wait for. A caller that needs another
 * deadline or a shorter cap overrides that one field; a new wait gets a name here, not a delay pair
 * at its call site.
 */
export const RETRY = {
  /** An exchange's REST answer (a page of candles): a few tries, 0.5 s doubling to 15 s. */
  exchangeRest: { attempts: 6, initialDelayMs: 500, maxDelayMs: 15_000 },
  /**
   * An exchange's markets (`loadMarkets`): 1 s doubling to 10 s, so an exchange that comes back is
   * running within ~10 s of answering while a long outage costs one request per 10 s. A backfill
   * gives up after `attempts`; a gateway worker waits until it closes.
   */
  exchangeMarkets: { attempts: 5, initialDelayMs: 1_000, maxDelayMs: 10_000 },
  /** A gateway watch loop after a retriable failure (a dropped or refused connection). */
  exchangeStream: { attempts: UNTIL_CLOSED, initialDelayMs: 200, maxDelayMs: 10_000 },
  /** A gateway watch loop after a non-retriable failure (a refused subscription): slower. */
  exchangeStreamRejected: { attempts: UNTIL_CLOSED, initialDelayMs: 5_000, maxDelayMs: 60_000 },
  /**
   * A trade refill after a stream outage: until REST answers or the worker closes (the stream waits
   * for it: Kafka keeps each instrument's trades in order).
   */
  tradeRefill: { attempts: UNTIL_CLOSED, initialDelayMs: 500, maxDelayMs: 10_000 },
  /** A scheduled trade poll: a few tries; the next poll starts again from the last trade produced. */
  tradePoll: { attempts: 6, initialDelayMs: 200, maxDelayMs: 10_000 },
  /** Kafka accepting the gateway's records (connect, send): short cap, records reach Kafka ~1–2 s after it answers. */
  kafkaProduce: { attempts: UNTIL_CLOSED, initialDelayMs: 250, maxDelayMs: 2_000 },
  /** Kafka answering the gateway's read of where its previous run stopped (a read attempt is cheap). */
  kafkaPositions: { attempts: UNTIL_CLOSED, initialDelayMs: 500, maxDelayMs: 2_000 },
  /** New topics served by the brokers (every partition has a leader): up to a minute by default. */
  kafkaTopics: { attempts: UNTIL_CLOSED, initialDelayMs: 100, maxDelayMs: 2_000, deadlineMs: 60_000 },
  /** Kafka's admin answers to the sink (partition offsets). */
  kafkaAdmin: { attempts: UNTIL_CLOSED, initialDelayMs: 200, maxDelayMs: 5_000 },
  /** Kafka for the API's live stream, connected in the background: patient, a log line per try. */
  kafkaLiveStream: { attempts: UNTIL_CLOSED, initialDelayMs: 1_000, maxDelayMs: 30_000 },
  /** The schema registry registering schemas (producers) or answering while records are decoded (sink). */
  schemaRegistry: { attempts: UNTIL_CLOSED, initialDelayMs: 500, maxDelayMs: 10_000 },
  /** The schema registry answering one schema id: up to a minute, then the caller's own retry takes over. */
  schemaRegistryId: { attempts: UNTIL_CLOSED, initialDelayMs: 200, maxDelayMs: 5_000, deadlineMs: 60_000 },
  /** The database accepting a sink batch or answering a sink read. */
  database: { attempts: UNTIL_CLOSED, initialDelayMs: 200, maxDelayMs: 5_000 },
  /**
   * One broadcast delivery (an HTTP POST, a produce to a user's topic): the default budget of a
   * broadcaster (its `retry` config overrides attempts and delays); what exhausts it is dead-lettered.
   */
  broadcastHttp: { attempts: 5, initialDelayMs: 200, maxDelayMs: 10_000 },
  /** What the sink needs to start (database, Kafka, registry), shown on /healthz while it waits. */
  sinkDependencies: { attempts: UNTIL_CLOSED, initialDelayMs: 250, maxDelayMs: 5_000 },
} as const satisfies Record<string, RetryPolicy>;

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
