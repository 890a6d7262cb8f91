/**
 * What a broadcaster delivers: one matched record for one registration, its stable event id and
 * its JSON body (the same for the HTTP POST, a Kafka broadcaster's json value and the dead letter).
 */
import { TickflowError, messageOf } from '../core/errors.ts';
import type { Producer } from '../core/kafka.ts';
import { formatTime } from '../core/time.ts';
import { CATALOG, RECORD_KINDS, type AnyRecord, type RecordKind } from '../schemas/catalog.ts';

export interface Delivery {
  /** `<topic>:<partition>:<offset>:<registration>`: stable across restarts, for the receiver's deduplication. */
  readonly id: string;
  readonly registration: string;
  readonly broadcaster: string;
  readonly kind: RecordKind;
  readonly record: AnyRecord;
  /** The record's time (µs), for the latency record time → delivered. */
  readonly tsUs: number;
}

/** What a broadcaster says about one delivery. */
export type Outcome = { readonly ok: true; readonly attempts: number; readonly at: number } | { readonly ok: false; readonly attempts: number; readonly error: string };

/** A destination: delivers a list (in record order) and says, per delivery, what came of it. */
export interface Broadcaster {
  readonly name: string;
  readonly kind: 'http' | 'kafka';
  /** Its config as stored, to tell whether a reload changed it. */
  readonly configKey: string;
  /** Never rejects for a delivery's failure (that is an Outcome); rejects only when `signal` aborts. */
  deliver(deliveries: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]>;
  close(): Promise<void>;
}

export function eventId(topic: string, partition: number, offset: string | number, registration: string): string {
  return `${topic}:${partition}:${offset}:${registration}`;
}

const TIME_FIELDS: Readonly<Record<RecordKind, readonly string[]>> = Object.freeze(
  Object.fromEntries(RECORD_KINDS.map((k) => [k, CATALOG[k].columns.filter((c) => c.type === 'timestamptz').map((c) => c.name)])) as Record<RecordKind, string[]>,
);

/** The record as JSON: its fields, times (µs in Avro) as ISO 8601 UTC strings. */
export function recordJson(kind: RecordKind, record: AnyRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(record as unknown as Record<string, unknown>) };
  for (const f of TIME_FIELDS[kind]) {
    const v = out[f];
    if (typeof v === 'number') out[f] = formatTime(v);
  }
  return out;
}

/** The record's own time in µs: `ts` where the kind has it, else its time column. */
export function recordTimeUs(kind: RecordKind, record: AnyRecord): number {
  const r = record as unknown as Record<string, unknown>;
  const v = typeof r.ts === 'number' ? r.ts : r[CATALOG[kind].timeColumn];
  return typeof v === 'number' ? v : 0;
}

const bodies = new WeakMap<Delivery, string>();
/** Per record: the tail of its deliveries' bodies (kind, instrument, time, record), the same for every registration it matched. */
const tails = new WeakMap<AnyRecord, string>();

/**
 * The delivery's JSON body (computed once per delivery): the same text as JSON.stringify of
 * `{ id, registration, broadcaster, kind, exchange, symbol, ts, record }`, with the part after
 * `broadcaster` built once per record and spliced into each registration's body.
 */
export function deliveryBody(d: Delivery): string {
  let b = bodies.get(d);
  if (b === undefined) {
    let tail = tails.get(d.record);
    if (tail === undefined) {
      const r = d.record as unknown as { exchange: string; symbol: string };
      tail = JSON.stringify({ kind: d.kind, exchange: r.exchange, symbol: r.symbol, ts: formatTime(d.tsUs), record: recordJson(d.kind, d.record) }).slice(1);
      tails.set(d.record, tail);
    }
    b = `{"id":${JSON.stringify(d.id)},"registration":${JSON.stringify(d.registration)},"broadcaster":${JSON.stringify(d.broadcaster)},${tail}`;
    bodies.set(d, b);
  }
  return b;
}

/** A failed delivery, as the dead-letter topic holds it. */
export interface DeadLetter {
  readonly delivery: Delivery;
  readonly error: string;
  readonly attempts: number;
}

/**
 * The broadcast dead-letter topic `<prefix>.broadcast-dlq`: one JSON message per failed delivery,
 * `{ delivery: <the body>, broadcaster, error, attempts, failedAt }`, keyed by the event id. The
 * runner sends a batch's letters before it commits the batch (resolves once Kafka acknowledged
 * them), so a failure is never committed past without being in the topic.
 */
export class DeadLetters {
  private readonly producer: Producer;
  readonly topic: string;

  constructor(producer: Producer, topic: string) {
    this.producer = producer;
    this.topic = topic;
  }

  async send(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const failedAt = new Date().toISOString();
    try {
      await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: letters.map((l) => ({
          key: l.delivery.id,
          value: `{"delivery":${deliveryBody(l.delivery)},"broadcaster":${JSON.stringify(l.delivery.broadcaster)},"error":${JSON.stringify(l.error)},"attempts":${l.attempts},"failedAt":"${failedAt}"}`,
          headers: { 'x-tickflow-event-id': l.delivery.id },
        })),
      });
    } catch (e) {
      throw new TickflowError('DEAD_LETTER', `producing ${letters.length} failed deliveries to ${this.topic} failed: ${messageOf(e)}`, { retriable: true, cause: e });
    }
  }
}
