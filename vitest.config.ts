import { defineConfig } from 'vitest/config';

// `npm run test:unit` runs only the tests that need no broker or database, without the setup.
const unitOnly = process.env.TICKFLOW_UNIT_ONLY === '1';
const UNIT = ['core/**/*.test.ts', 'config/**/*.test.ts', 'schemas/**/*.test.ts', 'migrations/runner.test.ts', 'sim/**/*.test.ts', 'gateways/**/*.test.ts', 'sink/**/*.test.ts', 'api/**/*.test.ts', 'broadcast/**/*.test.ts', 'test/layering.test.ts'];

export default defineConfig({
  test: {
    include: unitOnly ? UNIT : ['**/*.test.ts'],
    // api/stream/hub.test.ts reads a real broker: not a unit test.
    exclude: ['node_modules/**', '.cache/**', '.tickflow/**', ...(unitOnly ? ['api/stream/hub.test.ts'] : [])],
    // Brings up Kafka and the PostgreSQL server once for the run (or uses KAFKA_BROKERS).
    globalSetup: unitOnly ? [] : ['test/harness/global-setup.ts'],
    // Forks, not threads: PGlite's WebAssembly heap and child processes are per process.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default', './test/harness/summary-reporter.ts'],
  },
});
