/**
 * A worker thread running one of tickflow's .ts modules: as it is on a Node that strips types
 * itself (22.18+, as bin/tickflow.js), through tsx's loader (registered in the thread first) on an
 * older one (20).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** tsx's ESM API as a file URL (import.meta.resolve is not there under every loader, vitest's included). */
function tsxEsmApi(): string {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('tsx/package.json');
  const pkg = require(pkgFile) as { exports: Record<string, { import: { default: string } }> };
  return pathToFileURL(path.join(path.dirname(pkgFile), pkg.exports['./esm/api']!.import.default)).href;
}

/** Starts `entry` (a .ts module's URL) in a worker thread with `workerData`; throws when a thread cannot be started. */
export function startTsWorker(entry: URL, workerData: unknown): Worker {
  if (process.features.typescript) return new Worker(entry, { workerData });
  return new Worker(`import(${JSON.stringify(tsxEsmApi())}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`, {
    eval: true,
    workerData,
  });
}
