/**
 * Binance's market-stream websocket: `SUBSCRIBE` / `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` requests,
 * raw events on `/ws/...` and `/stream/ws/...` (what ccxt opens: `<ws url>/0`, `/1`, ...), and the
 * combined envelope `{"stream","data"}` on `/stream?streams=a/b`.
 *
 * Sending is batched per timer tick: each socket is corked on its first message of a tick and
 * uncorked in `flush()`, so thousands of trade frames leave in one write instead of one syscall each.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../core/log.ts';

export const STREAM_CHANNELS = ['trades', 'kline', 'ticker', 'depth'] as const;
export type StreamChannel = (typeof STREAM_CHANNELS)[number];
export type PauseTarget = StreamChannel | 'all';

/** Which channel a stream name (`btcusdt@kline_1m`) belongs to; undefined if not one we serve. */
export function channelOf(stream: string): StreamChannel | undefined {
  if (stream.startsWith('!ticker') || stream.startsWith('!miniTicker')) return 'ticker';
  const at = stream.indexOf('@');
  if (at <= 0) return undefined;
  const kind = stream.slice(at + 1);
  if (kind === 'trade' || kind === 'aggTrade') return 'trades';
  if (kind.startsWith('kline_')) return 'kline';
  if (kind === 'ticker' || kind === 'miniTicker' || kind === 'bookTicker') return 'ticker';
  if (kind.startsWith('depth')) return 'depth';
  return undefined;
}

export class Conn {
  readonly streams = new Set<string>();
  corked = false;
  closed = false;
  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly socket: Duplex,
    /** Combined-stream endpoint: wrap every event as {"stream","data"}. */
    readonly combined: boolean,
    readonly path: string,
  ) {}
}

export interface HubOptions {
  readonly log: Logger;
  /** A socket whose unsent backlog exceeds this is dropped (Binance drops slow readers too). */
  readonly maxBufferedBytes: number;
  /** Called when a stream gains its first or loses its last subscriber. */
  readonly onStreamActive: (stream: string, active: boolean) => void;
  readonly now: () => number;
}

export interface HubStats {
  connections: number;
  connectionsOpened: number;
  messagesSent: number;
  bytesSent: number;
  slowConsumerDrops: number;
  refusedUpgrades: number;
  subscriptions: number;
}

const PING_EVERY_MS = 20_000;

