/**
 * The websocket server under every dialect: connections, topic subscriptions, fan-out, the shared
 * fault controls (drops, paused channels, refused upgrades) and slow-consumer drops. A dialect
 * brings the protocol (`SocketProtocol`: what a client sends, what the server answers) and names
 * its topics; the hub knows nothing of any exchange's message format.
 *
 * Sending is batched per timer tick: each socket is corked on its first message of a tick and
 * uncorked in `flush()`, so thousands of trade frames leave in one write instead of one syscall each.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../core/log.ts';
import type { Faults, PauseTarget, StreamChannel } from './faults.ts';

export class Conn {
  readonly id: number;
  readonly ws: WebSocket;
  readonly socket: Duplex;
  readonly url: URL;
  readonly topics = new Set<string>();
  corked = false;
  closed = false;
  /** Arrival times (ms) of the client's last messages, for a venue's message-rate rule (`overRate`). */
  private recent: number[] = [];
  /** Wraps each published payload (Binance's combined streams: `{"stream","data"}`). */
  wrap: ((topic: string, payload: string) => string) | undefined;
  constructor(id: number, ws: WebSocket, socket: Duplex, url: URL) {
    this.id = id;
    this.ws = ws;
    this.socket = socket;
    this.url = url;
  }

  /** Records a client message; true when more than `perSecond` arrived within the last second. */
  overRate(perSecond: number, now = Date.now()): boolean {
    const r = this.recent;
    r.push(now);
    while (r.length > 0 && r[0]! <= now - 1000) r.shift();
    return r.length > perSecond;
  }
}

/** A dialect's websocket protocol. */
export interface SocketProtocol {
  /** A socket was accepted (subscribe to topics named in the URL here). */
  onOpen(conn: Conn): void;
  /** A client frame. */
  onMessage(conn: Conn, data: RawData, isBinary: boolean): void;
  /** Which fault channel a topic belongs to; undefined = none (never paused on its own). */
  channelOf(topic: string): StreamChannel | undefined;
  /** A topic gained its first (true) or lost its last (false) subscriber. */
  onTopicActive?(topic: string, active: boolean): void;
}

export interface HubOptions {
  /** The dialect's name (faults can target it). */
  readonly dialect: string;
  readonly log: Logger;
  readonly faults: Faults;
  /** A socket whose unsent backlog exceeds this is dropped (exchanges drop slow readers too). */
  readonly maxBufferedBytes: number;
  /** Server ping frames every this many ms; 0 = none (clients ping, as on OKX). */
  readonly pingIntervalMs: number;
}

export interface HubStats {
  connections: number;
  connectionsOpened: number;
  messagesSent: number;
  bytesSent: number;
  slowConsumerDrops: number;
  refusedUpgrades: number;
  /** Sockets closed or requests refused for breaking a venue rule (streams per connection, message rate). */
  refusedConnections: number;
  subscriptions: number;
}

const STATUS_TEXT: Record<number, string> = { 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 451: 'Unavailable For Legal Reasons', 503: 'Service Unavailable' };

