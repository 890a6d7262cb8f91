/**
 * What every HTTP server of tickflow answers alike: `/healthz` (and probes of the same shape,
 * like the API's `/readyz`), `/metrics` (Prometheus text from the process registry), and the
 * error envelope. One fastify plugin, registered by the query API, the sink's REST API and the
 * gateway's metrics server (core/metrics-server.ts).
 *
 * A health body is `{ status, checks: { <component>: { ok, error?, at?, state? } }, ... }`: the
 * status first (ok, starting, degraded, stopping), then one check per component it depends on;
 * a part may add its own fields beside them (the sink's connectors). The HTTP code is each
 * part's to choose (the sink answers 503 unless ok, the API's /healthz is liveness only).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { registry } from './metrics.ts';

export type HealthStatus = 'ok' | 'starting' | 'degraded' | 'stopping';

export interface Check {
  readonly ok: boolean;
  readonly error?: string;
  /** When this answer was obtained (ISO 8601), for a cached check. */
  readonly at?: string;
  /** A component with a lifecycle of its own says where it is (the API's live stream: live, starting, disabled …). */
  readonly state?: string;
}

/** The shape every health answer has; a part's own fields (the sink's connectors) come beside these. */
export interface HealthBody {
  readonly status: HealthStatus;
  readonly checks: Readonly<Record<string, Check>>;
}

export interface HealthAnswer {
  readonly code: 200 | 503;
  readonly body: HealthBody;
}

export type HealthProbe = () => Promise<HealthAnswer>;

/** The answer of a process that is up and depends on nothing it checks. */
export const ALIVE: HealthAnswer = Object.freeze({ code: 200, body: Object.freeze({ status: 'ok', checks: Object.freeze({}) }) });

const checkSchema = {
  type: 'object',
  properties: { ok: { type: 'boolean' }, error: { type: 'string' }, at: { type: 'string' }, state: { type: 'string' } },
  required: ['ok'],
  additionalProperties: true,
} as const;

export const HEALTH_BODY_SCHEMA = {
  type: 'object',
  description: 'status (ok, starting, degraded, stopping), one check per component, and what the part adds beside them',
  properties: {
    status: { type: 'string', enum: ['ok', 'starting', 'degraded', 'stopping'] },
    checks: { type: 'object', additionalProperties: checkSchema },
  },
  required: ['status', 'checks'],
  additionalProperties: true,
} as const;

// ---- the error envelope ---------------------------------------------------------------------

/** Every refusal and failure of every tickflow HTTP server: fastify's own shape, plus the parameter at fault. */
export interface ErrorBody {
  readonly statusCode: number;
  /** The HTTP reason phrase. */
  readonly error: string;
  readonly message: string;
  /** The query parameter, path parameter or body field at fault, when one is. */
  readonly parameter?: string;
}

export const ERROR_BODY_SCHEMA = {
  type: 'object',
  description: 'Why the request was refused; `parameter` names the parameter or field at fault.',
  properties: { statusCode: { type: 'integer' }, error: { type: 'string' }, message: { type: 'string' }, parameter: { type: 'string' } },
  required: ['statusCode', 'error', 'message'],
} as const;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function errorBody(statusCode: number, message: string, parameter?: string): ErrorBody {
  return { statusCode, error: REASONS[statusCode] ?? 'Error', message, ...(parameter ? { parameter } : {}) };
}

// ---- the plugin ---------------------------------------------------------------------------------

export interface OpsOptions {
  /** What GET /healthz answers; default ALIVE (the process answers). */
  readonly health?: HealthProbe;
  /** Further probes of the same shape, by path (the API's `/readyz`). */
  readonly probes?: Readonly<Record<string, { readonly summary: string; readonly probe: HealthProbe }>>;
}

const TAGS = ['operations'];

export const opsPlugin: FastifyPluginAsync<OpsOptions> = async (app, opts) => {
  const route = (url: string, summary: string, probe: HealthProbe) =>
    app.get(url, { schema: { summary, tags: TAGS, response: { 200: HEALTH_BODY_SCHEMA, 503: HEALTH_BODY_SCHEMA } } }, async (_req, reply) => {
      const { code, body } = await probe();
      return reply.code(code).send(body);
    });
  route('/healthz', opts.health ? 'Health: status and one check per component (503 unless ok, where the part says so)' : 'The process is up', opts.health ?? (async () => ALIVE));
  for (const [url, p] of Object.entries(opts.probes ?? {})) route(url, p.summary, p.probe);

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: TAGS, produces: ['text/plain'] } }, async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
};

/**
 * A bodiless request with `Content-Type: application/json` (`curl -X POST -H 'content-type:
 * application/json' …/pause`) is a request without a body, not a 400; a body is parsed as
 * fastify's own JSON parser does (prototype poisoning refused). For the scope it is called in.
 */
export function acceptBodilessJson(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    return json(req, text, done);
  });
}
