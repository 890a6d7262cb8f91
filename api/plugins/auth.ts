/**
 * Bearer-token auth of the query API (config `api.token`, env TICKFLOW_API_TOKEN). When a token is
 * set, every request that changes something (any method but GET, HEAD and OPTIONS) and every
 * request to the broadcast routes (/v1/broadcasters, /v1/registrations: their GETs show
 * endpoints) needs `Authorization: Bearer <token>`, else a 401 in the error envelope. Reading
 * market data stays open. A path no route serves is left to the 404/405 answers. null: open.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from '../../core/ops.ts';

/** Prefixes whose every method needs the token. */
export const PROTECTED_PREFIXES = ['/v1/broadcasters', '/v1/registrations'] as const;
const OPEN_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Whether a request needs the token (when one is configured). */
export function needsToken(method: string, url: string): boolean {
  if (!OPEN_METHODS.has(method)) return true;
  const path = url.split('?')[0] ?? '';
  return PROTECTED_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`));
}

export function bearerOk(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

export interface AuthPluginOptions {
  readonly token: string | null;
}

async function auth(app: FastifyInstance, opts: AuthPluginOptions): Promise<void> {
  const token = opts.token;
  if (!token) return;
  app.addHook('onRequest', async (req: FastifyRequest, reply) => {
    if (req.is404 || !needsToken(req.method, req.url)) return;
    if (bearerOk(req.headers.authorization, token)) return;
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer')
      .type('application/json; charset=utf-8')
      .send(errorBody(401, req.headers.authorization ? 'wrong bearer token' : 'this route needs a bearer token (Authorization: Bearer <token>; config api.token)', 'authorization'));
  });
}

export const authPlugin = fp(auth, { name: 'tickflow-auth', fastify: '5.x' });
