/**
 * Binance's market-stream websocket: `SUBSCRIBE` / `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` requests,
 * raw events on `/ws/...` and `/stream/ws/...` (what ccxt opens: `<ws url>/0`, `/1`, ...), the
 * combined envelope `{"stream","data"}` on `/stream?streams=a/b`, ping frames every 20 s; and what
 * each stream carries every tick. Topics are Binance's stream names (`btcusdt@trade`).
 */
import type { RawData } from 'ws';
import type { Logger } from '../../../core/log.ts';
import { type Interval, isInterval, nextOpen } from '../../candles.ts';
import type { BookDiff, SymbolEngine } from '../../engine.ts';
import type { StreamChannel } from '../../faults.ts';
import type { TickerView } from '../../market-engine.ts';
import type { Conn, SocketHub, SocketProtocol } from '../../ws-hub.ts';
import * as wire from './wire.ts';

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

/** "A single connection can listen to a maximum of 1024 streams." (Binance spot market streams) */
export const BINANCE_MAX_STREAMS = 1024;
/** "WebSocket connections have a limit of 5 incoming messages per second" (spot), then closed with 1008. */
export const BINANCE_MESSAGES_PER_SECOND = 5;

/** True for the paths Binance's stream server answers: /ws..., /stream... */
export function isStreamPath(path: string): boolean {
  return path === '/ws' || path.startsWith('/ws/') || path === '/stream' || path.startsWith('/stream/');
}

interface KlineStreamState {
  readonly engine: SymbolEngine;
  readonly interval: Interval;
  lastOpen: number;
  lastPushAt: number;
}

interface DepthAccumulator {
  U: number;
  u: number;
  readonly bids: Map<number, number>;
  readonly asks: Map<number, number>;
}

interface StreamNames {
  readonly trade: string;
  readonly aggTrade: string;
  readonly depth100: string;
  readonly depth1s: string;
  /** `@depth@1000ms`: what ccxt sends with watchOrderBookRate 1000; same stream as `@depth`. */
  readonly depth1sAlias: string;
  readonly ticker: string;
  readonly miniTicker: string;
  readonly bookTicker: string;
}

export class BinanceStreams implements SocketProtocol {
  private readonly hub: SocketHub;
  private readonly klinePushIntervalMs: number;
  private readonly log: Logger;
  private readonly limits: { readonly maxStreamsPerConnection: number; readonly messagesPerSecond: number };
  private readonly names = new Map<SymbolEngine, StreamNames>();
  private readonly byLid = new Map<string, SymbolEngine>();
  private readonly klineStreams = new Map<string, KlineStreamState>();
  private readonly depth1s = new Map<SymbolEngine, DepthAccumulator>();
  private readonly partialDepth = new Map<string, { engine: SymbolEngine; levels: number; fast: boolean }>();
  /** The `@100ms` partial-depth streams per engine (each book diff looks up its own, not every one). */
  private readonly fastPartial = new Map<SymbolEngine, Map<string, number>>();
  private lastDepth1sAt = 0;

  constructor(
    hub: SocketHub,
    engines: readonly SymbolEngine[],
    klinePushIntervalMs: number,
    log: Logger,
    limits: { readonly maxStreamsPerConnection: number; readonly messagesPerSecond: number } = { maxStreamsPerConnection: Infinity, messagesPerSecond: Infinity },
  ) {
    this.hub = hub;
    this.klinePushIntervalMs = klinePushIntervalMs;
    this.log = log;
    this.limits = limits;
    this.markets(engines, []);
  }

