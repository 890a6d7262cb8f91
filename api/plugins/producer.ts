/**
 * The API's Kafka producer, for what the API itself publishes (user events, POST /v1/events):
 * decorated as `app.publisher`, connected on first use (so the REST routes serve while Kafka is
 * away, and an API that never publishes never connects), closed with the app. Idempotent and
 * acks=all like the gateways' (core/kafka.ts); a send that fails is an error the route answers
 * with 503, never a silent drop.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createCodec, type AvroCodec } from '../../core/avro.ts';
import { TickflowError, messageOf } from '../../core/errors.ts';
import { createKafka, createProducer, ensureTopics, recordKey, type Kafka, type Producer } from '../../core/kafka.ts';
import { resolveBrokers } from '../../infra/brokers.ts';
import { topicFor, type RecordKind, type RecordOf } from '../../schemas/catalog.ts';
import type { ConfigForApi } from '../config.ts';
import { ApiError } from '../errors.ts';

export interface Publisher {
  /** Produces the records (acks=all), keyed `exchange:symbol`; throws an ApiError 503 when Kafka does not take them. */
  send<K extends RecordKind>(kind: K, records: readonly RecordOf[K][]): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Undefined when the API runs without Kafka (deps.brokers false). */
    publisher: Publisher | undefined;
  }
}

export interface ProducerPluginOptions {
  readonly config: ConfigForApi;
  /** undefined: the configured brokers or the local broker; false: no Kafka. */
  readonly brokers?: readonly string[] | false | undefined;
  readonly codec?: AvroCodec | undefined;
}

async function producer(app: FastifyInstance, opts: ProducerPluginOptions): Promise<void> {
  const { config } = opts;
  if (opts.brokers === false) {
    app.decorate('publisher', undefined);
    return;
  }
  const codec = opts.codec ?? createCodec(config.kafka);
  let connecting: Promise<{ producer: Producer; kafka: Kafka }> | undefined;
  let closed = false;
  const topicsReady = new Set<RecordKind>();

  const connect = (): Promise<{ producer: Producer; kafka: Kafka }> => {
    connecting ??= (async () => {
      const brokers = opts.brokers ? [...opts.brokers] : await resolveBrokers(config);
      const kafka = createKafka({ ...config.kafka, brokers, clientId: `${config.kafka.clientId}-api` });
      await codec.prepare();
      const p = createProducer(kafka);
      await p.connect();
      return { producer: p, kafka };
    })().catch((e: unknown) => {
      // Forgotten, so the next request tries again.
      connecting = undefined;
      throw e;
    });
    return connecting;
  };

  const publisher: Publisher = {
    async send(kind, records) {
      if (closed) throw new ApiError(503, 'the API is closing; retry');
      try {
        const { producer: p, kafka } = await connect();
        if (!topicsReady.has(kind)) {
          await ensureTopics(kafka, config.kafka, [kind]);
          topicsReady.add(kind);
        }
        await p.send({
          topic: topicFor(config.kafka.topicPrefix, kind),
          acks: -1,
          messages: records.map((r) => ({ key: recordKey(r), value: codec.encode(kind, r) })),
        });
      } catch (e) {
        if (e instanceof ApiError) throw e;
        if (e instanceof TickflowError && e.code === 'AVRO_ENCODE') throw e;
        app.events.emit('events.publishFailed', { kind, error: messageOf(e) });
        throw new ApiError(503, `Kafka did not take the ${kind} records (${messageOf(e)}); retry (with the same idempotency key: nothing is written twice)`, { cause: e });
      }
    },
  };
  app.decorate('publisher', publisher);
  app.addHook('onClose', async () => {
    closed = true;
    const c = connecting;
    if (!c) return;
    try {
      await (await c).producer.disconnect();
    } catch {
      // Never connected: nothing to close.
    }
  });
}

export const producerPlugin = fp(producer, { name: 'tickflow-producer', fastify: '5.x' });
