/**
 * The HTTP broadcaster: one POST of JSON per delivery (delivery.ts's body), signed with
 * HMAC-SHA256 when the broadcaster has a secret, each attempt bounded by its timeout, retried
 * with backoff (core/retry.ts, the broadcaster's budget: RETRY.broadcastHttp by default).
 *
 * Ordering and concurrency: the deliveries of one registration for one instrument (exchange +
 * symbol) go one after the other, in record order (a retried one holds the ones after it); other
 * registrations and instruments go in parallel, at most `concurrency` requests in flight per
 * broadcaster. So a receiver slow for one lane delays only that lane, and a receiver that does
 * not answer costs at most its retry budget
 * (attempts × timeoutMs + backoff) before its deliveries are dead-lettered: it never holds the
 * other broadcasters forever.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
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
  readonly name: string;
  private readonly config: HttpConfig;
  private readonly events: BroadcastEmitter;
  private readonly concurrency: number;
  readonly kind = 'http' as const;
  readonly configKey: string;
  private readonly timeoutMs: number;
  private readonly policy: { attempts: number; initialDelayMs: number; maxDelayMs: number };
  private readonly url: URL;
  /** Keep-alive connections, at most `concurrency` (node:http: several times cheaper per request than fetch). */
  private readonly agent: http.Agent;
  /** The URL's request options, parsed once (not per POST). */
  private readonly target: http.RequestOptions;
  private readonly mod: typeof http | typeof https;

  constructor(name: string, config: HttpConfig, events: BroadcastEmitter, concurrency: number) {
    this.name = name;
    this.config = config;
    this.events = events;
    this.concurrency = concurrency;
    this.configKey = JSON.stringify(config);
    this.timeoutMs = config.timeoutMs ?? 5_000;
    this.policy = {
      attempts: config.retry?.maxAttempts ?? RETRY.broadcastHttp.attempts,
      initialDelayMs: config.retry?.initialMs ?? RETRY.broadcastHttp.initialDelayMs,
      maxDelayMs: config.retry?.maxMs ?? RETRY.broadcastHttp.maxDelayMs,
    };
    this.url = new URL(config.url);
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency, keepAliveMsecs: 10_000 });
    this.target = urlToHttpOptions(this.url);
    this.mod = this.url.protocol === 'https:' ? https : http;
  }

  async deliver(deliveries: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    const outcomes: Outcome[] = new Array(deliveries.length);
    // One lane per registration and instrument, in record order.
    const lanes = new Map<string, number[]>();
    deliveries.forEach((d, i) => {
      const r = d.record as unknown as { exchange: string; symbol: string };
      const k = `${d.registration}\u0000${r.exchange}\u0000${r.symbol}`;
      let lane = lanes.get(k);
      if (!lane) lanes.set(k, (lane = []));
      lane.push(i);
    });
    const queue = [...lanes.values()];
    // One abort listener per call (not one per request): a stop destroys the requests in flight.
    const inFlight = new Set<http.ClientRequest>();
    const onAbort = () => {
      for (const req of inFlight) req.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const worker = async () => {
      for (let lane = queue.shift(); lane; lane = queue.shift()) {
        for (const i of lane) outcomes[i] = await this.one(deliveries[i]!, signal, inFlight);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.concurrency, queue.length) }, worker));
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    if (signal.aborted) throw signal.reason;
    return outcomes;
  }

  private async one(d: Delivery, signal: AbortSignal, inFlight: Set<http.ClientRequest>): Promise<Outcome> {
    let attempts = 0;
    try {
      await retry(
        (attempt) => {
          attempts = attempt;
          return this.post(d, signal, inFlight);
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

  private async post(d: Delivery, signal: AbortSignal, inFlight: Set<http.ClientRequest>): Promise<void> {
    const body = deliveryBody(d);
    const timestamp = String(Date.now());
    const headers: Record<string, string> = {
      ...this.config.headers,
      'content-type': 'application/json',
      [EVENT_ID_HEADER]: d.id,
      [TIMESTAMP_HEADER]: timestamp,
    };
    if (this.config.secret) headers[SIGNATURE_HEADER] = signature(this.config.secret, timestamp, body);
    let res: { status: number; text: string; retryAfter: string | undefined };
    try {
      if (signal.aborted) throw signal.reason;
      res = await this.request(headers, body, inFlight);
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw new TickflowError('DELIVERY_FAILED', `POST ${this.config.url}: ${messageOf(e)}`, { retriable: true, cause: e });
    }
    if (res.status >= 200 && res.status < 300) return;
    const err = new TickflowError('DELIVERY_FAILED', `POST ${this.config.url}: HTTP ${res.status}${res.text ? ` ${res.text.slice(0, 200)}` : ''}`, { retriable: RETRIED_STATUS(res.status) });
    // A receiver's Retry-After is honoured, within the broadcaster's own backoff cap.
    if (res.retryAfter && /^\d+$/.test(res.retryAfter)) Object.assign(err, { retryAfterMs: Math.min(Number(res.retryAfter) * 1000, this.policy.maxDelayMs) });
    throw err;
  }

  /** One POST, bounded by timeoutMs; the answer's body is read (up to 4 KB kept), freeing the connection. */
  private request(headers: Record<string, string>, body: string, inFlight: Set<http.ClientRequest>): Promise<{ status: number; text: string; retryAfter: string | undefined }> {
    headers['content-length'] = String(Buffer.byteLength(body));
    return new Promise((resolve, reject) => {
      const req = this.mod.request({ ...this.target, method: 'POST', agent: this.agent, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 4096) text += c;
        });
        res.on('end', () => {
          clearTimeout(timer);
          inFlight.delete(req);
          const ra = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, text, retryAfter: Array.isArray(ra) ? ra[0] : ra });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          inFlight.delete(req);
          reject(e);
        });
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      inFlight.add(req);
      req.on('error', (e) => {
        clearTimeout(timer);
        inFlight.delete(req);
        reject(e);
      });
      req.end(body);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
