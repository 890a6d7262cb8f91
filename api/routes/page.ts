/**
 * The chart page at `/`: static HTML and a plain browser script (api/public/), and the charting
 * library's standalone build served from node_modules (no CDN, no build step).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

const here = path.dirname(fileURLToPath(import.meta.url));
const PUBLIC = path.join(here, '..', 'public');
const require = createRequire(import.meta.url);

function chartLibrary(): string {
  const pkg = require.resolve('lightweight-charts/package.json');
  return path.join(path.dirname(pkg), 'dist', 'lightweight-charts.standalone.production.js');
}

export const pageRoutes: FastifyPluginAsync = async (app) => {
  const files: Record<string, { body: Buffer; type: string }> = {
    '/': { body: readFileSync(path.join(PUBLIC, 'index.html')), type: 'text/html; charset=utf-8' },
    '/app.js': { body: readFileSync(path.join(PUBLIC, 'app.js')), type: 'text/javascript; charset=utf-8' },
    '/vendor/lightweight-charts.js': { body: readFileSync(chartLibrary()), type: 'text/javascript; charset=utf-8' },
  };
  for (const [url, f] of Object.entries(files)) {
    app.get(url, { schema: { hide: true } }, async (_req, reply) => reply.type(f.type).header('cache-control', 'no-cache').send(f.body));
  }
};
