import { TickflowError, messageOf } from '../core/errors.ts';
import type { IHeaders, Producer } from '../core/kafka.ts';
import type { SinkEmitter } from './events.ts';
import type { DeadLetter } from './writer.ts';

/**
 * Dead letters: a record that cannot be decoded, fails validation or is rejected by the database
 * goes to the connector's dead-letter topic with its original key, value and headers, plus the
 * headers below saying why and where it came from. The writer calls `send` before it commits the
 * batch: it resolves once Kafka acknowledged every letter (acks -1), so a bad record is never
 * committed past without being in the dead-letter topic.
 */

export const DLQ_HEADERS = {
  reason: 'dlq.reason',
  stage: 'dlq.stage',
  topic: 'dlq.topic',
  partition: 'dlq.partition',
  offset: 'dlq.offset',
  connector: 'dlq.connector',
} as const;

/** Longest `dlq.reason` header, in characters. */
const REASON_MAX = 2000;

export class DeadLetters {
  private readonly producer: Producer;
  private readonly topic: string;
  private readonly connector: string;
  private readonly events: SinkEmitter;

  constructor(producer: Producer, topic: string, connector: string, events: SinkEmitter) {
    this.producer = producer;
    this.topic = topic;
    this.connector = connector;
    this.events = events;
  }

  /** Produces the letters and waits for Kafka's ack; a failure is retriable (the batch is rolled back). */
  async send(letters: readonly DeadLetter[]): Promise<void> {
    try {
      await this.producer.send({ topic: this.topic, acks: -1, messages: letters.map((l) => this.message(l)) });
    } catch (e) {
      throw new TickflowError('DEAD_LETTER', `producing ${letters.length} record(s) to the dead-letter topic ${this.topic} failed: ${messageOf(e)}`, { retriable: true, cause: e });
    }
    for (const l of letters) {
      this.events.emit('deadLetter', { connector: this.connector, topic: l.topic, partition: l.partition, offset: String(l.item.offset), stage: l.stage, reason: l.reason });
    }
  }

  private message(l: DeadLetter): { key: Buffer | null; value: Buffer | null; headers: IHeaders } {
    return {
      key: l.item.message.key,
      value: l.item.message.value,
      headers: {
        ...(l.item.message.headers as IHeaders | undefined),
        [DLQ_HEADERS.reason]: l.reason.slice(0, REASON_MAX),
        [DLQ_HEADERS.stage]: l.stage,
        [DLQ_HEADERS.topic]: l.topic,
        [DLQ_HEADERS.partition]: String(l.partition),
        [DLQ_HEADERS.offset]: String(l.item.offset),
        [DLQ_HEADERS.connector]: this.connector,
      },
    };
  }
}
