/**
 * `npm run bench -- memory`: the resident memory of `tickflow start` (memory-start.ts);
 * `npm run bench:memory` (`--gateway`): of one `tickflow gateway` process fed by the sim at
 * 5,000 trades/s and at saturation (memory-gateway.ts). Each file documents its options.
 */
if (process.argv.includes('--gateway')) await import('./memory-gateway.ts');
else await import('./memory-start.ts');
