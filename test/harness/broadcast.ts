/**
 * Helpers for the broadcast runtime's end-to-end tests: a local HTTP receiver (node:http) that
 * records every delivery and answers as the test says, registrations and broadcasters written
 * into the database as the REST API stores them, a config per test, and waiting until the
 * consumer group has delivered and committed everything in a topic.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inject } from 'vitest';
import { parseBroadcaster, parseRegistration } from '../../broadcast/model.ts';
import { insertBroadcaster, insertRegistration } from '../../broadcast/store.ts';
import { parseConfig, type Config } from '../../config/schema.ts';
import type { Pool } from '../../core/db.ts';
import { partitionOffsets, type Kafka } from '../../core/kafka.ts';
import { sleep } from '../../core/retry.ts';

export interface Received {
  readonly id: string;
  readonly raw: string;
  readonly body: {
    id: string;
    registration: string;
    broadcaster: string;
    kind: string;
    exchange: string;
    symbol: string;
    ts: string;
    record: Record<string, unknown>;
  };
  readonly headers: IncomingHttpHeaders;
  /** Wall-clock ms when it arrived. */
  readonly at: number;
}

export interface Receiver {
  readonly url: string;
  /** Deliveries answered 2xx, in arrival order. */
  readonly got: Received[];
  /** Every request, whatever the answer. */
  requests: number;
  close(): Promise<void>;
}

/**
 * A webhook receiver. `answer(n)` gives the status of the n-th request (0-based; default 200)
 * and may delay it; only 2xx answers count as received.
 */
export async function startReceiver(answer: (n: number) => number | Promise<number> = () => 200): Promise<Receiver> {
  const r: Receiver = {
    url: '',
    got: [],
    requests: 0,
    close: async () => undefined,
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = r.requests++;
      void (async () => {
        const status = await answer(n);
        if (status >= 200 && status < 300) {
          const raw = Buffer.concat(chunks).toString('utf8');
          r.got.push({ id: String(req.headers['x-tickflow-event-id']), raw, body: JSON.parse(raw) as Received['body'], headers: req.headers, at: Date.now() });
        }
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'not now');
      })();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(r, {
    url: `http://127.0.0.1:${port}/hook`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** A broadcaster, validated and stored as `POST /v1/broadcasters` does (broadcast/model.ts, store.ts). */
export async function addBroadcaster(pool: Pool, name: string, kind: 'http' | 'kafka', config: Record<string, unknown>, paused = false): Promise<void> {
  if (!(await insertBroadcaster(pool, parseBroadcaster({ name, kind, config, paused })))) throw new Error(`broadcaster ${name} exists`);
}

/** A registration, validated (its predicate compiled) and stored as `POST /v1/registrations` does. */
export async function addRegistration(pool: Pool, r: { name: string; broadcaster: string; kind: string; exchange?: string; symbol?: string; predicate?: string | null; paused?: boolean }): Promise<void> {
  const body = { name: r.name, broadcaster: r.broadcaster, kind: r.kind, exchange: r.exchange ?? '*', symbol: r.symbol ?? '*', predicate: r.predicate ?? null, paused: r.paused ?? false };
  if (!(await insertRegistration(pool, parseRegistration(body)))) throw new Error(`registration ${r.name} exists`);
}

/** A config of the test's own: topic prefix, consumer group, a fast reload, /metrics on a free port. */
export function broadcastTestConfig(prefix: string, broadcast: Record<string, unknown> = {}): Config {
  return parseConfig(
    {
      kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 2, retentionMs: 3_600_000 },
      broadcast: { groupId: `${prefix}-broadcast`, reloadMs: 200, metricsPort: 0, ...broadcast },
    },
    { env: {} },
  );
}

/** Per partition of `topic` with records: the group's stored next offset and the high watermark. */
export async function positions(pool: Pool, kafka: Kafka, groupId: string, topic: string): Promise<{ partition: number; stored: number | undefined; high: number }[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const high = await partitionOffsets(admin, topic);
    const rows = (await pool.query<{ partition: number; next_offset: number }>('select partition, next_offset from broadcast_offsets where group_id = $1 and topic = $2', [groupId, topic])).rows;
    return [...high].filter(([, o]) => o.high > 0).map(([partition, o]) => ({ partition, stored: rows.find((r) => r.partition === partition)?.next_offset, high: o.high }));
  } finally {
    await admin.disconnect();
  }
}

/** Waits until the group has committed every record of `topic` (stored offsets at the high watermarks). */
export async function waitCaughtUp(pool: Pool, kafka: Kafka, groupId: string, topic: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await positions(pool, kafka, groupId, topic);
    if (p.length > 0 && p.every((x) => x.stored === x.high)) return;
    if (Date.now() > deadline) throw new Error(`broadcast group ${groupId} did not catch up with ${topic}: ${JSON.stringify(p)}`);
    await sleep(200);
  }
}

/**
 * Levels around a start price, so a short random walk from it crosses some of them whatever way
 * it drifts: `price crosses above l1 or price crosses above l2 ...`.
 */
export function crossLevels(start: number, step: number, n = 4): number[] {
  return Array.from({ length: 2 * n + 1 }, (_, i) => start + (i - n) * step);
}

export function crossesAbovePredicate(levels: readonly number[]): string {
  return levels.map((l) => `price crosses above ${l}`).join(' or ');
}

/** The independent count: the trades whose price went from <= a level (the previous trade's) to > it. */
export function crossingsAbove<T extends { price: number }>(trades: readonly T[], levels: readonly number[]): T[] {
  return trades.filter((t, i) => i > 0 && levels.some((l) => trades[i - 1]!.price <= l && t.price > l));
}
