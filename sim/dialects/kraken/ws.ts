/**
 * Kraken's websocket API v2 (`/v2`), what ccxt.pro.kraken 4.5 speaks for public data (its v1
 * `ws.kraken.com` is used only by private calls): `{"method":"subscribe","params":{"channel",
 * "symbol":[...]},"req_id"}` acknowledged per symbol, a `status` message on connect, `heartbeat`
 * every second, `{"method":"ping"}` → `pong`, and the channels `trade` (snapshot of the last 50,
 * then batches per tick), `ticker` (on the engine's ticker cadence; no exchange time, as on
 * Kraken), `ohlc` (the forming candle on the kline cadence, each finished one once more with its
 * final values) and `book` (snapshot, then updates keeping the top `depth`, each with Kraken's
 * CRC32 checksum). Topics: `trade|BTC/USDT`, `ticker|…`, `ohlc|1|…`, `book|10|…`.
 */
import type { RawData } from 'ws';
import { type Interval, nextOpen, prevOpen } from '../../candles.ts';
import type { SymbolEngine } from '../../engine.ts';
import type { StreamChannel } from '../../faults.ts';
import type { TickerView } from '../../market-engine.ts';
import type { Conn, SocketHub, SocketProtocol } from '../../ws-hub.ts';
import { type KrakenPair, bookChecksum, isoMicros, isoNanos, num, price, qty, wsTrade } from './wire.ts';

const OHLC_INTERVALS: Record<number, Interval> = { 1: '1m', 5: '5m', 15: '15m', 30: '30m', 60: '1h', 240: '4h', 1440: '1d', 10080: '1w' };
const BOOK_DEPTHS = [10, 25, 100, 500, 1000];
const TRADE_SNAPSHOT = 50;
const OHLC_SNAPSHOT = 10;
const HEARTBEAT_MS = 1000;

type Levels = ReadonlyArray<readonly [number, number]>;

interface OhlcState {
  readonly pair: KrakenPair;
  readonly engine: SymbolEngine;
  readonly interval: Interval;
  readonly minutes: number;
  lastOpen: number;
  lastPushAt: number;
}

interface BookState {
  readonly pair: KrakenPair;
  readonly engine: SymbolEngine;
  readonly depth: number;
  bids: Map<number, number>;
  asks: Map<number, number>;
}

export function channelOf(topic: string): StreamChannel | undefined {
  const ch = topic.slice(0, topic.indexOf('|'));
  return ch === 'trade' ? 'trades' : ch === 'ticker' ? 'ticker' : ch === 'ohlc' ? 'kline' : ch === 'book' ? 'depth' : undefined;
}

export class KrakenStreams implements SocketProtocol {
  private readonly hub: SocketHub;
  private readonly pairs: ReadonlyMap<SymbolEngine, KrakenPair>;
  private readonly klinePushIntervalMs: number;
  private readonly now: () => number;
  private readonly takeTicker: (e: SymbolEngine) => TickerView;
  private readonly bySymbol = new Map<string, [SymbolEngine, KrakenPair]>();
  private readonly ohlc = new Map<string, OhlcState>();
  private readonly books = new Map<string, BookState>();
  private lastHeartbeat = 0;
  private connectionId = 1_000_000_000_000_000;

  constructor(
    hub: SocketHub,
    pairs: ReadonlyMap<SymbolEngine, KrakenPair>,
    klinePushIntervalMs: number,
    now: () => number,
    takeTicker: (e: SymbolEngine) => TickerView,
  ) {
    this.hub = hub;
    this.pairs = pairs;
    this.klinePushIntervalMs = klinePushIntervalMs;
    this.now = now;
    this.takeTicker = takeTicker;
    for (const [e, p] of pairs) this.bySymbol.set(p.wsSymbol, [e, p]);
  }

