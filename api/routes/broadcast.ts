/**
 * Broadcasters and registrations over REST (broadcast/model.ts defines them, broadcast/store.ts
 * keeps them; the broadcast runtime picks changes up within broadcast.reloadMs):
 *   /v1/broadcasters, /v1/registrations          POST create (201, 409 if the name is taken), GET list
 *   /v1/<...>/:name                               GET, PUT create-or-replace (201/200), DELETE (204)
 *   /v1/<...>/:name/pause, /resume                POST (200 with the resource)
 *   /v1/<...>/:name/status                        GET delivered/failed counts and the last error
 * Bodies are checked by the model's zod schemas rather than by fastify's, so a refusal names the
 * field in the model's words (`parameter`: config.url, predicate, kind …) and a predicate's error
 * gives the offending token and its offset; the OpenAPI document shows the same schemas. Secrets
 * (an HTTP broadcaster's `secret`, credential-like header values) are returned as "***".
 * With `api.token` set, every route here needs the bearer token (plugins/auth.ts).
 */
import type { FastifyPluginAsync, FastifySchema } from 'fastify';
import { z } from 'zod';
import { BROADCASTER_KINDS, NAME_PATTERN, REGISTRATION_KINDS, ValidationError, broadcasterSchema, keepRedacted, parseBroadcaster, parseRegistration, redactBroadcaster, registrationSchema } from '../../broadcast/model.ts';
import * as store from '../../broadcast/store.ts';
import { acceptBodilessJson } from '../../core/ops.ts';
import { ApiError } from '../errors.ts';
import { errorRef } from '../schemas.ts';

const TAG = 'broadcast';

function bodySchema(s: z.ZodType, description: string): Record<string, unknown> {
  const { $schema: _, ...json } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...json, description };
}

const BROADCASTER_BODY = bodySchema(broadcasterSchema, 'A broadcaster: an HTTP endpoint (each matching record POSTed as JSON, optionally HMAC-signed, retried with backoff, then dead-lettered) or a Kafka topic of yours (JSON or Avro).');
const REGISTRATION_BODY = bodySchema(registrationSchema, 'A registration: which records (a record kind, an instrument filter with * and ? wildcards, an optional predicate) go to which broadcaster.');

/** A PUT's body: the same, its name optional (the path gives it; a different one is a 409). */
function putBody(body: Record<string, unknown>): Record<string, unknown> {
  const optionalName = (s: Record<string, unknown>) => ({ ...s, required: (s.required as string[]).filter((k) => k !== 'name') });
  return Array.isArray(body.oneOf) ? { ...body, oneOf: (body.oneOf as Record<string, unknown>[]).map(optionalName) } : optionalName(body);
}
const BROADCASTER_PUT_BODY = putBody(BROADCASTER_BODY);
const REGISTRATION_PUT_BODY = putBody(REGISTRATION_BODY);

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', pattern: NAME_PATTERN.source, description: 'letters, digits, ".", "_" or "-", up to 100, starting with a letter or digit' } },
} as const;

const times = {
  source: { type: 'string', enum: [...store.SOURCES], description: 'api: created over REST; config: declared in the config file (re-applied at every start)' },
  createdAt: { type: 'string', format: 'date-time' },
  updatedAt: { type: 'string', format: 'date-time' },
} as const;

const BROADCASTER = {
  type: 'object',
  description: 'A broadcaster as stored, its secret shown as "***".',
  properties: {
    name: { type: 'string' },
    kind: { type: 'string', enum: [...BROADCASTER_KINDS] },
    config: { type: 'object', additionalProperties: true },
    paused: { type: 'boolean' },
    ...times,
  },
  required: ['name', 'kind', 'config', 'paused', 'source', 'createdAt', 'updatedAt'],
} as const;

const REGISTRATION = {
  type: 'object',
  description: 'A registration as stored; broadcasterPaused: its broadcaster is paused (its records are skipped too).',
  properties: {
    name: { type: 'string' },
    broadcaster: { type: 'string' },
    kind: { type: 'string', enum: [...REGISTRATION_KINDS] },
    exchange: { type: 'string' },
    symbol: { type: 'string' },
    predicate: { type: ['string', 'null'] },
    paused: { type: 'boolean' },
    broadcasterPaused: { type: 'boolean' },
    ...times,
  },
  required: ['name', 'broadcaster', 'kind', 'exchange', 'symbol', 'predicate', 'paused', 'broadcasterPaused', 'source', 'createdAt', 'updatedAt'],
} as const;

const STATUS = {
  type: 'object',
  description: "Delivery counters: delivered, failed (exhausted the retries, sent to the dead-letter topic), the last error and delivery. A broadcaster's are the sums over its registrations.",
  properties: {
    name: { type: 'string' },
    paused: { type: 'boolean' },
    delivered: { type: 'integer' },
    failed: { type: 'integer' },
    lastError: { type: ['string', 'null'] },
    lastErrorAt: { type: ['string', 'null'], format: 'date-time' },
    lastDeliveredAt: { type: ['string', 'null'], format: 'date-time' },
  },
  required: ['name', 'paused', 'delivered', 'failed', 'lastError', 'lastErrorAt', 'lastDeliveredAt'],
} as const;

