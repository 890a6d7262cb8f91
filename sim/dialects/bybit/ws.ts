/**
 * Bybit v5 public websocket: `/v5/public/spot` and `/v5/public/linear`. Clients send
 * `{"op":"subscribe","req_id":..,"args":[topics]}` (acked `{"success":true,"ret_msg":"","conn_id",
 * "req_id","op":"subscribe"}`), `unsubscribe`, and `{"op":"ping"}` (answered with `ret_msg:"pong"`);
 * the server sends no ping frames. Topics:
 * - `publicTrade.<id>`: each tick's trades of a symbol in one message (`data` array).
 * - `tickers.<id>`: spot: a snapshot per push (no book fields); linear: a snapshot to each new
 *   subscriber, then deltas holding only the fields that changed (ccxt merges them).
 * - `kline.<interval>.<id>`: the forming bucket every `klinePushIntervalMs`, `confirm: true` once
 *   when it closes.
 * - `orderbook.<depth>.<id>` (1, 50, 200, 1000): a snapshot to each new subscriber, then deltas of
 *   the top `depth` levels (size "0" = level left); `u` counts the topic's messages (1 = snapshot
 *   after a restart), `seq` is the engine's book sequence. Depth 1 is always a snapshot.
 *
 * Inside the hub a topic is keyed `<category>|<topic>` (spot and linear share topic names).
 */
import { createHash } from 'node:crypto';
import type { RawData } from 'ws';
import type { Logger } from '../../../core/log.ts';
import { type Interval, nextOpen } from '../../candles.ts';
import type { SymbolEngine } from '../../engine.ts';
import type { StreamChannel } from '../../faults.ts';
import type { TickerView } from '../../market-engine.ts';
import type { Conn, SocketHub, SocketProtocol } from '../../ws-hub.ts';
import * as wire from './wire.ts';
import type { Category } from './wire.ts';

const BOOK_DEPTHS = new Set([1, 50, 200, 1000]);
/** Bybit accepts at most this many args per spot subscribe request. */
const SPOT_MAX_ARGS = 10;

export const WS_PATHS: Readonly<Record<string, Category>> = { '/v5/public/spot': 'spot', '/v5/public/linear': 'linear' };

const key = (c: Category, topic: string) => `${c}|${topic}`;
const split = (k: string): [Category, string] => {
  const bar = k.indexOf('|');
  return [k.slice(0, bar) as Category, k.slice(bar + 1)];
};

export function channelOf(hubKey: string): StreamChannel | undefined {
  const topic = split(hubKey)[1];
  const kind = topic.slice(0, topic.indexOf('.'));
  if (kind === 'publicTrade') return 'trades';
  if (kind === 'tickers') return 'ticker';
  if (kind === 'kline') return 'kline';
  if (kind === 'orderbook') return 'depth';
  return undefined;
}

interface KlineState {
  readonly engine: SymbolEngine;
  readonly interval: Interval;
  readonly id: string;
  lastOpen: number;
  lastPushAt: number;
}

interface BookState {
  readonly engine: SymbolEngine;
  readonly depth: number;
  bids: Map<number, number>;
  asks: Map<number, number>;
  u: number;
  seq: number;
  ts: number;
}

const connIdOf = (conn: Conn): string => {
  const h = createHash('sha1').update(`bybit-conn:${conn.id}`).digest('hex');
  return `${h.slice(0, 20)}-${conn.id}`;
};

export class BybitStreams implements SocketProtocol {
  private readonly hub: SocketHub;
  private readonly klinePushIntervalMs: number;
  private readonly log: Logger;
  private readonly byId = new Map<string, SymbolEngine>();
  private readonly category = new WeakMap<Conn, Category>();
  private readonly klines = new Map<string, KlineState>();
  private readonly books = new Map<string, BookState>();
  /** Linear ticker per symbol as last pushed (the base of the next delta, a new subscriber's snapshot). */
  private readonly linearTickers = new Map<SymbolEngine, { ts: number; data: Record<string, string> }>();
  /** Per socket: the linear ticker / book topics it already has a snapshot of. */
  private readonly snapshotted = new WeakMap<Conn, Set<string>>();

  constructor(hub: SocketHub, engines: readonly SymbolEngine[], klinePushIntervalMs: number, log: Logger) {
    this.hub = hub;
    this.klinePushIntervalMs = klinePushIntervalMs;
    this.log = log;
    this.markets(engines, []);
  }

