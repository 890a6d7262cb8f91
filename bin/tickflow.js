#!/usr/bin/env node
// The `tickflow` command. The code is TypeScript with no build step. A Node that strips types
// itself (22.18+, 23.6+: process.features.typescript) runs the .ts files as they are; an older one
// (20) runs them through tsx's loader, which costs memory (its loader thread, esbuild, source
// maps: gateways/README.md, Memory). `node --import tsx bin/tickflow.js` forces tsx.
if (!process.features.typescript) (await import('tsx/esm/api')).register();
const { run } = await import('../cli/main.ts');
await run(process.argv.slice(2));