  /** Follows the pairs map after a runtime listing/delisting (the caller changed `pairs`): delisted pairs go quiet. */
  markets(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void {
    const gone = new Set(removed);
    for (const [sym, [e]] of this.bySymbol) if (gone.has(e)) this.bySymbol.delete(sym);
    for (const [k, st] of this.ohlc) if (gone.has(st.engine)) this.ohlc.delete(k);
    for (const [k, st] of this.books) if (gone.has(st.engine)) this.books.delete(k);
    for (const e of added) {
      const p = this.pairs.get(e);
      if (p) this.bySymbol.set(p.wsSymbol, [e, p]);
    }
  }

  channelOf(topic: string): StreamChannel | undefined {
    return channelOf(topic);
  }

  onOpen(conn: Conn): void {
    this.hub.reply(conn, { channel: 'status', data: [{ api_version: 'v2', connection_id: this.connectionId + conn.id, system: 'online', version: '2.0.10' }], type: 'update' });
  }

  onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    const timeIn = isoMicros(Date.now());
    let req: { method?: unknown; params?: unknown; req_id?: unknown };
    try {
      if (isBinary) throw new Error('binary');
      req = JSON.parse(data.toString()) as typeof req;
      if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new Error('not an object');
    } catch {
      this.hub.reply(conn, { error: 'Malformed request', success: false, time_in: timeIn, time_out: isoMicros(Date.now()) });
      return;
    }
    const reqId = typeof req.req_id === 'number' ? { req_id: req.req_id } : {};
    const fail = (error: string, extra: Record<string, unknown> = {}) =>
      this.hub.reply(conn, { error, method: req.method, ...reqId, success: false, ...extra, time_in: timeIn, time_out: isoMicros(Date.now()) });
    if (req.method === 'ping') {
      this.hub.reply(conn, { method: 'pong', ...reqId, time_in: timeIn, time_out: isoMicros(Date.now()) });
      return;
    }
    if (req.method !== 'subscribe' && req.method !== 'unsubscribe') {
      fail(`Method not found`);
      return;
    }
    const params = (req.params ?? {}) as Record<string, unknown>;
    const channel = params.channel;
    if (channel !== 'trade' && channel !== 'ticker' && channel !== 'ohlc' && channel !== 'book') {
      fail('Subscription name invalid');
      return;
    }
    if (!Array.isArray(params.symbol)) {
      fail('Pair field must be an array');
      return;
    }
    const result: Record<string, unknown> = { channel };
    let topicOf: (sym: string) => string;
    if (channel === 'ohlc') {
      const minutes = params.interval;
      if (typeof minutes !== 'number' || !OHLC_INTERVALS[minutes]) {
        fail(minutes === undefined ? 'Subscription ohlc requires interval' : 'Subscription ohlc interval not supported');
        return;
      }
      result.interval = minutes;
      topicOf = (sym) => `ohlc|${minutes}|${sym}`;
    } else if (channel === 'book') {
      const depth = params.depth ?? 10;
      if (typeof depth !== 'number' || !BOOK_DEPTHS.includes(depth)) {
        fail('Subscription depth not supported');
        return;
      }
      result.depth = depth;
      topicOf = (sym) => `book|${depth}|${sym}`;
    } else {
      if (channel === 'ticker') result.event_trigger = params.event_trigger ?? 'trades';
      topicOf = (sym) => `${channel}|${sym}`;
    }
    const snapshot = params.snapshot !== false;
    result.snapshot = snapshot;
    for (const sym of params.symbol) {
      const hit = typeof sym === 'string' ? this.bySymbol.get(sym) : undefined;
      if (!hit) {
        fail(`Currency pair not supported ${String(sym)}`, { symbol: sym });
        continue;
      }
      const topic = topicOf(sym as string);
      if (req.method === 'unsubscribe') {
        this.hub.unsubscribe(conn, topic);
        this.hub.reply(conn, { method: 'unsubscribe', ...reqId, result: { ...result, symbol: sym }, success: true, time_in: timeIn, time_out: isoMicros(Date.now()) });
        continue;
      }
      if (conn.topics.has(topic)) {
        fail('Already subscribed', { symbol: sym });
        continue;
      }
      if (!this.hub.subscribe(conn, [topic])) return;
      this.hub.reply(conn, { method: 'subscribe', ...reqId, result: { ...result, symbol: sym }, success: true, time_in: timeIn, time_out: isoMicros(Date.now()) });
      if (snapshot) this.sendSnapshot(conn, topic, hit[0], hit[1]);
    }
  }

