/**
 * OKX v5 public websocket: `/ws/v5/public` (trades, tickers, books, books5, bbo-tbt) and
 * `/ws/v5/business` (candle<bar>). `{"op":"subscribe","args":[{channel, instId}]}` is acked per
 * argument `{"event":"subscribe","arg":...,"connId"}`; a wrong channel, instrument or URL is
 * `{"event":"error","code":"60018",...}`, a malformed request code 60012; the text `ping` is
 * answered `pong` (clients ping; the server sends no ping frames). Pushes are
 * `{"arg":{channel, instId},"data":[...]}`; `books` starts with `action: snapshot` and goes on
 * with `update`s chained by `prevSeqId` = the previous `seqId`, each with the top-25 checksum.
 * Topics are `<channel>:<instId>`.
 */
import type { RawData } from 'ws';
import type { BookDiff, SymbolEngine } from '../../engine.ts';
import type { StreamChannel } from '../../faults.ts';
import type { TickerView } from '../../market-engine.ts';
import type { Conn, SocketHub, SocketProtocol } from '../../ws-hub.ts';
import * as wire from './wire.ts';

type Access = 'public' | 'business';

const PUBLIC_CHANNELS = new Set(['trades', 'tickers', 'books', 'books5', 'bbo-tbt']);

/** Which fault channel a topic (`trades:BTC-USDT`) belongs to. */
export function channelOf(topic: string): StreamChannel | undefined {
  const channel = topic.slice(0, topic.indexOf(':'));
  if (channel === 'trades') return 'trades';
  if (channel === 'tickers') return 'ticker';
  if (channel.startsWith('candle')) return 'kline';
  if (channel.startsWith('books') || channel === 'bbo-tbt') return 'depth';
  return undefined;
}

/** The socket paths OKX's public servers answer (under the dialect prefix). */
export function accessOf(path: string): Access | undefined {
  if (path === '/ws/v5/public') return 'public';
  if (path === '/ws/v5/business') return 'business';
  return undefined;
}

interface CandleStream {
  readonly engine: SymbolEngine;
  readonly bar: wire.Bar;
  readonly arg: string;
  lastOpen: number;
  lastPushAt: number;
}

interface Arg {
  channel: string;
  instId: string;
}

const argText = (channel: string, id: string) => `{"channel":"${channel}","instId":"${id}"}`;

export class OkxStreams implements SocketProtocol {
  private readonly hub: SocketHub;
  private readonly klinePushIntervalMs: number;
  private readonly access = new WeakMap<Conn, Access>();
  private readonly byInstId = new Map<string, SymbolEngine>();
  private readonly ids = new Map<SymbolEngine, string>();
  private readonly candles = new Map<string, CandleStream>();

  constructor(hub: SocketHub, engines: readonly SymbolEngine[], klinePushIntervalMs: number) {
    this.hub = hub;
    this.klinePushIntervalMs = klinePushIntervalMs;
    this.markets(engines, []);
  }

  /** Serves `added` (listed at runtime) and stops `removed` (delisted): their channels go quiet, new subscriptions are refused. */
  markets(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void {
    const gone = new Set(removed);
    for (const e of removed) if (this.byInstId.get(wire.instId(e.spec)) === e) this.byInstId.delete(wire.instId(e.spec));
    for (const [k, st] of this.candles) if (gone.has(st.engine)) this.candles.delete(k);
    for (const e of added) {
      const id = wire.instId(e.spec);
      this.byInstId.set(id, e);
      this.ids.set(e, id);
    }
  }

  channelOf(topic: string): StreamChannel | undefined {
    return channelOf(topic);
  }

  private connId(conn: Conn): string {
    return conn.id.toString(16).padStart(8, '0');
  }

  onOpen(conn: Conn): void {
    const path = conn.url.pathname;
    this.access.set(conn, path.endsWith('/business') ? 'business' : 'public');
  }

  private error(conn: Conn, code: string, msg: string): void {
    this.hub.reply(conn, { event: 'error', code, msg, connId: this.connId(conn) });
  }

  /** Whether `channel` is served on this socket's URL. */
  private servesChannel(access: Access, channel: string): boolean {
    if (access === 'public') return PUBLIC_CHANNELS.has(channel);
    return channel.startsWith('candle') && wire.BARS.has(channel.slice('candle'.length));
  }

  onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    const text = isBinary ? '' : data.toString();
    if (text === 'ping') {
      this.hub.reply(conn, 'pong');
      return;
    }
    let req: { op?: unknown; args?: unknown };
    try {
      req = JSON.parse(text) as typeof req;
      if (req === null || typeof req !== 'object' || !Array.isArray(req.args)) throw new Error('bad request');
    } catch {
      this.error(conn, '60012', `Invalid request: ${text}`);
      return;
    }
    if (req.op !== 'subscribe' && req.op !== 'unsubscribe') {
      this.error(conn, '60012', `Invalid request: ${text}`);
      return;
    }
    const access = this.access.get(conn) ?? 'public';
    for (const raw of req.args as unknown[]) {
      const a = raw as Partial<Arg> | null;
      if (a === null || typeof a !== 'object' || typeof a.channel !== 'string' || typeof a.instId !== 'string') {
        this.error(conn, '60012', `Invalid request: ${text}`);
        continue;
      }
      const arg: Arg = { channel: a.channel, instId: a.instId };
      const engine = this.byInstId.get(arg.instId);
      if (!engine || !this.servesChannel(access, arg.channel) || (req.op === 'subscribe' && this.hub.refusesSubscription(engine.spec.symbol))) {
        this.error(conn, '60018', `Wrong URL or channel:${arg.channel},instId:${arg.instId} doesn't exist. Please use the correct URL, channel and parameters referring to API document.`);
        continue;
      }
      const topic = `${arg.channel}:${arg.instId}`;
      if (req.op === 'unsubscribe') {
        this.hub.unsubscribe(conn, topic);
        this.hub.reply(conn, `{"event":"unsubscribe","arg":${argText(arg.channel, arg.instId)},"connId":"${this.connId(conn)}"}`);
        continue;
      }
      if (!this.hub.subscribe(conn, [topic])) return; // paused: the socket was dropped
      this.hub.reply(conn, `{"event":"subscribe","arg":${argText(arg.channel, arg.instId)},"connId":"${this.connId(conn)}"}`);
      this.sendInitial(conn, arg, engine);
    }
  }

