import Fastify from 'fastify';
import { messageOf } from './errors.ts';
import { errorBody, opsPlugin, type HealthProbe } from './ops.ts';

/**
 * `/metrics` and `/healthz` (core/ops.ts) for a process that serves nothing else (the gateway),
 * so Prometheus can scrape every part. Resolves with its URL once listening.
 */
export async function serveMetrics(host: string, port: number, opts: { health?: HealthProbe } = {}): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  app.setErrorHandler((err, _req, reply) => reply.code(500).send(errorBody(500, messageOf(err))));
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(404, `no route ${req.method} ${req.url}: try /metrics or /healthz`)));
  await app.register(opsPlugin, opts.health ? { health: opts.health } : {});
  await app.listen({ host, port });
  const addr = app.server.address() as { port: number };
  return {
    url: `http://${host}:${addr.port}`,
    close: () => app.close(),
  };
}