  /** Serves `added` (listed at runtime) and stops `removed` (delisted): their streams go quiet. */
  markets(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void {
    const gone = new Set(removed);
    for (const e of removed) {
      this.names.delete(e);
      this.depth1s.delete(e);
      this.fastPartial.delete(e);
      if (this.byLid.get(e.spec.lid) === e) this.byLid.delete(e.spec.lid);
    }
    for (const [k, st] of this.klineStreams) if (gone.has(st.engine)) this.klineStreams.delete(k);
    for (const [k, st] of this.partialDepth) if (gone.has(st.engine)) this.partialDepth.delete(k);
    for (const e of added) {
      const lid = e.spec.lid;
      this.byLid.set(lid, e);
      this.names.set(e, {
        trade: `${lid}@trade`,
        aggTrade: `${lid}@aggTrade`,
        depth100: `${lid}@depth@100ms`,
        depth1s: `${lid}@depth`,
        depth1sAlias: `${lid}@depth@1000ms`,
        ticker: `${lid}@ticker`,
        miniTicker: `${lid}@miniTicker`,
        bookTicker: `${lid}@bookTicker`,
      });
    }
  }

  channelOf(topic: string): StreamChannel | undefined {
    return channelOf(topic);
  }

  onOpen(conn: Conn): void {
    const path = conn.url.pathname;
    const combined = path === '/stream' || path === '/stream/';
    if (combined) conn.wrap = (stream, payload) => `{"stream":"${stream}","data":${payload}}`;
    // Streams named in the URL: /ws/btcusdt@trade, /stream?streams=btcusdt@trade/ethusdt@trade
    const initial = combined ? (conn.url.searchParams.get('streams') ?? '').split('/') : [decodeURIComponent(path.slice(path.lastIndexOf('/') + 1))];
    const named = initial.filter((s) => s.includes('@'));
    if (named.length > this.limits.maxStreamsPerConnection) {
      this.hub.refuse(conn, 1008, `Too many streams: ${named.length} > ${this.limits.maxStreamsPerConnection} per connection`);
      return;
    }
    if (named.length > 0) this.hub.subscribe(conn, named);
  }

  /** Streams in `params` this socket does not carry yet. */
  private newStreams(conn: Conn, params: readonly string[]): number {
    let n = 0;
    for (const p of new Set(params)) if (!conn.topics.has(p)) n++;
    return n;
  }

  onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    if (this.limits.messagesPerSecond < Infinity && conn.overRate(this.limits.messagesPerSecond)) {
      this.hub.refuse(conn, 1008, 'Too many requests');
      return;
    }
    let req: { method?: unknown; params?: unknown; id?: unknown };
    try {
      if (isBinary) throw new Error('binary');
      req = JSON.parse(data.toString()) as typeof req;
      if (req === null || typeof req !== 'object') throw new Error('not an object');
    } catch {
      this.hub.reply(conn, { error: { code: 3, msg: 'Invalid JSON: expected a JSON object' }, id: null });
      return;
    }
    const id = req.id ?? null;
    const params = Array.isArray(req.params) ? req.params.filter((p): p is string => typeof p === 'string') : [];
    switch (req.method) {
      case 'SUBSCRIBE':
        if (conn.topics.size + this.newStreams(conn, params) > this.limits.maxStreamsPerConnection) {
          this.hub.stats.refusedConnections++;
          this.hub.reply(conn, { error: { code: 3, msg: `Too many streams: a connection carries at most ${this.limits.maxStreamsPerConnection}` }, id });
          return;
        }
        if (params.some((p) => this.refused(p))) {
          // The whole request is refused, none of its streams subscribed.
          this.hub.reply(conn, { error: { code: 2, msg: 'Invalid request: invalid stream' }, id });
          return;
        }
        if (!this.hub.subscribe(conn, params)) return;
        this.hub.reply(conn, { result: null, id });
        return;
      case 'UNSUBSCRIBE':
        for (const s of params) this.hub.unsubscribe(conn, s);
        this.hub.reply(conn, { result: null, id });
        return;
      case 'LIST_SUBSCRIPTIONS':
        this.hub.reply(conn, { result: [...conn.topics], id });
        return;
      case 'SET_PROPERTY':
        this.hub.reply(conn, { result: null, id });
        return;
      case 'GET_PROPERTY':
        this.hub.reply(conn, { result: conn.wrap !== undefined, id });
        return;
      default:
        this.hub.reply(conn, { error: { code: 2, msg: `Invalid request: unknown method ${String(req.method)}` }, id });
    }
  }

  /** A stream of a symbol the faults make the venue refuse (sim faults `refuseSubscribe`). */
  private refused(stream: string): boolean {
    const e = this.byLid.get(stream.slice(0, stream.indexOf('@')));
    return e !== undefined && this.hub.refusesSubscription(e.spec.symbol);
  }

  onTopicActive(stream: string, active: boolean): void {
    if (!active) {
      this.klineStreams.delete(stream);
      const p = this.partialDepth.get(stream);
      if (p) {
        this.partialDepth.delete(stream);
        this.fastPartial.get(p.engine)?.delete(stream);
      }
      return;
    }
    const at = stream.indexOf('@');
    const engine = this.byLid.get(stream.slice(0, at));
    const kind = stream.slice(at + 1);
    if (!engine) {
      // Binance accepts subscriptions to unknown streams silently; so do we.
      this.log.debug({ stream }, 'subscription to a stream the sim does not serve');
      return;
    }
    const kl = /^kline_(\w+)$/.exec(kind);
    if (kl && isInterval(kl[1]!)) {
      const interval = kl[1];
      this.klineStreams.set(stream, { engine, interval, lastOpen: engine.currentOpen(interval), lastPushAt: -Infinity });
      return;
    }
    const pd = /^depth(5|10|20)(@100ms|@1000ms)?$/.exec(kind);
    if (pd) {
      const p = { engine, levels: Number(pd[1]), fast: pd[2] === '@100ms' };
      this.partialDepth.set(stream, p);
      if (p.fast) {
        let m = this.fastPartial.get(engine);
        if (!m) this.fastPartial.set(engine, (m = new Map()));
        m.set(stream, p.levels);
      }
    }
  }