  /** Serves `added` (listed at runtime) and stops `removed` (delisted): their topics go quiet, new subscriptions are refused. */
  markets(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void {
    const gone = new Set(removed);
    for (const e of removed) {
      if (this.byId.get(e.spec.id) === e) this.byId.delete(e.spec.id);
      this.linearTickers.delete(e);
    }
    for (const [k, st] of this.klines) if (gone.has(st.engine)) this.klines.delete(k);
    for (const [k, st] of this.books) if (gone.has(st.engine)) this.books.delete(k);
    for (const e of added) this.byId.set(e.spec.id, e);
  }

  channelOf(hubKey: string): StreamChannel | undefined {
    return channelOf(hubKey);
  }

  onOpen(conn: Conn): void {
    const path = conn.url.pathname;
    const c = Object.entries(WS_PATHS).find(([p]) => path.endsWith(p))?.[1] ?? 'spot';
    this.category.set(conn, c);
    this.snapshotted.set(conn, new Set());
  }

  onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    const c = this.category.get(conn)!;
    const connId = connIdOf(conn);
    let req: { op?: unknown; args?: unknown; req_id?: unknown };
    try {
      if (isBinary) throw new Error('binary');
      req = JSON.parse(data.toString()) as typeof req;
      if (req === null || typeof req !== 'object') throw new Error('not an object');
    } catch {
      this.hub.reply(conn, { success: false, ret_msg: 'error:request not json', conn_id: connId, request: { op: '', args: null } });
      return;
    }
    const reqId = req.req_id === undefined ? {} : { req_id: String(req.req_id) };
    const args = Array.isArray(req.args) ? req.args.filter((a): a is string => typeof a === 'string') : [];
    switch (req.op) {
      case 'ping':
        this.hub.reply(conn, { success: true, ret_msg: 'pong', conn_id: connId, ...reqId, op: 'ping' });
        return;
      case 'subscribe': {
        if (c === 'spot' && args.length > SPOT_MAX_ARGS) {
          this.hub.reply(conn, { success: false, ret_msg: `args size >${SPOT_MAX_ARGS}`, conn_id: connId, ...reqId, op: 'subscribe' });
          return;
        }
        const bad = args.find((a) => !this.valid(a) || this.hub.refusesSubscription(this.byId.get(a.split('.').at(-1) ?? '')!.spec.symbol));
        if (bad !== undefined || args.length === 0) {
          this.log.debug({ topic: bad }, 'bybit: subscription to a topic the sim does not serve');
          this.hub.reply(conn, { success: false, ret_msg: `error:handler not found,topic:${bad ?? ''}`, conn_id: connId, ...reqId, op: 'subscribe' });
          return;
        }
        const keys = args.map((a) => key(c, a));
        const already = new Set(keys.filter((k) => conn.topics.has(k)));
        if (!this.hub.subscribe(conn, keys)) return;
        this.hub.reply(conn, { success: true, ret_msg: '', conn_id: connId, ...reqId, op: 'subscribe' });
        for (const k of keys) if (!already.has(k)) this.sendSnapshot(conn, k);
        return;
      }
      case 'unsubscribe':
        for (const a of args) {
          const k = key(c, a);
          this.hub.unsubscribe(conn, k);
          this.snapshotted.get(conn)?.delete(k);
        }
        this.hub.reply(conn, { success: true, ret_msg: '', conn_id: connId, ...reqId, op: 'unsubscribe' });
        return;
      default:
        this.hub.reply(conn, { success: false, ret_msg: 'error:invalid op', conn_id: connId, request: { op: req.op ?? '', args: req.args ?? null } });
    }
  }

  /** True for a topic this dialect serves. */
  private valid(topic: string): boolean {
    const parts = topic.split('.');
    const e = this.byId.get(parts.at(-1) ?? '');
    if (!e) return false;
    if (parts.length === 2) return parts[0] === 'publicTrade' || parts[0] === 'tickers';
    if (parts.length !== 3) return false;
    if (parts[0] === 'kline') return wire.BYBIT_INTERVALS[parts[1]!] !== undefined;
    if (parts[0] === 'orderbook') return BOOK_DEPTHS.has(Number(parts[1]));
    return false;
  }

  onTopicActive(hubKey: string, active: boolean): void {
    if (!active) {
      this.klines.delete(hubKey);
      this.books.delete(hubKey);
      return;
    }
    const topic = split(hubKey)[1];
    const parts = topic.split('.');
    const engine = this.byId.get(parts.at(-1)!);
    if (!engine) return;
    if (parts[0] === 'kline') {
      const interval = wire.BYBIT_INTERVALS[parts[1]!] as Interval;
      this.klines.set(hubKey, { engine, interval, id: parts[1]!, lastOpen: engine.currentOpen(interval), lastPushAt: -Infinity });
    } else if (parts[0] === 'orderbook') {
      const depth = Number(parts[1]);
      const b = engine.book(depth);
      this.books.set(hubKey, { engine, depth, bids: new Map(b.bids), asks: new Map(b.asks), u: 1, seq: b.lastUpdateId, ts: Math.floor(engine.generatedUntil) });
    }
  }

  /** A new subscriber's first message on a snapshot/delta topic. */
  private sendSnapshot(conn: Conn, hubKey: string): void {
    const [c, topic] = split(hubKey);
    const book = this.books.get(hubKey);
    if (book) {
      this.hub.send(conn, this.bookMessage(topic, book, 'snapshot', book.bids, book.asks));
      this.snapshotted.get(conn)?.add(hubKey);
      return;
    }
    if (c === 'linear' && topic.startsWith('tickers.')) {
      const last = this.linearTickers.get(this.byId.get(topic.slice('tickers.'.length))!);
      if (!last) return; // the next push is this socket's snapshot
      this.hub.send(conn, JSON.stringify({ topic, type: 'snapshot', data: last.data, cs: last.ts, ts: last.ts }));
      this.snapshotted.get(conn)?.add(hubKey);
    }
  }