  private sendSnapshot(conn: Conn, topic: string, e: SymbolEngine, p: KrakenPair): void {
    const kind = topic.slice(0, topic.indexOf('|'));
    if (kind === 'trade') {
      const t = e.trades;
      const rows: string[] = [];
      for (let id = Math.max(t.firstId, t.nextId - TRADE_SNAPSHOT); id < t.nextId; id++) rows.push(wsTrade(p, t, id));
      this.hub.reply(conn, `{"channel":"trade","type":"snapshot","data":[${rows.join(',')}]}`);
    } else if (kind === 'ticker') {
      // Recorded in `emitted.tickers` as 'ws': a client stores it like any pushed one.
      const s = this.takeTicker(e).stats;
      this.hub.reply(conn, `{"channel":"ticker","type":"snapshot","data":[${this.tickerData(p, e, s)}]}`);
    } else if (kind === 'ohlc') {
      const st = this.ohlc.get(topic)!;
      const rows: string[] = [];
      let open = st.lastOpen;
      for (let i = 1; i < OHLC_SNAPSHOT && open > e.firstOpen(st.interval); i++) open = prevOpen(st.interval, open);
      for (; open <= st.lastOpen; open = nextOpen(st.interval, open)) {
        const row = this.ohlcData(st, open);
        if (row) rows.push(row);
      }
      this.hub.reply(conn, `{"channel":"ohlc","type":"snapshot","timestamp":"${isoMicros(this.now())}","data":[${rows.join(',')}]}`);
    } else if (kind === 'book') {
      const st = this.books.get(topic)!;
      this.hub.reply(conn, `{"channel":"book","type":"snapshot","data":[${this.bookData(st, sorted(st.bids, -1), sorted(st.asks, 1), undefined)}]}`);
    }
  }

  onTopicActive(topic: string, active: boolean): void {
    if (!active) {
      this.ohlc.delete(topic);
      this.books.delete(topic);
      return;
    }
    const parts = topic.split('|');
    const hit = this.bySymbol.get(parts.at(-1)!);
    if (!hit) return;
    const [engine, pair] = hit;
    if (parts[0] === 'ohlc') {
      const minutes = Number(parts[1]);
      const interval = OHLC_INTERVALS[minutes]!;
      this.ohlc.set(topic, { pair, engine, interval, minutes, lastOpen: engine.currentOpen(interval), lastPushAt: -Infinity });
    } else if (parts[0] === 'book') {
      const depth = Number(parts[1]);
      const b = engine.book(depth);
      this.books.set(topic, { pair, engine, depth, bids: new Map(b.bids), asks: new Map(b.asks) });
    }
  }

  onTrades(e: SymbolEngine, from: number, to: number): void {
    const p = this.pairs.get(e)!;
    const topic = `trade|${p.wsSymbol}`;
    if (!this.hub.subscribers(topic)) return;
    const t = e.trades;
    // Kraken batches the trades of one match cycle in one message; ours are one tick's.
    const rows: string[] = [];
    for (let id = from; id < to; id++) rows.push(wsTrade(p, t, id));
    this.hub.publish(topic, `{"channel":"trade","type":"update","data":[${rows.join(',')}]}`);
  }

  onTickers(_t: number, tickers: readonly TickerView[]): void {
    for (const { engine: e, stats: s } of tickers) {
      const p = this.pairs.get(e)!;
      const topic = `ticker|${p.wsSymbol}`;
      if (this.hub.subscribers(topic)) this.hub.publish(topic, `{"channel":"ticker","type":"update","data":[${this.tickerData(p, e, s)}]}`);
    }
  }

  private tickerData(p: KrakenPair, e: SymbolEngine, s: ReturnType<SymbolEngine['stats24h']>): string {
    const sp = e.spec;
    const vwap = s.volume > 0 ? (s.quoteVolume / (s.volume * sp.step)).toFixed(sp.tickDecimals) : price(sp, s.last);
    const pct = s.open > 0 ? (((s.last - s.open) / s.open) * 100).toFixed(2) : '0';
    return `{"symbol":"${p.wsSymbol}","bid":${num(price(sp, s.bid))},"bid_qty":${num(qty(sp, s.bidQty))},"ask":${num(price(sp, s.ask))},"ask_qty":${num(qty(sp, s.askQty))},"last":${num(price(sp, s.last))},"volume":${num(qty(sp, s.volume))},"vwap":${num(vwap)},"low":${num(price(sp, s.low))},"high":${num(price(sp, s.high))},"change":${num(price(sp, s.last - s.open))},"change_pct":${num(pct)}}`;
  }

