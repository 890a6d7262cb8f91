import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { isTickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { ERROR_BODY_SCHEMA, acceptBodilessJson, errorBody, opsPlugin } from '../core/ops.ts';
import { CHECK_TIMEOUT_MS, withTimeout, type SinkHealth } from './health.ts';
import { CONNECTOR_STATES } from './events.ts';
import { ManagerError, type ConnectorManager, type ManagedConnector } from './manager.ts';

/**
 * The sink's REST API, shaped like Kafka Connect's: `/connectors` (list, create), and per
 * connector its config, status (state, lag per partition, counts, last error), pause, resume,
 * restart and delete. With a token configured every `/connectors` request needs
 * `Authorization: Bearer <token>`; `/metrics` (Prometheus) and `/healthz` stay open.
 */

export interface ApiOptions {
  readonly token: string | undefined;
  /** The running connectors (throws a 503 ManagerError while the sink is starting). */
  readonly manager: () => ConnectorManager;
  /** What /healthz reports; absent: always ok (an API built for tests alone). */
  readonly health?: SinkHealth;
}

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 100 } },
} as const;

const errorSchema = ERROR_BODY_SCHEMA;

const connectorInfo = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    type: { type: 'string' },
    source: { type: 'string', enum: ['config', 'api'] },
    config: { type: 'object', additionalProperties: true },
  },
} as const;

const statusBody = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    state: { type: 'string', enum: [...CONNECTOR_STATES] },
    table: { type: 'string' },
    topics: { type: 'array', items: { type: 'string' } },
    rowsWritten: { type: 'integer' },
    messagesProcessed: { type: 'integer' },
    deadLettered: { type: 'integer' },
    retries: { type: 'integer' },
    lastError: { type: ['string', 'null'] },
    lastErrorAt: { type: ['string', 'null'] },
    lastBatchAt: { type: ['string', 'null'] },
    problem: { type: ['string', 'null'] },
    lag: { type: ['integer', 'null'] },
    partitions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          topic: { type: 'string' },
          partition: { type: 'integer' },
          nextOffset: { type: ['integer', 'null'] },
          highWatermark: { type: 'integer' },
          lag: { type: 'integer' },
          assigned: { type: 'boolean' },
        },
      },
    },
    partitionsError: { type: 'string' },
  },
} as const;

function info(c: ManagedConnector) {
  const { name, ...config } = c.config;
  return { name, type: 'sink', source: c.source, config };
}