  private bookMessage(topic: string, b: BookState, type: 'snapshot' | 'delta', bids: Iterable<[number, number]>, asks: Iterable<[number, number]>): string {
    const spec = b.engine.spec;
    const side = (m: Iterable<[number, number]>) => wire.levels(spec, [...m]);
    return JSON.stringify({ topic, type, ts: b.ts, data: { s: spec.id, b: side(bids), a: side(asks), u: b.u, seq: b.seq }, cts: b.ts });
  }

  onBookDiff(e: SymbolEngine): void {
    for (const [hubKey, b] of this.books) {
      if (b.engine !== e) continue;
      const snap = e.book(b.depth);
      const diff = (prev: Map<number, number>, next: ReadonlyArray<readonly [number, number]>): [number, number][] => {
        const out: [number, number][] = [];
        const nextMap = new Map(next);
        for (const [p, q] of nextMap) if (prev.get(p) !== q) out.push([p, q]);
        for (const p of prev.keys()) if (!nextMap.has(p)) out.push([p, 0]);
        return out;
      };
      const db = diff(b.bids, snap.bids);
      const da = diff(b.asks, snap.asks);
      if (db.length === 0 && da.length === 0) continue;
      b.bids = new Map(snap.bids);
      b.asks = new Map(snap.asks);
      b.u++;
      b.seq = snap.lastUpdateId;
      b.ts = Math.floor(e.generatedUntil);
      const topic = split(hubKey)[1];
      const subs = this.hub.subscribers(hubKey);
      if (!subs) continue;
      const snapshotMsg = this.bookMessage(topic, b, 'snapshot', b.bids, b.asks);
      const deltaMsg = b.depth === 1 ? snapshotMsg : this.bookMessage(topic, b, 'delta', db, da);
      for (const conn of subs) {
        const seen = this.snapshotted.get(conn);
        if (seen?.has(hubKey)) this.hub.send(conn, deltaMsg);
        else {
          this.hub.send(conn, snapshotMsg);
          seen?.add(hubKey);
        }
      }
    }
  }

  onTrades(e: SymbolEngine, from: number, to: number, eventTime: number): void {
    const topic = `publicTrade.${e.spec.id}`;
    for (const c of wire.CATEGORIES) {
      const k = key(c, topic);
      if (!this.hub.subscribers(k)) continue;
      const rows: string[] = [];
      for (let id = from; id < to; id++) rows.push(wire.tradeWs(c, e.spec, e.trades, id));
      this.hub.publish(k, wire.publicTradeMessage(topic, eventTime, rows));
    }
  }

  onTickers(_t: number, tickers: readonly TickerView[]): void {
    for (const { engine: e, stats: s, text: x } of tickers) {
      const topic = `tickers.${e.spec.id}`;
      const ts = Math.floor(s.closeTime);
      const spotKey = key('spot', topic);
      if (this.hub.subscribers(spotKey)) {
        this.hub.publish(spotKey, JSON.stringify({ topic, ts, type: 'snapshot', cs: ts, data: wire.spotTickerWs(e.spec, x) }));
      }
      const data = wire.linearTicker(e.spec, s, x);
      const prev = this.linearTickers.get(e);
      this.linearTickers.set(e, { ts, data });
      const linKey = key('linear', topic);
      const subs = this.hub.subscribers(linKey);
      if (!subs) continue;
      const changed: Record<string, string> = { symbol: e.spec.id };
      for (const [k, v] of Object.entries(data)) if (prev?.data[k] !== v) changed[k] = v;
      const snapshot = JSON.stringify({ topic, type: 'snapshot', data, cs: ts, ts });
      const delta = JSON.stringify({ topic, type: 'delta', data: changed, cs: ts, ts });
      for (const conn of subs) {
        const seen = this.snapshotted.get(conn);
        if (seen?.has(linKey) && prev) this.hub.send(conn, delta);
        else {
          this.hub.send(conn, snapshot);
          seen?.add(linKey);
        }
      }
    }
  }

  onTick(t: number): void {
    for (const [hubKey, st] of this.klines) {
      const { engine, interval } = st;
      const topic = split(hubKey)[1];
      const msg = (rows: string[]) => `{"topic":"${topic}","data":[${rows.join(',')}],"ts":${Math.floor(t)},"type":"snapshot"}`;
      const cur = engine.currentOpen(interval);
      if (cur > st.lastOpen) {
        for (let open = st.lastOpen; open < cur; open = nextOpen(interval, open)) {
          const k = engine.kline(interval, open);
          if (k) this.hub.publish(hubKey, msg([wire.klineWs(engine.spec, st.id, k, true, Math.floor(t))]));
        }
        st.lastOpen = cur;
      } else if (t - st.lastPushAt < this.klinePushIntervalMs) {
        continue;
      }
      const k = engine.kline(interval, cur);
      if (k) this.hub.publish(hubKey, msg([wire.klineWs(engine.spec, st.id, k, false, Math.floor(t))]));
      st.lastPushAt = t;
    }
  }
}