export class StreamHub {
  readonly conns = new Set<Conn>();
  private readonly subs = new Map<string, Set<Conn>>();
  private readonly corked: Conn[] = [];
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 });
  private readonly pausedUntil = new Map<PauseTarget, number>();
  private nextId = 1;
  private pingTimer: NodeJS.Timeout | undefined;
  readonly stats: HubStats = {
    connections: 0,
    connectionsOpened: 0,
    messagesSent: 0,
    bytesSent: 0,
    slowConsumerDrops: 0,
    refusedUpgrades: 0,
    subscriptions: 0,
  };

  constructor(private readonly o: HubOptions) {
    this.pingTimer = setInterval(() => {
      for (const c of this.conns) if (!c.closed) c.ws.ping();
    }, PING_EVERY_MS);
    this.pingTimer.unref();
  }

  subscribers(stream: string): ReadonlySet<Conn> | undefined {
    return this.subs.get(stream);
  }

  activeStreams(): IterableIterator<string> {
    return this.subs.keys();
  }

  /** Handles an HTTP upgrade for any path under /ws or /stream; false if the path is not ours. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname;
    const isOurs = path === '/ws' || path.startsWith('/ws/') || path === '/stream' || path.startsWith('/stream/');
    if (!isOurs) return false;
    if (this.isPaused('all')) {
      this.stats.refusedUpgrades++;
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const combined = path === '/stream' || path === '/stream/';
      const conn = new Conn(this.nextId++, ws, socket, combined, path);
      this.conns.add(conn);
      this.stats.connections = this.conns.size;
      this.stats.connectionsOpened++;
      ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary));
      ws.on('close', () => this.detach(conn));
      ws.on('error', (err) => this.o.log.debug({ conn: conn.id, err: err.message }, 'ws error'));
      // Streams named in the URL: /ws/btcusdt@trade, /stream?streams=btcusdt@trade/ethusdt@trade
      const initial = combined
        ? (url.searchParams.get('streams') ?? '').split('/')
        : [decodeURIComponent(path.slice(path.lastIndexOf('/') + 1))];
      const named = initial.filter((s) => s.includes('@'));
      if (named.length > 0) this.subscribe(conn, named);
    });
    return true;
  }

  private onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    let req: { method?: unknown; params?: unknown; id?: unknown };
    try {
      if (isBinary) throw new Error('binary');
      req = JSON.parse(data.toString()) as typeof req;
      if (req === null || typeof req !== 'object') throw new Error('not an object');
    } catch {
      this.reply(conn, { error: { code: 3, msg: 'Invalid JSON: expected a JSON object' }, id: null });
      return;
    }
    const id = req.id ?? null;
    const params = Array.isArray(req.params) ? req.params.filter((p): p is string => typeof p === 'string') : [];
    switch (req.method) {
      case 'SUBSCRIBE':
        if (!this.subscribe(conn, params)) return;
        this.reply(conn, { result: null, id });
        return;
      case 'UNSUBSCRIBE':
        for (const s of params) this.unsubscribeOne(conn, s);
        this.reply(conn, { result: null, id });
        return;
      case 'LIST_SUBSCRIPTIONS':
        this.reply(conn, { result: [...conn.streams], id });
        return;
      case 'SET_PROPERTY':
        this.reply(conn, { result: null, id });
        return;
      case 'GET_PROPERTY':
        this.reply(conn, { result: conn.combined, id });
        return;
      default:
        this.reply(conn, { error: { code: 2, msg: `Invalid request: unknown method ${String(req.method)}` }, id });
    }
  }

  /** Returns false when the socket was closed instead (a paused channel). */
  private subscribe(conn: Conn, streams: readonly string[]): boolean {
    for (const s of streams) {
      const ch = channelOf(s);
      if (ch !== undefined && (this.isPaused(ch) || this.isPaused('all'))) {
        // While a channel is paused its subscribers are dropped, as if the stream server went away.
        this.kill(conn, 'abrupt');
        return false;
      }
    }
    for (const s of streams) {
      if (conn.streams.has(s)) continue;
      conn.streams.add(s);
      let set = this.subs.get(s);
      if (!set) {
        set = new Set();
        this.subs.set(s, set);
        this.o.onStreamActive(s, true);
      }
      set.add(conn);
      this.stats.subscriptions++;
    }
    return true;
  }

  private unsubscribeOne(conn: Conn, s: string): void {
    if (!conn.streams.delete(s)) return;
    this.stats.subscriptions--;
    const set = this.subs.get(s);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) {
      this.subs.delete(s);
      this.o.onStreamActive(s, false);
    }
  }

  private detach(conn: Conn): void {
    if (!this.conns.has(conn)) return;
    conn.closed = true;
    for (const s of [...conn.streams]) this.unsubscribeOne(conn, s);
    this.conns.delete(conn);
    this.stats.connections = this.conns.size;
  }

  private reply(conn: Conn, msg: unknown): void {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) return;
    conn.ws.send(JSON.stringify(msg));
  }

  /** Sends one event to every subscriber of `stream`. */
  publish(stream: string, payload: string): void {
    const set = this.subs.get(stream);
    if (!set) return;
    let wrapped: string | undefined;
    for (const conn of set) {
      if (conn.combined) {
        wrapped ??= `{"stream":"${stream}","data":${payload}}`;
        this.send(conn, wrapped);
      } else {
        this.send(conn, payload);
      }
    }
  }

  private send(conn: Conn, msg: string): void {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) return;
    if (conn.ws.bufferedAmount > this.o.maxBufferedBytes) {
      this.stats.slowConsumerDrops++;
      this.o.log.warn({ conn: conn.id, bufferedBytes: conn.ws.bufferedAmount }, 'dropping slow websocket consumer');
      this.kill(conn, 'abrupt');
      return;
    }
    if (!conn.corked) {
      conn.socket.cork();
      conn.corked = true;
      this.corked.push(conn);
    }
    conn.ws.send(msg);
    this.stats.messagesSent++;
    this.stats.bytesSent += msg.length;
  }

  /** Ends a tick's batch: everything queued goes out now. */
  flush(): void {
    for (const c of this.corked) {
      c.corked = false;
      c.socket.uncork();
    }
    this.corked.length = 0;
  }

  /** abrupt: TCP reset without a close frame (clients see 1006); clean: close frame 1001 (going away). */
  kill(conn: Conn, how: 'abrupt' | 'clean'): void {
    if (conn.corked) {
      conn.corked = false;
      conn.socket.uncork();
    }
    if (how === 'abrupt') conn.ws.terminate();
    else conn.ws.close(1001, 'going away');
    this.detach(conn);
  }

  dropAll(how: 'abrupt' | 'clean'): number {
    const all = [...this.conns];
    for (const c of all) this.kill(c, how);
    return all.length;
  }

  /** Drops the sockets carrying `target`'s streams and keeps refusing them until `until`. */
  pause(target: PauseTarget, until: number): number {
    this.pausedUntil.set(target, Math.max(until, this.pausedUntil.get(target) ?? 0));
    let n = 0;
    for (const c of [...this.conns]) {
      const hit = target === 'all' || [...c.streams].some((s) => channelOf(s) === target);
      if (hit) {
        this.kill(c, 'abrupt');
        n++;
      }
    }
    return n;
  }

  isPaused(target: PauseTarget): boolean {
    const until = this.pausedUntil.get(target);
    if (until === undefined) return false;
    if (this.o.now() >= until) {
      this.pausedUntil.delete(target);
      return false;
    }
    return true;
  }

  /** Closes every socket with 1001, giving clients up to `graceMs` to answer before the reset. */
  async close(graceMs = 500): Promise<void> {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    const sockets = [...this.conns].map((c) => c.ws);
    this.dropAll('clean');
    const deadline = Date.now() + graceMs;
    while (sockets.some((ws) => ws.readyState !== WebSocket.CLOSED) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const ws of sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    this.wss.close();
  }
}