  /** What a book channel sends right after the ack: the full snapshot (`books`) or the current top. */
  private sendInitial(conn: Conn, arg: Arg, e: SymbolEngine): void {
    const ts = Math.floor(e.generatedUntil);
    if (arg.channel === 'books') {
      const b = e.book(400);
      const d = { ...wire.book(e.spec, b, ts), checksum: wire.checksum(e.spec, b), prevSeqId: -1, seqId: b.lastUpdateId };
      this.hub.reply(conn, `{"arg":${argText(arg.channel, arg.instId)},"action":"snapshot","data":[${JSON.stringify(d)}]}`);
    } else if (arg.channel === 'books5' || arg.channel === 'bbo-tbt') {
      this.hub.reply(conn, this.top(e, arg.channel, ts));
    }
  }

  private top(e: SymbolEngine, channel: 'books5' | 'bbo-tbt', ts: number): string {
    const b = e.book(channel === 'books5' ? 5 : 1);
    const d = { ...wire.book(e.spec, b, ts), instId: this.ids.get(e)!, seqId: b.lastUpdateId };
    return `{"arg":${argText(channel, this.ids.get(e)!)},"data":[${JSON.stringify(d)}]}`;
  }

  onTopicActive(topic: string, active: boolean): void {
    const colon = topic.indexOf(':');
    const channel = topic.slice(0, colon);
    if (!channel.startsWith('candle')) return;
    if (!active) {
      this.candles.delete(topic);
      return;
    }
    const engine = this.byInstId.get(topic.slice(colon + 1));
    const bar = wire.BARS.get(channel.slice('candle'.length));
    if (!engine || !bar) return;
    this.candles.set(topic, { engine, bar, arg: argText(channel, this.ids.get(engine)!), lastOpen: wire.barOpen(bar, engine.generatedUntil), lastPushAt: -Infinity });
  }

  onBookDiff(e: SymbolEngine, d: BookDiff): void {
    const hub = this.hub;
    const id = this.ids.get(e)!;
    const books = `books:${id}`;
    if (hub.subscribers(books)) {
      const top = e.book(25);
      const data = {
        asks: wire.levels(e.spec, d.asks),
        bids: wire.levels(e.spec, d.bids),
        ts: String(d.time),
        checksum: wire.checksum(e.spec, top),
        prevSeqId: d.U - 1,
        seqId: d.u,
      };
      hub.publish(books, `{"arg":${argText('books', id)},"action":"update","data":[${JSON.stringify(data)}]}`);
    }
    if (hub.subscribers(`books5:${id}`)) hub.publish(`books5:${id}`, this.top(e, 'books5', d.time));
    if (hub.subscribers(`bbo-tbt:${id}`)) hub.publish(`bbo-tbt:${id}`, this.top(e, 'bbo-tbt', d.time));
  }

  onTrades(e: SymbolEngine, from: number, to: number): void {
    const id = this.ids.get(e)!;
    const topic = `trades:${id}`;
    if (!this.hub.subscribers(topic)) return;
    const head = `{"arg":${argText('trades', id)},"data":[`;
    for (let t = from; t < to; t++) this.hub.publish(topic, `${head}${wire.trade(e.spec, e.trades, t)}]}`);
  }

  onTickers(_t: number, tickers: readonly TickerView[]): void {
    for (const { engine: e, stats, text } of tickers) {
      const id = this.ids.get(e)!;
      const topic = `tickers:${id}`;
      if (this.hub.subscribers(topic)) this.hub.publish(topic, `{"arg":${argText('tickers', id)},"data":[${wire.ticker(e.spec, stats, text)}]}`);
    }
  }

  /** Candles: every closed bucket once with confirm "1", the forming one every `klinePushIntervalMs`. */
  onTick(t: number): void {
    for (const [topic, st] of this.candles) {
      const { engine, bar } = st;
      const cur = wire.barOpen(bar, engine.generatedUntil);
      if (cur > st.lastOpen) {
        for (let open = st.lastOpen; open < cur; open = wire.barNext(bar, open)) {
          const k = wire.barKline(engine, bar, open);
          if (k) this.hub.publish(topic, `{"arg":${st.arg},"data":[${JSON.stringify(wire.candleRow(engine.spec, k, true))}]}`);
        }
        st.lastOpen = cur;
      } else if (t - st.lastPushAt < this.klinePushIntervalMs) {
        continue;
      }
      const k = wire.barKline(engine, bar, cur);
      if (k) this.hub.publish(topic, `{"arg":${st.arg},"data":[${JSON.stringify(wire.candleRow(engine.spec, k, false))}]}`);
      st.lastPushAt = t;
    }
  }
}

