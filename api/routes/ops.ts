/**
 * Operations (core/ops.ts): /healthz (the process answers), /readyz (the database answers; the
 * live stream's state is reported beside it and does not gate readiness), /metrics.
 */
import type { FastifyPluginAsync } from 'fastify';
import { opsPlugin } from '../../core/ops.ts';

export const opsRoutes: FastifyPluginAsync = async (app) => {
  await app.register(opsPlugin, {
    probes: {
      '/readyz': {
        summary: 'The database answers (503 when it does not)',
        probe: async () => {
          const ok = await app.db.ping(2_000);
          const stream = app.hub ? app.hub.state : 'disabled';
          return {
            code: ok ? 200 : 503,
            body: {
              status: ok ? 'ok' : 'degraded',
              checks: { database: ok ? { ok } : { ok, error: 'the database does not answer' }, stream: { ok: stream === 'live' || stream === 'disabled', state: stream } },
            },
          };
        },
      },
    },
  });
};
