/**
 * The query API: `buildApi(config, deps)` returns a startable, closable API around a fastify
 * instance (`api.app`, for `app.inject()` in tests). Resources are plugins closed with the app:
 * the database (plugins/database.ts) and the live stream's Kafka consumer (plugins/stream.ts).
 * Routes, one plugin per group, all under /v1 except the page and the operations routes:
 *   GET /v1/ohlcv, /v1/trades, /v1/sample      market data over a range (routes/ohlcv, trades, sample)
 *   GET /v1/tickers/latest, /v1/instruments,
 *       /v1/coverage                           what is held (routes/reference)
 *   GET /v1/stream (websocket)                 live records, replayed from `since` (routes/stream)
 *   /v1/broadcasters, /v1/registrations        broadcast definitions: CRUD, pause, status (routes/broadcast)
 *   POST, GET /v1/events                       user events: posted to Kafka, read back (routes/events)
 *   GET /docs, /docs/json                      OpenAPI UI and document
 *   GET /healthz, /readyz, /metrics            operations (routes/ops)
 *   GET /                                      the live chart page (routes/page, public/)
 * With `api.token` set, writes and the broadcast routes need the bearer token (plugins/auth.ts).
 */
import websocket from '@fastify/websocket';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { AvroCodec } from '../core/avro.ts';
import type { ConfigForApi } from './config.ts';
import type { Pool } from '../core/db.ts';
import { logger } from '../core/log.ts';
import { errorBody } from '../core/ops.ts';
import { ApiError, describeValidation, isFastifyValidation, translateDbError } from './errors.ts';
import { ApiEvents } from './events.ts';
import { attachTelemetry, metrics } from './telemetry.ts';
import { databasePlugin } from './plugins/database.ts';
import { producerPlugin } from './plugins/producer.ts';
import { streamPlugin } from './plugins/stream.ts';
import { authPlugin } from './plugins/auth.ts';
import { broadcastRoutes } from './routes/broadcast.ts';
import { eventsRoutes } from './routes/events.ts';
import { ohlcvRoutes } from './routes/ohlcv.ts';
import { opsRoutes } from './routes/ops.ts';
import { pageRoutes } from './routes/page.ts';
import { referenceRoutes } from './routes/reference.ts';
import { sampleRoutes } from './routes/sample.ts';
import { streamRoutes } from './routes/stream.ts';
import { tradesRoutes } from './routes/trades.ts';
import { MethodIndex } from './methods.ts';
import { addSharedSchemas } from './schemas.ts';
import { maxMessageBytes } from './stream/session.ts';
import { decimalNumbersKeyword, plainNumbersOnRoute } from './validation.ts';

export interface ApiDeps {
  /** A pool to query (not closed by the API; size 1 is fine); absent: the configured database, opened and migrated here. */
  readonly pool?: Pool;
  /** Kafka brokers for /v1/stream; absent: the configured ones or the local broker; false: no live stream. */
  readonly brokers?: readonly string[] | false;
  /** The Avro codec of the Kafka values; absent: from config.kafka. */
  readonly codec?: AvroCodec;
}

export interface Api {
  readonly app: FastifyInstance;
  /** What happens in this API (events.ts), feeding its metrics and logs; tests may listen. */
  readonly events: ApiEvents;
  /** Listens on api.host:api.port; resolves with the base URL. */
  start(): Promise<string>;
  close(): Promise<void>;
}

