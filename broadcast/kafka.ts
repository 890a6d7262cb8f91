/**
 * The Kafka broadcaster: matched records to a topic of the user's on tickflow's own cluster,
 * keyed `<exchange>|<symbol>` (each instrument in order within a partition); the value is the
 * delivery's JSON body (format json) or the record's Avro encoding in tickflow's framing (format
 * avro: Confluent wire format with the schema registry, else single-object encoding). One produce
 * per batch, acknowledged by all in-sync replicas, retried within the broadcaster's budget
 * (RETRY.broadcastHttp); what still fails is dead-lettered like an HTTP delivery.
 */
import type { AvroCodec } from '../core/avro.ts';
import { messageOf } from '../core/errors.ts';
import type { Producer } from '../core/kafka.ts';
import { RETRY, retry } from '../core/retry.ts';
import type { RecordOf } from '../schemas/catalog.ts';
import { deliveryBody, type Broadcaster, type Delivery, type Outcome } from './delivery.ts';
import type { BroadcastEmitter } from './events.ts';
import type { KafkaConfig } from './model.ts';

export class KafkaBroadcaster implements Broadcaster {
  readonly name: string;
  private readonly config: KafkaConfig;
  private readonly producer: Producer;
  private readonly codec: AvroCodec;
  private readonly events: BroadcastEmitter;
  readonly kind = 'kafka' as const;
  readonly configKey: string;

  constructor(name: string, config: KafkaConfig, producer: Producer, codec: AvroCodec, events: BroadcastEmitter) {
    this.name = name;
    this.config = config;
    this.producer = producer;
    this.codec = codec;
    this.events = events;
    this.configKey = JSON.stringify(config);
  }

  get topic(): string {
    return this.config.topic;
  }

  async deliver(deliveries: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    if (deliveries.length === 0) return [];
    const avro = this.config.format === 'avro';
    const messages = deliveries.map((d) => {
      const r = d.record as unknown as { exchange: string; symbol: string };
      return {
        key: `${r.exchange}|${r.symbol}`,
        value: avro ? this.codec.encode(d.kind, d.record as RecordOf[typeof d.kind]) : deliveryBody(d),
        headers: { 'x-tickflow-event-id': d.id },
      };
    });
    let attempts = 0;
    try {
      await retry(
        async (attempt) => {
          attempts = attempt;
          await this.producer.send({ topic: this.config.topic, acks: -1, messages });
        },
        {
          ...RETRY.broadcastHttp,
          signal,
          onRetry: (err, attempt, delayMs) => this.events.emit('retry', { broadcaster: this.name, registration: deliveries[0]!.registration, id: deliveries[0]!.id, attempt, delayMs, error: messageOf(err) }),
        },
      );
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      return deliveries.map(() => ({ ok: false as const, attempts, error: `producing to ${this.config.topic}: ${messageOf(e)}` }));
    }
    const at = Date.now();
    return deliveries.map(() => ({ ok: true as const, attempts, at }));
  }

  async close(): Promise<void> {}
}
