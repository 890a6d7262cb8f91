#!/usr/bin/env node
// The `tickflow` command. The code is TypeScript with no build step. A Node that strips types
// itself (22.18+, 23.6+: process.features.typescript) runs the .ts files as they are; an older one
// (20) runs them through tsx's loader, which costs memory (its loader thread, esbuild, source
// maps: gateways/README.md, Memory). `node --import tsx bin/tickflow.js` forces tsx.
import module from 'node:module';

// Node's compile cache (22.1+; in os.tmpdir() unless NODE_COMPILE_CACHE names a folder,
// NODE_DISABLE_COMPILE_CACHE=1 turns it off) keeps V8's code cache and, for .ts files, the
// stripped source between runs: a start with nothing changed neither strips types again nor loads
// Node's type stripper (a WebAssembly module, ~17 MB of RSS for the life of the process). Written
// at exit, and once a few seconds after start so that a process killed without exiting leaves it too.
if (module.enableCompileCache) {
  module.enableCompileCache();
  setTimeout(() => module.flushCompileCache?.(), 10_000).unref();
}
if (!process.features.typescript) (await import('tsx/esm/api')).register();
const { run } = await import('../cli/main.ts');
await run(process.argv.slice(2));