export function buildApi(config: ConfigForApi, deps: ApiDeps = {}): Api {
  const cfg = config.api;
  const app = Fastify({
    loggerInstance: logger('api') as FastifyBaseLogger,
    // Requests are measured (tickflow_api_request_duration_seconds), not logged one by one.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
    return503OnClosing: true,
    // Unknown query parameters are refused by name, not silently dropped.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false }, plugins: [decimalNumbersKeyword as never] },
  });
  const events = new ApiEvents();
  attachTelemetry(events);
  app.decorate('events', events);
  // Integers in query strings are decimal digits, on every route (api/validation.ts).
  app.addHook('onRoute', plainNumbersOnRoute);
  const methods = new MethodIndex();
  app.addHook('onRoute', methods.add);

  addSharedSchemas(app);
  if (cfg.docs) {
    void app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'tickflow query API',
          version: '1',
          description:
            'Market data collected by tickflow: OHLCV at any interval, trades, latest tickers, instruments, coverage, generic sampling, and a live websocket. JSON `{ "data": [rows], "next": cursor-or-null }` by default; CSV on `Accept: text/csv` (or `format=csv`). Times are ISO 8601 UTC; symbols are ccxt unified (URL-encode the slash). Every refused parameter gets a 400 naming it.',
        },
        tags: [
          { name: 'market data', description: 'Records and aggregates over a time range' },
          { name: 'reference', description: 'What is held' },
          { name: 'stream', description: 'Live records' },
          { name: 'broadcast', description: 'Broadcasters (HTTP endpoints, Kafka topics) and the registrations that route matching records to them; bearer token when api.token is set' },
          { name: 'events', description: 'User events: post your own (signals, notes, fills) beside the market data, read them back' },
          { name: 'operations', description: 'Health and metrics' },
        ],
      },
      refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    });
    void app.register(swaggerUi, { routePrefix: '/docs' });
  }
  // The payload limit follows maxInstruments, so a subscription the protocol allows always fits.
  void app.register(websocket, {
    options: { maxPayload: maxMessageBytes(cfg.stream) },
    // A client breaking the protocol or the size limit (ws's WS_ERR_* codes) is told why and
    // closed by ws itself (api/stream/session.ts): the client's mistake, not the server's, and a
    // terminate here could drop the explanation before it is written.
    errorHandler: (err, socket, req) => {
      const code: unknown = (err as Error & { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('WS_ERR_')) return req.log.debug({ err: err.message }, 'websocket client error');
      req.log.error({ err }, 'websocket handler failed');
      socket.terminate();
    },
  });
  void app.register(databasePlugin, { config, pool: deps.pool });
  void app.register(streamPlugin, { config, brokers: deps.brokers, codec: deps.codec });
  void app.register(producerPlugin, { config, brokers: deps.brokers, codec: deps.codec });

  void app.register(authPlugin, { token: cfg.token });

  app.addHook('onResponse', async (req, reply) => {
    metrics.requestDuration.observe({ route: req.routeOptions.url ?? 'unmatched', method: req.method, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isFastifyValidation(err)) {
      const d = describeValidation(err.validation, err.validationContext);
      return reply.code(400).type('application/json; charset=utf-8').send(errorBody(400, d.message, d.parameter));
    }
    const e = translateDbError(err, cfg.statementTimeoutMs);
    if (e instanceof ApiError) {
      if (e.statusCode >= 500) events.emit('request.unavailable', { reqId: req.id, url: req.url, error: e.message });
      return reply.code(e.statusCode).type('application/json; charset=utf-8').send(errorBody(e.statusCode, e.message, e.parameter));
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // A body fastify could not read (bad JSON, too large, empty): the body is the parameter at fault.
      const body = err.code?.startsWith('FST_ERR_CTP_') ? 'body' : undefined;
      return reply.code(err.statusCode).type('application/json; charset=utf-8').send(errorBody(err.statusCode, body ? `body: ${err.message}` : err.message, body));
    }
    events.emit('request.failed', { reqId: req.id, url: req.url, err });
    return reply.code(500).type('application/json; charset=utf-8').send(errorBody(500, 'internal error (logged on the server)'));
  });
  // A path served under other methods: 405 with Allow (204 for OPTIONS), answered on arrival,
  // before a body method's content-type checks could refuse it first.
  app.addHook('onRequest', async (req, reply) => {
    if (!req.is404) return;
    const path = req.url.split('?')[0] ?? '/';
    const allow = methods.allowed(path);
    if (allow.length === 0) return;
    reply.header('allow', allow.join(', '));
    if (req.method === 'OPTIONS') return reply.code(204).send();
    return reply.code(405).type('application/json; charset=utf-8').send(errorBody(405, `method ${req.method} not allowed on ${path} (allowed: ${allow.join(', ')})`));
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(404, `no route ${req.method} ${req.url.split('?')[0]} (see /docs)`)));

  void app.register(ohlcvRoutes, { config: cfg });
  void app.register(tradesRoutes, { config: cfg });
  void app.register(sampleRoutes, { config: cfg });
  void app.register(referenceRoutes, { config: cfg });
  void app.register(streamRoutes, { config: cfg });
  void app.register(broadcastRoutes);
  void app.register(eventsRoutes, { config: cfg, eventsRetention: config.sink?.policies?.retention?.events ?? null });
  void app.register(opsRoutes);
  void app.register(pageRoutes);

  return {
    app,
    events,
    async start() {
      await app.listen({ host: cfg.host, port: cfg.port });
      if (!cfg.token && !['127.0.0.1', '::1', 'localhost'].includes(cfg.host)) {
        app.log.warn({ host: cfg.host }, 'the API listens beyond localhost without a token: anyone reaching it can define broadcasters (set api.token or TICKFLOW_API_TOKEN)');
      }
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
      const host = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
      return `http://${host}:${port}`;
    },
    close: () => app.close(),
  };
}
