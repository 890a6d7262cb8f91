/**
 * A dialect is one exchange's wire format over the shared MarketEngine: its REST routes and answer
 * shapes, its websocket subscribe/ack/ping protocol and message shapes, its error format and its
 * rate-limit answer. It holds no market state of its own beyond what its protocol needs (stream
 * subscriptions, candle push cadence); the trades, books, candles and tickers are the engine's.
 *
 * Every dialect is served on the sim's one port under its own path prefix (Binance's at the root,
 * for compatibility; the others under `/<name>`), so one sim speaks all of them at once and a
 * trade it prints is the same trade in every format.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../core/log.ts';
import type { Faults } from '../faults.ts';
import type { EngineListener, MarketEngine } from '../market-engine.ts';
import type { SocketHub } from '../ws-hub.ts';

export const DIALECTS = ['binance', 'okx', 'kraken', 'bybit', 'coinbaseexchange'] as const;
export type DialectName = (typeof DIALECTS)[number];

/** What the sim gives a dialect when building it. */
export interface DialectContext {
  readonly market: MarketEngine;
  readonly faults: Faults;
  readonly log: Logger;
  /** Drop a websocket whose unsent backlog exceeds this. */
  readonly maxBufferedBytes: number;
  /** Candle update cadence per subscribed stream (virtual ms). */
  readonly klinePushIntervalMs: number;
  /** Enforce the venue's per-connection stream and subscribe-request limits. */
  readonly venueLimits: boolean;
  /** Enforce the venue's incoming message rate per connection (Binance: 5/s, else closed 1008). */
  readonly venueMessageRate: boolean;
  /** Called on an unexpected error answering a REST request (answered 500). */
  readonly onError: (err: unknown, path: string) => void;
}

/** The URLs the sim is reachable at (host:port known only after listening). */
export interface SimUrls {
  /** http://host:port */
  readonly url: string;
  /** ws://host:port */
  readonly wsUrl: string;
}

export interface Dialect extends EngineListener {
  readonly name: DialectName;
  /** Path prefix it is served under: '' (root) or '/<name>'. */
  readonly prefix: string;
  /** Its websocket server (fault controls reach every dialect's sockets through it). */
  readonly hub: SocketHub;
  /**
   * Answers a REST request whose path (prefix removed) is one of its routes; false = not one
   * (the server answers 404). It asks `faults.restVerdict(name)` first and answers a refusal
   * (refused, rate-limited) in its exchange's own format.
   */
  handleRest(req: IncomingMessage, res: ServerResponse, path: string, url: URL): boolean;
  /** Accepts a websocket upgrade for one of its paths (prefix removed); false = not one. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): boolean;
}

/** A dialect's static side: its name, where it is mounted, how ccxt reaches it, and its factory. */
export interface DialectModule {
  readonly name: DialectName;
  /** Path prefix: '' (root) or '/<name>'. */
  readonly prefix: string;
  /** The ccxt exchange id this dialect is written for (`ccxt[ccxtId]`, `ccxt.pro[ccxtId]`). */
  readonly ccxtId: string;
  /**
   * ccxt constructor options (plain data, fit for YAML) for `ccxtId` against the sim at `urls`.
   * The caller adds what cannot be data: `httpAgent: new http.Agent()` (ccxt refuses ws:// URLs
   * without one).
   */
  ccxtOptions(urls: SimUrls): Record<string, unknown>;
  build(ctx: DialectContext): Dialect;
}

/** Writes a JSON answer (HEAD gets the headers only). */
export function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
}
