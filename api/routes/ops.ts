/**
 * Operations: /healthz (the process answers), /readyz (the database answers; the live stream's
 * state is reported beside it), /metrics (Prometheus text from the process registry).
 */
import type { FastifyPluginAsync } from 'fastify';
import { registry } from '../../core/metrics.ts';

const statusSchema = {
  type: 'object',
  properties: { status: { type: 'string' }, database: { type: 'string' }, stream: { type: 'string' } },
  required: ['status'],
} as const;

export const opsRoutes: FastifyPluginAsync = async (app) => {
  app.get('/healthz', { schema: { summary: 'The process is up', tags: ['operations'], response: { 200: statusSchema } } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    { schema: { summary: 'The database answers (503 when it does not)', tags: ['operations'], response: { 200: statusSchema, 503: statusSchema } } },
    async (_req, reply) => {
      const ok = await app.db.ping(2_000);
      const stream = app.hub ? app.hub.state : 'disabled';
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', database: ok ? 'ok' : 'unreachable', stream });
    },
  );

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'], produces: ['text/plain'] } }, async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
};
