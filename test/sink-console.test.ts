/**
 * The console of `tickflow sink` is for people (issue 11, item 8): at info it says where the REST
 * API listens and which connectors run (or failed), not each connector's state changes, first
 * partition assignment, database flavour or policies; nothing at all on a clean stop.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { sleep } from '../core/retry.ts';
import { TABLE_NAMES } from '../schemas/catalog.ts';
import { RECORD_KINDS } from '../schemas/index.ts';
import { createServerDatabase } from './harness/db.ts';
import { killSink, spawnSink, type SinkProcess } from './harness/sink-process.ts';
import { uniquePrefix, waitFor } from './harness/sink.ts';
import { deleteTopics } from './harness/topics.ts';

describe('tickflow sink console', () => {
  const prefix = uniquePrefix('console');
  let proc: SinkProcess | undefined;

  afterAll(async () => {
    if (proc) await killSink(proc);
    await deleteTopics(inject('kafkaBrokers'), prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('logs two lines at info from start to a clean stop: the REST API address and the connectors running, by name', async () => {
    const url = await createServerDatabase('console');
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tickflow-console-')), 'tickflow.yaml');
    // The default connectors (one per record kind).
    writeFileSync(file, ['kafka:', `  topicPrefix: ${prefix}`, `  clientId: ${prefix}`, 'sink:', '  apiPort: 0', ''].join('\n'));
    proc = spawnSink(file, url, { LOG_LEVEL: 'info' });
    const p = proc;
    await waitFor('the sink to start', () => /sink: \d+ connector\(s\)/.test(p.output()) || !p.alive(), 90_000, 100);
    expect(p.alive(), p.output()).toBe(true);
    await sleep(1_500); // the group joins' partition assignments come just after
    await killSink(p, 'SIGTERM');
    const lines = p
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; part?: string; msg: string });
    const sinkInfo = lines.filter((l) => l.part === 'sink' && l.level >= 30).map((l) => l.msg);
    // One default connector per table of the catalog, named like it.
    const tables = [...TABLE_NAMES].sort();
    expect(sinkInfo, p.output()).toEqual(['sink REST API listening', `${tables.length} connector(s) running: ${tables.join(', ')}`]);
  }, 120_000);
});
