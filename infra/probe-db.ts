/**
 * One look at a database before anything depends on it: reachable at all, which server version,
 * and whether the TimescaleDB extension can be created there. Never hangs: the connect, the
 * startup handshake and each query are bounded, and so is the whole probe (a port that accepts
 * TCP but never speaks, a busy embedded database holding its one connection).
 */
import pg from 'pg';
import { maskUrl } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { translatePgError } from '../core/pg-errors.ts';

export interface DatabaseProbe {
  /** The timescaledb extension is available (CREATE EXTENSION would work), installed or not. */
  timescaledb: boolean;
  /** server_version, e.g. "17.5" or "15.18 (Debian 15.18-0+deb12u1)". */
  version: string;
}

function reasonOf(err: unknown, timeoutMs: number): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  let msg = messageOf(err);
  if (/timeout/i.test(msg) && !msg.includes(`${timeoutMs} ms`)) msg += ` (no answer within ${timeoutMs} ms)`;
  return typeof e?.code === 'string' && !msg.includes(e.code) ? `${e.code} ${msg}` : msg;
}

export async function probeDatabase(url: string, timeoutMs = 10_000): Promise<DatabaseProbe> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    statement_timeout: timeoutMs,
  });
  client.on('error', () => {}); // a late socket error must not crash the process
  let timer: NodeJS.Timeout | undefined;
  let failed = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 500);
  });
  try {
    const probe = (async (): Promise<DatabaseProbe> => {
      await client.connect();
      const r = await client.query<{ version: string; timescaledb: boolean }>(
        `select current_setting('server_version') as version,
                exists (select 1 from pg_available_extensions where name = 'timescaledb') as timescaledb`,
      );
      const row = r.rows[0];
      if (!row) throw new Error('the probe query returned no row');
      return { timescaledb: row.timescaledb, version: row.version };
    })();
    probe.catch(() => {}); // lost the race to the deadline: already reported
    return await Promise.race([probe, deadline]);
  } catch (err) {
    failed = true;
    throw new TickflowError(
      'DATABASE_UNREACHABLE',
      `DATABASE_URL=${maskUrl(url)} is unreachable: ${reasonOf(err, timeoutMs)}`,
      // Wrong credentials or a missing database: retrying the same URL won't help.
      { retriable: translatePgError(err).kind !== 'access', cause: err },
    );
  } finally {
    clearTimeout(timer);
    // end() waits for the server's goodbye, which a mute server never sends: drop the socket.
    const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream;
    if (failed) stream?.destroy?.();
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    stream?.destroy?.();
  }
}