  onBookDiff(e: SymbolEngine, d: BookDiff): void {
    const hub = this.hub;
    const n = this.names.get(e);
    if (!n) return;
    if (hub.subscribers(n.depth100)) hub.publish(n.depth100, wire.depthDiffEvent(e.spec, d, d.time));
    if (hub.subscribers(n.depth1s) || hub.subscribers(n.depth1sAlias)) {
      let acc = this.depth1s.get(e);
      if (!acc) {
        acc = { U: d.U, u: d.u, bids: new Map(), asks: new Map() };
        this.depth1s.set(e, acc);
      }
      acc.u = d.u;
      for (const [p, q] of d.bids) acc.bids.set(p, q);
      for (const [p, q] of d.asks) acc.asks.set(p, q);
    }
    if (hub.subscribers(n.bookTicker)) hub.publish(n.bookTicker, wire.bookTickerEvent(e.spec, d.u, e.bestBid(), e.bestAsk()));
    const fast = this.fastPartial.get(e);
    if (fast) for (const [stream, levels] of fast) hub.publish(stream, JSON.stringify(wire.depthSnapshot(e.spec, e.book(levels))));
  }

  onTrades(e: SymbolEngine, from: number, to: number, eventTime: number): void {
    const hub = this.hub;
    const n = this.names.get(e);
    if (!n) return;
    const t = e.trades;
    if (hub.subscribers(n.trade)) for (let id = from; id < to; id++) hub.publish(n.trade, wire.tradeEvent(e.spec, t, id, eventTime));
    if (hub.subscribers(n.aggTrade)) for (let id = from; id < to; id++) hub.publish(n.aggTrade, wire.aggTradeEvent(e.spec, t, id, eventTime));
  }

  onTickers(t: number, tickers: readonly TickerView[]): void {
    const hub = this.hub;
    const fullArr: string[] = [];
    const miniArr: string[] = [];
    const wantFullArr = hub.subscribers('!ticker@arr') !== undefined;
    const wantMiniArr = hub.subscribers('!miniTicker@arr') !== undefined;
    for (const { engine: e, stats: s, text: x } of tickers) {
      const n = this.names.get(e);
      if (!n) continue;
      if (hub.subscribers(n.ticker) || wantFullArr) {
        const ev = wire.ticker24hEvent(e.spec, s, x, t);
        hub.publish(n.ticker, ev);
        if (wantFullArr) fullArr.push(ev);
      }
      if (hub.subscribers(n.miniTicker) || wantMiniArr) {
        const ev = wire.miniTickerEvent(e.spec, x, t);
        hub.publish(n.miniTicker, ev);
        if (wantMiniArr) miniArr.push(ev);
      }
    }
    if (wantFullArr) hub.publish('!ticker@arr', `[${fullArr.join(',')}]`);
    if (wantMiniArr) hub.publish('!miniTicker@arr', `[${miniArr.join(',')}]`);
  }

  onTick(t: number): void {
    this.pushKlines(t);
    this.pushSlowDepth(t);
  }

  private pushKlines(t: number): void {
    for (const [stream, st] of this.klineStreams) {
      const { engine, interval } = st;
      const cur = engine.currentOpen(interval);
      if (cur > st.lastOpen) {
        for (let open = st.lastOpen; open < cur; open = nextOpen(interval, open)) {
          const k = engine.kline(interval, open);
          if (k) this.hub.publish(stream, wire.klineEvent(engine.spec, interval, k, true, t));
        }
        st.lastOpen = cur;
      } else if (t - st.lastPushAt < this.klinePushIntervalMs) {
        continue;
      }
      const k = engine.kline(interval, cur);
      if (k) this.hub.publish(stream, wire.klineEvent(engine.spec, interval, k, false, t));
      st.lastPushAt = t;
    }
  }

  private pushSlowDepth(t: number): void {
    if (t - this.lastDepth1sAt < 1000) return;
    this.lastDepth1sAt = t;
    for (const [e, acc] of this.depth1s) {
      const n = this.names.get(e)!;
      const d: BookDiff = { time: t, U: acc.U, u: acc.u, bids: [...acc.bids], asks: [...acc.asks] };
      const ev = wire.depthDiffEvent(e.spec, d, t);
      this.hub.publish(n.depth1s, ev);
      this.hub.publish(n.depth1sAlias, ev);
    }
    this.depth1s.clear();
    for (const [stream, p] of this.partialDepth) {
      if (!p.fast) this.hub.publish(stream, JSON.stringify(wire.depthSnapshot(p.engine.spec, p.engine.book(p.levels))));
    }
  }
}