export class SocketHub {
  private readonly o: HubOptions;
  readonly conns = new Set<Conn>();
  private readonly subs = new Map<string, Set<Conn>>();
  private readonly corked: Conn[] = [];
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 });
  private nextId = 1;
  private pingTimer: NodeJS.Timeout | undefined;
  private protocol: SocketProtocol | undefined;
  readonly stats: HubStats = {
    connections: 0,
    connectionsOpened: 0,
    messagesSent: 0,
    bytesSent: 0,
    slowConsumerDrops: 0,
    refusedUpgrades: 0,
    refusedConnections: 0,
    subscriptions: 0,
  };

  constructor(o: HubOptions) {
    this.o = o;
    if (o.pingIntervalMs > 0) {
      this.pingTimer = setInterval(() => {
        for (const c of this.conns) if (!c.closed) c.ws.ping();
      }, o.pingIntervalMs);
      this.pingTimer.unref();
    }
  }

  /** Set once by the dialect that owns the hub. */
  use(protocol: SocketProtocol): void {
    this.protocol = protocol;
  }

  subscribers(topic: string): ReadonlySet<Conn> | undefined {
    return this.subs.get(topic);
  }

  /** Accepts an upgrade the dialect has matched, unless a fault refuses it (answered with the status). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refused = this.o.faults.wsVerdict(this.o.dialect);
    if (refused !== undefined) {
      this.stats.refusedUpgrades++;
      socket.end(`HTTP/1.1 ${refused} ${STATUS_TEXT[refused] ?? 'Refused'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://sim');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new Conn(this.nextId++, ws, socket, url);
      this.conns.add(conn);
      this.stats.connections = this.conns.size;
      this.stats.connectionsOpened++;
      ws.on('message', (data, isBinary) => this.protocol?.onMessage(conn, data, isBinary));
      ws.on('close', () => this.detach(conn));
      ws.on('error', (err) => this.o.log.debug({ dialect: this.o.dialect, conn: conn.id, err: err.message }, 'ws error'));
      this.protocol?.onOpen(conn);
    });
  }

  /**
   * Subscribes `conn` to `topics`. Returns false when the socket was closed instead: while a
   * channel is paused its subscribers are dropped, as if the stream server went away.
   */
  subscribe(conn: Conn, topics: readonly string[]): boolean {
    for (const t of topics) {
      const ch = this.protocol?.channelOf(t);
      if (ch !== undefined && (this.isPaused(ch) || this.isPaused('all'))) {
        this.kill(conn, 'abrupt');
        return false;
      }
    }
    for (const t of topics) {
      if (conn.topics.has(t)) continue;
      conn.topics.add(t);
      let set = this.subs.get(t);
      if (!set) {
        set = new Set();
        this.subs.set(t, set);
        this.protocol?.onTopicActive?.(t, true);
      }
      set.add(conn);
      this.stats.subscriptions++;
    }
    return true;
  }

  unsubscribe(conn: Conn, topic: string): void {
    if (!conn.topics.delete(topic)) return;
    this.stats.subscriptions--;
    const set = this.subs.get(topic);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) {
      this.subs.delete(topic);
      this.protocol?.onTopicActive?.(topic, false);
    }
  }

  private detach(conn: Conn): void {
    if (!this.conns.has(conn)) return;
    conn.closed = true;
    for (const t of [...conn.topics]) this.unsubscribe(conn, t);
    this.conns.delete(conn);
    this.stats.connections = this.conns.size;
  }

  /** Sends a control answer (ack, pong, error) now, outside the tick's batch. */
  reply(conn: Conn, msg: unknown): void {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) return;
    conn.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Sends one event to every subscriber of `topic`. */
  publish(topic: string, payload: string): void {
    const set = this.subs.get(topic);
    if (!set) return;
    for (const conn of set) this.send(conn, conn.wrap ? conn.wrap(topic, payload) : payload);
  }

  /** Sends one event to one socket, in the tick's batch. */
  send(conn: Conn, msg: string): void {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) return;
    if (conn.ws.bufferedAmount > this.o.maxBufferedBytes) {
      this.stats.slowConsumerDrops++;
      this.o.log.warn({ dialect: this.o.dialect, conn: conn.id, bufferedBytes: conn.ws.bufferedAmount }, 'dropping slow websocket consumer');
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

  /** Closes one socket with a close frame, as a venue enforcing a rule does (Binance: 1008 "Too many requests"). */
  refuse(conn: Conn, code: number, reason: string): void {
    this.stats.refusedConnections++;
    this.o.log.info({ dialect: this.o.dialect, conn: conn.id, code, reason }, 'sim closed a websocket breaking a venue rule');
    if (conn.corked) {
      conn.corked = false;
      conn.socket.uncork();
    }
    conn.ws.close(code, reason);
    this.detach(conn);
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

  /** Drops the sockets carrying `target`'s topics (the pause itself is in Faults). */
  dropChannel(target: PauseTarget): number {
    let n = 0;
    for (const c of [...this.conns]) {
      const hit = target === 'all' || [...c.topics].some((t) => this.protocol?.channelOf(t) === target);
      if (hit) {
        this.kill(c, 'abrupt');
        n++;
      }
    }
    return n;
  }

  /** The open sockets and the streams each carries (stats). */
  connections(): { id: number; path: string; streams: number }[] {
    return [...this.conns].map((c) => ({ id: c.id, path: c.url.pathname, streams: c.topics.size }));
  }

  /** Whether a fault makes this dialect refuse subscribe requests naming `symbol` (unified). */
  refusesSubscription(symbol: string): boolean {
    return this.o.faults.refusesSubscription(this.o.dialect, symbol);
  }

  isPaused(target: PauseTarget): boolean {
    return this.o.faults.isPaused(this.o.dialect, target);
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