function bearerOk(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

export const connectorRoutes: FastifyPluginAsync<ApiOptions> = async (app, { manager: mgr }) => {
  app.get('/connectors', { schema: { response: { 200: { type: 'array', items: { type: 'string' } } } } }, async () => mgr().names());

  app.post<{ Body: { name: string; config: Record<string, unknown> } }>(
    '/connectors',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'config'],
          additionalProperties: false,
          properties: { name: { type: 'string' }, config: { type: 'object' } },
        },
        response: { 201: connectorInfo, 400: errorSchema, 409: errorSchema, 503: errorSchema },
      },
    },
    async (req, reply) => {
      // Checked completely (schema, the table in the database, the topics in Kafka) before
      // anything is stored; errors name the field (`name`, `config.<key>`) and what is allowed.
      const c = await mgr().create(req.body);
      return reply.code(201).send(info(c));
    },
  );

  app.put<{ Params: { name: string }; Body: Record<string, unknown> }>(
    '/connectors/:name/config',
    { schema: { params: nameParams, body: { type: 'object' }, response: { 200: connectorInfo, 201: connectorInfo, 400: errorSchema, 409: errorSchema, 503: errorSchema } } },
    async (req, reply) => {
      // The same complete check as a create, before anything is stored.
      const { connector, created } = await mgr().update(req.params.name, req.body);
      return reply.code(created ? 201 : 200).send(info(connector));
    },
  );

  app.get<{ Params: { name: string } }>('/connectors/:name', { schema: { params: nameParams, response: { 200: connectorInfo, 404: errorSchema } } }, async (req) => info(mgr().get(req.params.name)));

  app.get<{ Params: { name: string } }>('/connectors/:name/status', { schema: { params: nameParams, response: { 200: statusBody, 404: errorSchema, 503: errorSchema } } }, async (req) => {
    const c = mgr().get(req.params.name);
    // Bounded: Kafka or the database unreachable must not hang the answer; it says what is wrong.
    const [partitions, kafka] = await Promise.all([
      withTimeout(c.partitions(), CHECK_TIMEOUT_MS, 'Kafka and the database gave no partition offsets').then(
        (p) => ({ p }),
        (e: unknown) => ({ e: messageOf(e) }),
      ),
      c.kafkaCheck(),
    ]);
    const status = c.status();
    const problems = [status.problem, kafka && !kafka.ok ? `Kafka unreachable: ${kafka.error}` : null].filter((p): p is string => p !== null && p !== undefined);
    const problem = problems.length > 0 ? [...new Set(problems)].join('; ') : null;
    if ('p' in partitions) return { ...status, problem, lag: partitions.p.reduce((n, p) => n + p.lag, 0), partitions: partitions.p };
    return { ...status, problem: problem ?? partitions.e, lag: null, partitions: [], partitionsError: partitions.e };
  });

  const action = (path: string, method: 'PUT' | 'POST', run: (name: string) => Promise<void>, code: number) =>
    app.route<{ Params: { name: string } }>({
      method,
      url: `/connectors/:name/${path}`,
      schema: { params: nameParams, response: { 404: errorSchema } },
      handler: async (req, reply) => {
        await run(req.params.name);
        return reply.code(code).send();
      },
    });
  action('pause', 'PUT', (n) => mgr().pause(n), 202);
  action('resume', 'PUT', (n) => mgr().resume(n), 202);
  action('restart', 'POST', (n) => mgr().restart(n), 204);

  app.delete<{ Params: { name: string } }>('/connectors/:name', { schema: { params: nameParams, response: { 404: errorSchema, 409: errorSchema } } }, async (req, reply) => {
    await mgr().remove(req.params.name);
    return reply.code(204).send();
  });
};

/** The database (or the network to it) failing, as opposed to a bug: a 503, not a 500. */
function unreachable(e: unknown): boolean {
  if (isTickflowError(e)) return e.retriable;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return /Connection terminated|timeout exceeded when trying to connect/i.test(messageOf(e));
  return /^(08|53|57|58)/.test(code) || /^E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NOTFOUND)$/.test(code);
}

export function buildConnectApi(opts: ApiOptions): FastifyInstance {
  const log = logger('sink').child({ module: 'api' });
  const app = Fastify({ logger: false });
  acceptBodilessJson(app);

  app.addHook('onRequest', async (req, reply) => {
    if (!opts.token || !req.url.startsWith('/connectors')) return;
    if (!bearerOk(req.headers.authorization, opts.token)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send(errorBody(401, 'missing or wrong bearer token (Authorization: Bearer <token>)'));
    }
  });

  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, _req, reply) => {
    // One envelope with the query API (core/ops.ts errorBody).
    if (err instanceof ManagerError) return reply.code(err.status).send(errorBody(err.status, err.message));
    // Schema validation and unparsable JSON: a 400 naming what was wrong.
    if (err.validation || (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500)) {
      const code = err.statusCode ?? 400;
      return reply.code(code).send(errorBody(code, err.message));
    }
    // The database unreachable mid-request: the sink retries its own work; the client may too.
    if (unreachable(err)) return reply.code(503).send(errorBody(503, `the database is unreachable: ${messageOf(err)}`));
    log.error({ err: messageOf(err) }, 'sink API request failed');
    return reply.code(500).send(errorBody(500, messageOf(err)));
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(404, `no route ${req.method} ${req.url}`)));

  // /healthz: 200 when running and Kafka, the database and every connector are fine; else 503
  // with the phase (starting: what it waits for) and what is wrong. /metrics beside it.
  const health = opts.health;
  void app.register(opsPlugin, health ? { health: () => health.answer() } : {});
  void app.register(connectorRoutes, opts);
  return app;
}
