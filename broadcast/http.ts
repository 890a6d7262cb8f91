/**
 * The HTTP broadcaster: one POST of JSON per delivery (delivery.ts's body), signed with
 * HMAC-SHA256 when the broadcaster has a secret, each attempt bounded by its timeout, retried
 * with backoff (core/retry.ts, the broadcaster's budget: RETRY.broadcastHttp by default).
 *
 * Ordering and concurrency: deliveries of one instrument (exchange + symbol) go one after the
 * other, in record order; different instruments go in parallel, at most `concurrency` requests
 * in flight per broadcaster. So a receiver slow for one instrument delays only that instrument's
 * lane, and a receiver that does not answer costs at most its retry budget
 * (attempts × timeoutMs + backoff) before its deliveries are dead-lettered: it never holds the
 * other broadcasters forever.
 */
import { createHmac } from 'node:crypto';
import { TickflowError, messageOf } from '../core/errors.ts';
import { RETRY, retry } from '../core/retry.ts';
import { deliveryBody, type Broadcaster, type Delivery, type Outcome } from './delivery.ts';
import type { BroadcastEmitter } from './events.ts';
import type { HttpConfig } from './model.ts';

export const SIGNATURE_HEADER = 'x-tickflow-signature';
export const TIMESTAMP_HEADER = 'x-tickflow-timestamp';
export const EVENT_ID_HEADER = 'x-tickflow-event-id';

/** `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: what a receiver recomputes to verify. */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

const RETRIED_STATUS = (s: number) => s === 408 || s === 429 || s >= 500;

export class HttpBroadcaster implements Broadcaster {
  readonly kind = 'http' as const;
  readonly configKey: string;
  private readonly timeoutMs: number;
  private readonly policy: { attempts: number; initialDelayMs: number; maxDelayMs: number };

  constructor(
    readonly name: string,
    private readonly config: HttpConfig,
    private readonly events: BroadcastEmitter,
    private readonly concurrency: number,
  ) {
    this.configKey = JSON.stringify(config);
    this.timeoutMs = config.timeoutMs ?? 5_000;
    this.policy = {
      attempts: config.retry?.maxAttempts ?? RETRY.broadcastHttp.attempts,
      initialDelayMs: config.retry?.initialMs ?? RETRY.broadcastHttp.initialDelayMs,
      maxDelayMs: config.retry?.maxMs ?? RETRY.broadcastHttp.maxDelayMs,
    };
  }

  async deliver(deliveries: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    const outcomes: Outcome[] = new Array(deliveries.length);
    // One lane per instrument, in record order.
    const lanes = new Map<string, number[]>();
    deliveries.forEach((d, i) => {
      const r = d.record as unknown as { exchange: string; symbol: string };
      const k = `${r.exchange}\u0000${r.symbol}`;
      let lane = lanes.get(k);
      if (!lane) lanes.set(k, (lane = []));
      lane.push(i);
    });
    const queue = [...lanes.values()];
    const worker = async () => {
      for (let lane = queue.shift(); lane; lane = queue.shift()) {
        for (const i of lane) outcomes[i] = await this.one(deliveries[i]!, signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, queue.length) }, worker));
    if (signal.aborted) throw signal.reason;
    return outcomes;
  }

  private async one(d: Delivery, signal: AbortSignal): Promise<Outcome> {
    let attempts = 0;
    try {
      await retry(
        (attempt) => {
          attempts = attempt;
          return this.post(d, signal);
        },
        {
          ...this.policy,
          signal,
          onRetry: (err, attempt, delayMs) => this.events.emit('retry', { broadcaster: this.name, registration: d.registration, id: d.id, attempt, delayMs, error: messageOf(err) }),
        },
      );
      return { ok: true, attempts, at: Date.now() };
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      return { ok: false, attempts, error: messageOf(e) };
    }
  }

  private async post(d: Delivery, signal: AbortSignal): Promise<void> {
    const body = deliveryBody(d);
    const timestamp = String(Date.now());
    const headers: Record<string, string> = {
      ...this.config.headers,
      'content-type': 'application/json',
      [EVENT_ID_HEADER]: d.id,
      [TIMESTAMP_HEADER]: timestamp,
    };
    if (this.config.secret) headers[SIGNATURE_HEADER] = signature(this.config.secret, timestamp, body);
    let res: Response;
    try {
      res = await fetch(this.config.url, { method: 'POST', headers, body, signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]), redirect: 'manual' });
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      const timedOut = (e as { name?: string }).name === 'TimeoutError';
      const cause = (e as { cause?: unknown }).cause;
      throw new TickflowError('DELIVERY_FAILED', timedOut ? `POST ${this.config.url}: no answer within ${this.timeoutMs} ms` : `POST ${this.config.url}: ${messageOf(cause ?? e)}`, { retriable: true, cause: e });
    }
    // The body is not needed; reading it frees the connection for the next request.
    const text = await res.text().catch(() => '');
    if (res.status >= 200 && res.status < 300) return;
    const err = new TickflowError('DELIVERY_FAILED', `POST ${this.config.url}: HTTP ${res.status}${text ? ` ${text.slice(0, 200)}` : ''}`, { retriable: RETRIED_STATUS(res.status) });
    const after = res.headers.get('retry-after');
    // A receiver's Retry-After is honoured, within the broadcaster's own backoff cap.
    if (after && /^\d+$/.test(after)) Object.assign(err, { retryAfterMs: Math.min(Number(after) * 1000, this.policy.maxDelayMs) });
    throw err;
  }

  async close(): Promise<void> {}
}
