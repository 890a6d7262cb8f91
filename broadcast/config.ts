import { z } from 'zod';
import type { SharedConfig } from '../core/config.ts';
import { broadcasterSchema, registrationSchema } from './model.ts';

/**
 * The `broadcast:` section of the config (composed with the others in config/schema.ts): the
 * runtime's consumer group and reload period, and broadcasters and registrations declared in the
 * file. Entries have the REST bodies' shape (broadcast/model.ts), are validated here with the
 * same rules (a bad predicate names its token and position), and are upserted into the database
 * at start with source `config` (broadcast/store.ts syncConfigEntries).
 */
export const broadcastSchema = z
  .strictObject({
    /** Kafka consumer group of the runtime; its delivery positions live in broadcast_offsets under this id. */
    groupId: z.string().min(1).max(255).default('tickflow-broadcast'),
    /** How often the runtime looks for changed broadcasters and registrations. */
    reloadMs: z.int().min(50).max(600_000).default(1_000),
    /** `tickflow broadcast`'s /metrics and /healthz (a process of its own; `tickflow start` serves them on the API). */
    metricsHost: z.string().min(1).default('127.0.0.1'),
    metricsPort: z.int().min(0).max(65535).default(9465),
    /** HTTP requests in flight at once per HTTP broadcaster (a registration's deliveries for one instrument stay in order). */
    httpConcurrency: z.int().min(1).max(1_000).default(16),
    /** A partition's batch is cut into chunks of at most this many records, each matched, delivered, then its position committed. */
    batchMaxRecords: z.int().min(1).max(100_000).default(2_000),
    /** Where deliveries that exhausted their retries go; default `<kafka.topicPrefix>.broadcast-dlq`. */
    deadLetterTopic: z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name').optional(),
    broadcasters: z.array(broadcasterSchema).default([]),
    registrations: z.array(registrationSchema).default([]),
  })
  .superRefine((c, ctx) => {
    for (const key of ['broadcasters', 'registrations'] as const) {
      const seen = new Set<string>();
      c[key].forEach((e, i) => {
        if (seen.has(e.name)) ctx.addIssue({ code: 'custom', path: [key, i, 'name'], message: `"${e.name}" is declared twice` });
        seen.add(e.name);
      });
    }
  })
  .prefault({});

export type BroadcastConfig = z.infer<typeof broadcastSchema>;

/** The config as the broadcast runtime reads it. */
export type ConfigForBroadcast = SharedConfig & { readonly broadcast: BroadcastConfig };

export function deadLetterTopicOf(config: Pick<ConfigForBroadcast, 'kafka' | 'broadcast'>): string {
  return config.broadcast.deadLetterTopic ?? `${config.kafka.topicPrefix}.broadcast-dlq`;
}