const list = (item: object) => ({ type: 'object', properties: { data: { type: 'array', items: item }, next: { type: 'null', description: 'always null: the whole list in one page' } }, required: ['data', 'next'] }) as const;

const errors = {
  400: { description: 'A refused body or name; `parameter` names the field (for a predicate, the message gives the token and its offset)', ...errorRef },
  401: { description: 'api.token is set and the bearer token is missing or wrong', ...errorRef },
  503: errorRef,
};
const notFound = { 404: { description: 'No such name', ...errorRef } };

/** Bodies are validated by the model (zod) for its messages; params by a plain check below. */
const noValidation = () => (data: unknown) => ({ value: data });

function checkName(name: string, what: string): void {
  if (!NAME_PATTERN.test(name)) throw new ApiError(400, `name: "${name.slice(0, 120)}" is not a ${what} name (letters, digits, ".", "_" or "-", up to 100, starting with a letter or digit)`, { parameter: 'name' });
}

/** A ValidationError as the API's 400 naming the field. */
function refused(e: unknown): never {
  if (e instanceof ValidationError) throw new ApiError(400, e.message, { parameter: e.field, cause: e });
  throw e;
}

/** The body of a PUT: its name, when given, must be the path's (else a conflict between the two: 409). */
function withPathName(body: unknown, name: string, what: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const b = body as Record<string, unknown>;
  if (b.name !== undefined && b.name !== name) throw new ApiError(409, `${what}: name: the body says "${String(b.name).slice(0, 120)}" but the path "${name}"`, { parameter: 'name' });
  return { ...b, name };
}

const missing = (what: string, name: string) => new ApiError(404, `no ${what} named "${name}"`, { parameter: 'name' });

function routeSchema(s: FastifySchema & { summary: string }): FastifySchema {
  return { tags: [TAG], ...s };
}

