/**
 * Coinbase Exchange websocket feed (`/ws-feed` under the prefix):
 * `{"type":"subscribe","product_ids":[...],"channels":["matches", {"name":"ticker","product_ids":[...]}]}`
 * is answered `{"type":"subscriptions","channels":[{name, product_ids}...]}` (everything the socket
 * holds); a bad product or channel is `{"type":"error","message":"Failed to subscribe","reason":...}`.
 * Channels: `matches` (a `last_match` on subscribe, then one `match` per trade: numeric `trade_id`,
 * `sequence`, maker/taker order ids, the maker's `side`), `ticker` (on the engine's ticker cadence),
 * `level2` / `level2_batch` (`snapshot` of the whole book, then `l2update` changes
 * `[side, price, size]`; level2 asks for credentials on Coinbase, the sim takes any), `heartbeat`
 * (every second). The server sends no ping frames and answers the client's. No candle channel.
 * Topics are `<channel>:<product id>`.
 */
import type { RawData } from 'ws';
import type { BookDiff, SymbolEngine } from '../../engine.ts';
import type { StreamChannel } from '../../faults.ts';
import type { TickerView } from '../../market-engine.ts';
import type { Conn, SocketHub, SocketProtocol } from '../../ws-hub.ts';
import * as wire from './wire.ts';

const CHANNELS = new Set(['matches', 'ticker', 'level2', 'level2_batch', 'heartbeat']);

/** Which fault channel a topic (`matches:BTC-USDT`) belongs to. */
export function channelOf(topic: string): StreamChannel | undefined {
  const channel = topic.slice(0, topic.indexOf(':'));
  if (channel === 'matches') return 'trades';
  if (channel === 'ticker') return 'ticker';
  if (channel === 'level2' || channel === 'level2_batch') return 'depth';
  return undefined;
}

interface SubscribeRequest {
  type?: unknown;
  product_ids?: unknown;
  channels?: unknown;
}

export class CoinbaseStreams implements SocketProtocol {
  private readonly hub: SocketHub;
  private readonly byId = new Map<string, SymbolEngine>();
  private readonly ids = new Map<SymbolEngine, string>();
  private lastHeartbeat = -Infinity;

  constructor(hub: SocketHub, engines: readonly SymbolEngine[]) {
    this.hub = hub;
    this.markets(engines, []);
  }

  /** Serves `added` (listed at runtime) and stops `removed` (delisted): new subscriptions to them are refused. */
  markets(added: readonly SymbolEngine[], removed: readonly SymbolEngine[]): void {
    for (const e of removed) if (this.byId.get(wire.productId(e.spec)) === e) this.byId.delete(wire.productId(e.spec));
    for (const e of added) {
      const id = wire.productId(e.spec);
      this.byId.set(id, e);
      this.ids.set(e, id);
    }
  }

  channelOf(topic: string): StreamChannel | undefined {
    return channelOf(topic);
  }

  onOpen(): void {}

  private error(conn: Conn, message: string, reason: string): void {
    this.hub.reply(conn, { type: 'error', message, reason });
  }

  /** `{"type":"subscriptions",...}`: every channel the socket holds, with its products. */
  private subscriptions(conn: Conn): string {
    const byChannel = new Map<string, string[]>();
    for (const t of conn.topics) {
      const colon = t.indexOf(':');
      const list = byChannel.get(t.slice(0, colon)) ?? [];
      list.push(t.slice(colon + 1));
      byChannel.set(t.slice(0, colon), list);
    }
    return JSON.stringify({ type: 'subscriptions', channels: [...byChannel].map(([name, product_ids]) => ({ name, product_ids })) });
  }

  onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    const text = isBinary ? '' : data.toString();
    let req: SubscribeRequest;
    try {
      req = JSON.parse(text) as SubscribeRequest;
      if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new Error('not an object');
    } catch {
      this.error(conn, 'Failed to subscribe', 'malformed JSON');
      return;
    }
    if (req.type !== 'subscribe' && req.type !== 'unsubscribe') {
      this.error(conn, 'Failed to subscribe', `${String(req.type)} is not a valid type`);
      return;
    }
    const top = Array.isArray(req.product_ids) ? (req.product_ids as unknown[]).map(String) : [];
    if (!Array.isArray(req.channels) || req.channels.length === 0) {
      this.error(conn, 'Failed to subscribe', 'No channels provided');
      return;
    }
    const wanted: Array<[string, string]> = [];
    for (const c of req.channels as unknown[]) {
      const name = typeof c === 'string' ? c : c !== null && typeof c === 'object' ? String((c as { name?: unknown }).name) : String(c);
      const own = c !== null && typeof c === 'object' && Array.isArray((c as { product_ids?: unknown }).product_ids) ? ((c as { product_ids: unknown[] }).product_ids).map(String) : top;
      if (!CHANNELS.has(name)) {
        this.error(conn, 'Failed to subscribe', `${name} is not a valid channel`);
        return;
      }
      if (own.length === 0) {
        this.error(conn, 'Failed to subscribe', `No product ids provided for channel ${name}`);
        return;
      }
      for (const id of own) {
        if (!this.byId.has(id)) {
          this.error(conn, 'Failed to subscribe', `${id} is not a valid product`);
          return;
        }
        wanted.push([name, id]);
      }
    }
    if (req.type === 'unsubscribe') {
      for (const [name, id] of wanted) this.hub.unsubscribe(conn, `${name}:${id}`);
      this.hub.reply(conn, this.subscriptions(conn));
      return;
    }
    const fresh = wanted.filter(([name, id]) => !conn.topics.has(`${name}:${id}`));
    if (!this.hub.subscribe(conn, wanted.map(([name, id]) => `${name}:${id}`))) return; // paused: dropped
    this.hub.reply(conn, this.subscriptions(conn));
    for (const [name, id] of fresh) this.sendInitial(conn, name, this.byId.get(id)!);
  }

  /** What a channel sends right after the subscriptions message: the last match, the book snapshot. */
  private sendInitial(conn: Conn, channel: string, e: SymbolEngine): void {
    if (channel === 'matches') {
      const t = e.trades;
      if (t.count > 0) this.hub.reply(conn, wire.match(e.spec, t, t.lastId, 'last_match'));
    } else if (channel === 'level2' || channel === 'level2_batch') {
      this.hub.reply(conn, wire.snapshot(e.spec, e.book(), e.generatedUntil));
    }
  }

  onBookDiff(e: SymbolEngine, d: BookDiff): void {
    const id = this.ids.get(e)!;
    const a = this.hub.subscribers(`level2:${id}`);
    const b = this.hub.subscribers(`level2_batch:${id}`);
    if (!a && !b) return;
    const msg = wire.l2update(e.spec, d.bids, d.asks, d.time);
    if (a) this.hub.publish(`level2:${id}`, msg);
    if (b) this.hub.publish(`level2_batch:${id}`, msg);
  }

  onTrades(e: SymbolEngine, from: number, to: number): void {
    const topic = `matches:${this.ids.get(e)!}`;
    if (!this.hub.subscribers(topic)) return;
    for (let t = from; t < to; t++) this.hub.publish(topic, wire.match(e.spec, e.trades, t));
  }

  onTickers(_t: number, tickers: readonly TickerView[]): void {
    for (const { engine: e, stats, text } of tickers) {
      const topic = `ticker:${this.ids.get(e)!}`;
      if (this.hub.subscribers(topic)) this.hub.publish(topic, wire.wsTicker(e.spec, stats, text, e.trades));
    }
  }

  /** Heartbeats, once a second per subscribed product. */
  onTick(t: number): void {
    if (t - this.lastHeartbeat < 1000) return;
    this.lastHeartbeat = t;
    for (const [id, e] of this.byId) {
      const topic = `heartbeat:${id}`;
      if (!this.hub.subscribers(topic)) continue;
      const last = e.trades.count > 0 ? e.trades.lastId : 0;
      this.hub.publish(topic, JSON.stringify({ type: 'heartbeat', last_trade_id: last, product_id: id, sequence: wire.matchSequence(last), time: wire.isoTime(e.generatedUntil) }));
    }
  }
}
