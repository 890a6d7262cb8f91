/**
 * The live stream's resources: the hub (one Kafka consumer per API process), decorated as
 * `app.hub` and closed with the app. It connects in the background, so the REST routes serve
 * while Kafka is away; /readyz reports its state and subscriptions wait a moment for it.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createCodec, type AvroCodec } from '../../core/avro.ts';
import type { ConfigForApi } from '../config.ts';
import { messageOf } from '../../core/errors.ts';
import { logger } from '../../core/log.ts';
import { resolveBrokers } from '../../infra/brokers.ts';
import { StreamHub } from '../stream/hub.ts';

declare module 'fastify' {
  interface FastifyInstance {
    hub: StreamHub | undefined;
  }
}

export interface StreamPluginOptions {
  readonly config: ConfigForApi;
  /** Brokers to consume from; undefined: the configured ones or the local broker; false: no stream. */
  readonly brokers?: readonly string[] | false | undefined;
  readonly codec?: AvroCodec | undefined;
}

const log = logger('api-stream');

async function stream(app: FastifyInstance, opts: StreamPluginOptions): Promise<void> {
  const { config } = opts;
  let brokers: readonly string[] | undefined;
  if (opts.brokers === false || !config.api.stream.enabled) brokers = undefined;
  else if (opts.brokers) brokers = opts.brokers;
  else {
    try {
      brokers = await resolveBrokers(config);
    } catch (e) {
      // Configured brokers that don't answer yet are retried by the hub; no broker at all means no stream.
      brokers = config.kafka.brokers.length > 0 ? config.kafka.brokers : undefined;
      log.warn({ err: messageOf(e) }, brokers ? 'live stream: Kafka unreachable for now; will retry' : 'live stream disabled: no Kafka');
    }
  }
  if (!brokers) {
    app.decorate('hub', undefined);
    return;
  }
  // Decoding needs no prepare(): Confluent schema ids are fetched from the registry on first sight.
  const codec = opts.codec ?? createCodec(config.kafka);
  const hub = new StreamHub({
    kafka: { ...config.kafka, brokers: [...brokers], clientId: `${config.kafka.clientId}-api` },
    codec,
    recentWindowMs: config.api.stream.recentWindowMs,
    recentMaxRecords: config.api.stream.recentMaxRecords,
    events: app.events,
  });
  app.decorate('hub', hub);
  app.addHook('onReady', async () => hub.startInBackground());
  app.addHook('onClose', async () => hub.close());
}

export const streamPlugin = fp(stream, { name: 'tickflow-stream-hub', fastify: '5.x', dependencies: ['tickflow-database'] });