export const broadcastRoutes: FastifyPluginAsync = async (app) => {
  acceptBodilessJson(app); // these routes only: …/pause with a JSON content type and no body
  const db = () => app.db.pool;
  const shown = (b: store.BroadcasterRecord) => redactBroadcaster(b);

  // ---- broadcasters ----

  app.post('/v1/broadcasters', { validatorCompiler: noValidation, schema: routeSchema({ summary: 'Create a broadcaster', body: BROADCASTER_BODY, response: { 201: BROADCASTER, ...errors, 409: { description: 'The name is taken', ...errorRef } } }) }, async (req, reply) => {
    let spec;
    try {
      spec = parseBroadcaster(req.body);
    } catch (e) {
      refused(e);
    }
    if (spec.kind === 'http' && spec.config.secret === '***') throw new ApiError(400, 'broadcaster: config.secret: "***" is the mask shown for a stored secret, not a secret', { parameter: 'config.secret' });
    const created = await store.insertBroadcaster(db(), spec);
    if (!created) throw new ApiError(409, `a broadcaster named "${spec.name}" exists (PUT /v1/broadcasters/${spec.name} replaces it)`, { parameter: 'name' });
    return reply.code(201).send(shown(created));
  });

  app.get('/v1/broadcasters', { schema: routeSchema({ summary: 'List broadcasters', response: { 200: list(BROADCASTER), ...errors } }) }, async () => ({ data: (await store.listBroadcasters(db())).map(shown), next: null }));

  app.get<{ Params: { name: string } }>('/v1/broadcasters/:name', { schema: routeSchema({ summary: 'A broadcaster', params: nameParams, response: { 200: BROADCASTER, ...errors, ...notFound } }) }, async (req) => {
    const b = await store.getBroadcaster(db(), req.params.name);
    if (!b) throw missing('broadcaster', req.params.name);
    return shown(b);
  });

  app.put<{ Params: { name: string } }>(
    '/v1/broadcasters/:name',
    { validatorCompiler: noValidation, schema: routeSchema({ summary: 'Create or replace a broadcaster ("***" as the secret keeps the stored one)', params: nameParams, body: BROADCASTER_PUT_BODY, response: { 200: BROADCASTER, 201: BROADCASTER, ...errors, 409: { description: "The body's name is not the path's", ...errorRef } } }) },
    async (req, reply) => {
      const { name } = req.params;
      checkName(name, 'broadcaster');
      let spec;
      try {
        spec = keepRedacted(parseBroadcaster(withPathName(req.body, name, 'broadcaster')), await store.getBroadcaster(db(), name));
      } catch (e) {
        refused(e);
      }
      const { broadcaster, created } = await store.putBroadcaster(db(), spec);
      return reply.code(created ? 201 : 200).send(shown(broadcaster));
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/v1/broadcasters/:name',
    { schema: routeSchema({ summary: 'Delete a broadcaster (refused while registrations use it)', params: nameParams, response: { 204: { type: 'null', description: 'Deleted' }, ...errors, ...notFound, 409: { description: 'Registrations still use it (the message names them)', ...errorRef } } }) },
    async (req, reply) => {
      const r = await store.deleteBroadcaster(db(), req.params.name);
      if (r === 'missing') throw missing('broadcaster', req.params.name);
      if (r !== 'deleted') throw new ApiError(409, `broadcaster "${req.params.name}" is used by registrations ${r.registrations.join(', ')}: delete them (or point them elsewhere) first`, { parameter: 'name' });
      return reply.code(204).send();
    },
  );

  // ---- registrations ----

  app.post('/v1/registrations', { validatorCompiler: noValidation, schema: routeSchema({ summary: 'Create a registration', body: REGISTRATION_BODY, response: { 201: REGISTRATION, ...errors, 409: { description: 'The name is taken', ...errorRef } } }) }, async (req, reply) => {
    let created;
    try {
      const spec = parseRegistration(req.body);
      created = await store.insertRegistration(db(), spec);
      if (!created) throw new ApiError(409, `a registration named "${spec.name}" exists (PUT /v1/registrations/${spec.name} replaces it)`, { parameter: 'name' });
    } catch (e) {
      refused(e);
    }
    return reply.code(201).send(created);
  });

  app.get<{ Querystring: { broadcaster?: string } }>(
    '/v1/registrations',
    {
      schema: routeSchema({
        summary: 'List registrations',
        querystring: { type: 'object', additionalProperties: false, properties: { broadcaster: { type: 'string', pattern: NAME_PATTERN.source, description: "only this broadcaster's (a broadcaster name)" } } },
        response: { 200: list(REGISTRATION), ...errors },
      }),
    },
    async (req) => ({ data: await store.listRegistrations(db(), req.query.broadcaster === undefined ? {} : { broadcaster: req.query.broadcaster }), next: null }),
  );

  app.get<{ Params: { name: string } }>('/v1/registrations/:name', { schema: routeSchema({ summary: 'A registration', params: nameParams, response: { 200: REGISTRATION, ...errors, ...notFound } }) }, async (req) => {
    const r = await store.getRegistration(db(), req.params.name);
    if (!r) throw missing('registration', req.params.name);
    return r;
  });

  app.put<{ Params: { name: string } }>(
    '/v1/registrations/:name',
    { validatorCompiler: noValidation, schema: routeSchema({ summary: 'Create or replace a registration', params: nameParams, body: REGISTRATION_PUT_BODY, response: { 200: REGISTRATION, 201: REGISTRATION, ...errors, 409: { description: "The body's name is not the path's", ...errorRef } } }) },
    async (req, reply) => {
      const { name } = req.params;
      checkName(name, 'registration');
      let out;
      try {
        out = await store.putRegistration(db(), parseRegistration(withPathName(req.body, name, 'registration')));
      } catch (e) {
        refused(e);
      }
      return reply.code(out.created ? 201 : 200).send(out.registration);
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/v1/registrations/:name',
    { schema: routeSchema({ summary: 'Delete a registration (its counters and predicate state with it)', params: nameParams, response: { 204: { type: 'null', description: 'Deleted' }, ...errors, ...notFound } }) },
    async (req, reply) => {
      if (!(await store.deleteRegistration(db(), req.params.name))) throw missing('registration', req.params.name);
      return reply.code(204).send();
    },
  );

  // ---- pause, resume, status (both) ----

  for (const what of ['broadcaster', 'registration'] as const) {
    const base = `/v1/${what}s/:name`;
    const paused = what === 'broadcaster' ? store.setBroadcasterPaused : store.setRegistrationPaused;
    const read = async (name: string) => {
      const r = what === 'broadcaster' ? await store.getBroadcaster(db(), name) : await store.getRegistration(db(), name);
      if (!r) throw missing(what, name);
      return what === 'broadcaster' ? shown(r as store.BroadcasterRecord) : r;
    };
    const item = what === 'broadcaster' ? BROADCASTER : REGISTRATION;
    for (const [action, value] of [
      ['pause', true],
      ['resume', false],
    ] as const) {
      const effect = what === 'broadcaster' ? "the records of all its registrations are skipped, not queued, while it is paused" : 'its records are skipped, not queued, while it is paused';
      app.post<{ Params: { name: string } }>(
        `${base}/${action}`,
        { schema: routeSchema({ summary: `${action === 'pause' ? 'Pause' : 'Resume'} a ${what}${action === 'pause' ? ` (${effect})` : ''}`, params: nameParams, response: { 200: item, ...errors, ...notFound } }) },
        async (req) => {
          if (!(await paused(db(), req.params.name, value))) throw missing(what, req.params.name);
          return read(req.params.name);
        },
      );
    }
    app.get<{ Params: { name: string } }>(`${base}/status`, { schema: routeSchema({ summary: `A ${what}'s delivery counters`, params: nameParams, response: { 200: STATUS, ...errors, ...notFound } }) }, async (req) => {
      const s = what === 'broadcaster' ? await store.broadcasterStatus(db(), req.params.name) : await store.registrationStatus(db(), req.params.name);
      if (!s) throw missing(what, req.params.name);
      return s;
    });
  }
};