  private ohlcData(st: OhlcState, open: number): string | undefined {
    const k = st.engine.kline(st.interval, open);
    if (!k) return undefined;
    const sp = st.engine.spec;
    const vwap = k.volume > 0 ? (k.quoteVolume / (k.volume * sp.step)).toFixed(sp.tickDecimals) : price(sp, k.close);
    return `{"symbol":"${st.pair.wsSymbol}","open":${num(price(sp, k.open))},"high":${num(price(sp, k.high))},"low":${num(price(sp, k.low))},"close":${num(price(sp, k.close))},"trades":${k.trades},"volume":${num(qty(sp, k.volume))},"vwap":${num(vwap)},"interval_begin":"${isoNanos(open)}","interval":${st.minutes},"timestamp":"${isoMicros(nextOpen(st.interval, open))}"}`;
  }

  private bookData(st: BookState, bids: Levels, asks: Levels, timestamp: number | undefined, full?: { bids: Levels; asks: Levels }): string {
    const sp = st.engine.spec;
    const lv = (side: Levels) => side.map(([p, q]) => `{"price":${num(price(sp, p))},"qty":${num(qty(sp, q))}}`).join(',');
    const c = full ? bookChecksum(sp, full.bids, full.asks) : bookChecksum(sp, bids, asks);
    const ts = timestamp === undefined ? '' : `,"timestamp":"${isoMicros(timestamp)}"`;
    return `{"symbol":"${st.pair.wsSymbol}","bids":[${lv(bids)}],"asks":[${lv(asks)}],"checksum":${c}${ts}}`;
  }

  onTick(t: number): void {
    this.pushOhlc(t);
    this.pushBooks(t);
    if (Date.now() - this.lastHeartbeat >= HEARTBEAT_MS) {
      this.lastHeartbeat = Date.now();
      for (const c of this.hub.conns) this.hub.send(c, '{"channel":"heartbeat"}');
    }
  }

  private pushOhlc(t: number): void {
    for (const [topic, st] of this.ohlc) {
      const cur = st.engine.currentOpen(st.interval);
      const out: string[] = [];
      if (cur > st.lastOpen) {
        // The finished bucket(s) once more with their final values, then the new one.
        for (let open = st.lastOpen; open < cur; open = nextOpen(st.interval, open)) {
          const row = this.ohlcData(st, open);
          if (row) out.push(row);
        }
        st.lastOpen = cur;
      } else if (t - st.lastPushAt < this.klinePushIntervalMs) {
        continue;
      }
      const row = this.ohlcData(st, cur);
      if (row) out.push(row);
      st.lastPushAt = t;
      for (const r of out) this.hub.publish(topic, `{"channel":"ohlc","type":"update","timestamp":"${isoMicros(t)}","data":[${r}]}`);
    }
  }

  /** Sends what changed in each subscribed top-`depth` book: new or changed levels, and qty 0 for levels that left it. */
  private pushBooks(t: number): void {
    for (const [topic, st] of this.books) {
      const b = st.engine.book(st.depth);
      const nb = new Map(b.bids);
      const na = new Map(b.asks);
      const diff = (old: Map<number, number>, now: Map<number, number>): Array<[number, number]> => {
        const out: Array<[number, number]> = [];
        for (const [p] of old) if (!now.has(p)) out.push([p, 0]);
        for (const [p, q] of now) if (old.get(p) !== q) out.push([p, q]);
        return out;
      };
      const db = diff(st.bids, nb).sort((x, y) => y[0] - x[0]);
      const da = diff(st.asks, na).sort((x, y) => x[0] - y[0]);
      st.bids = nb;
      st.asks = na;
      if (db.length === 0 && da.length === 0) continue;
      this.hub.publish(topic, `{"channel":"book","type":"update","data":[${this.bookData(st, db, da, t, { bids: b.bids, asks: b.asks })}]}`);
    }
  }
}

function sorted(side: Map<number, number>, dir: 1 | -1): Array<[number, number]> {
  return [...side].sort((a, b) => dir * (a[0] - b[0]));
}
