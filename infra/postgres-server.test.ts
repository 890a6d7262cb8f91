import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTickflowError } from '../core/errors.ts';
import { startPostgresServer, type PostgresServer } from './postgres-server.ts';
import { probeDatabase } from './probe-db.ts';

const T = 120_000;

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Running, and not a zombie (pid 1 does not always reap pg_ctl's daemon here). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}

describe('PostgreSQL server for tests', () => {
  let pgs: PostgresServer;

  beforeAll(async () => {
    const t0 = performance.now();
    pgs = await startPostgresServer();
    console.log(`PostgreSQL initdb + start: ${Math.round(performance.now() - t0)} ms`);
  }, T);

  afterAll(async () => {
    await pgs?.stop();
  }, T);

  it('runs on a free port with trust auth', async () => {
    expect(pgs.port).toBeGreaterThan(0);
    expect(pgs.url).toBe(`postgres://postgres@127.0.0.1:${pgs.port}/postgres`);
    expect(running(pgs.pid)).toBe(true);
    expect(existsSync(`${pgs.dataDir}/PG_VERSION`)).toBe(true);
    const [row] = await query<{ v: string }>(pgs.url, "select current_setting('server_version_num') as v");
    expect(Number(row!.v)).toBeGreaterThanOrEqual(150000);
  }, T);

  it('takes many connections at once', async () => {
    const clients = Array.from({ length: 30 }, () => new pg.Client(pgs.url));
    await Promise.all(clients.map((c) => c.connect()));
    const ids = await Promise.all(clients.map(async (c) => (await c.query('select pg_backend_pid() as p')).rows[0].p as number));
    expect(new Set(ids).size).toBe(30);
    await Promise.all(clients.map((c) => c.end()));
  }, T);

  it('survives an outage: stop keeping data, connections refused, start on the same port', async () => {
    await query(pgs.url, 'create table outage (x int)');
    await query(pgs.url, 'insert into outage values (1), (2)');
    const port = pgs.port;

    await pgs.stop({ keepData: true });
    expect(pgs.pid).toBe(0);
    await expect(query(pgs.url, 'select 1')).rejects.toThrow(/ECONNREFUSED/);

    await pgs.start();
    expect(pgs.port).toBe(port);
    expect(running(pgs.pid)).toBe(true);
    expect(await query(pgs.url, 'select sum(x)::int as s from outage')).toEqual([{ s: 3 }]);
  }, T);

  it('recovers committed data after an immediate shutdown (kill)', async () => {
    await query(pgs.url, 'insert into outage values (3)'); // committed just before the crash
    const pid = pgs.pid;
    await pgs.kill();
    expect(running(pid)).toBe(false);
    await expect(query(pgs.url, 'select 1')).rejects.toThrow(/ECONNREFUSED/);
    await pgs.start();
    expect(await query(pgs.url, 'select sum(x)::int as s from outage')).toEqual([{ s: 6 }]);
  }, T);

  it('creates databases', async () => {
    const url = await pgs.createDatabase('sink_test_1');
    expect(url).toBe(`postgres://postgres@127.0.0.1:${pgs.port}/sink_test_1`);
    expect(await query(url, 'select current_database() as d')).toEqual([{ d: 'sink_test_1' }]);
  }, T);

  it('is seen by the probe as plain PostgreSQL', async () => {
    const probe = await probeDatabase(pgs.url, 5000);
    expect(probe.version).toMatch(/^\d+\.\d+/);
    expect(typeof probe.timescaledb).toBe('boolean');
  }, T);

  it('leaves nothing behind after the final stop', async () => {
    const other = await startPostgresServer();
    const { pid, dataDir } = other;
    await query(other.url, 'select 1');
    await other.stop();
    expect(running(pid)).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
    await expect(other.start()).rejects.toSatisfy((e: unknown) => isTickflowError(e, 'INFRA'));
  }, T);
});

describe('probeDatabase', () => {
  let mute: Server;
  let mutePort: number;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // Accepts TCP, reads, never says a word.
    mute = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.resume();
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    mutePort = (mute.address() as AddressInfo).port;
  });
  afterAll(async () => {
    const closed = new Promise<void>((r) => mute.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed;
  });

  it('fails fast on a port that accepts but never answers, with the password masked', async () => {
    const t0 = Date.now();
    const err = await probeDatabase(`postgres://app:s3cret@127.0.0.1:${mutePort}/tick`, 1000).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(isTickflowError(err, 'DATABASE_UNREACHABLE')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain(`DATABASE_URL=postgres://app:***@127.0.0.1:${mutePort}/tick is unreachable:`);
    expect(msg).not.toContain('s3cret');
    expect((err as { retriable: boolean }).retriable).toBe(true);
    // and let go of the connection
    for (let i = 0; i < 50 && sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sockets.size).toBe(0);
  }, T);

  it('fails fast on a refused connection', async () => {
    const err = await probeDatabase('postgres://app@127.0.0.1:1/tick', 5000).catch((e: unknown) => e);
    expect(isTickflowError(err, 'DATABASE_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  }, T);
});
