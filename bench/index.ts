/**
 * `npm run bench -- <gateway|sink|api|memory|latency|broadcast|scale>`: runs one benchmark (each prints its figures beside a
 * baseline measured in the same run). Without a name, lists them.
 */
const BENCHES = { gateway: './gateway.ts', sink: './sink.ts', api: './api.ts', memory: './memory.ts', latency: './latency.ts', broadcast: './broadcast.ts', scale: './scale.ts' } as const;
const name = process.argv[2] as keyof typeof BENCHES | undefined;
if (!name || !(name in BENCHES)) {
  process.stdout.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}>\n`);
  process.exitCode = name ? 2 : 0;
} else {
  process.argv.splice(2, 1);
  await import(BENCHES[name]);
}
