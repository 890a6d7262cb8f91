/**
 * One websocket client of /v1/stream.
 *
 * Protocol (JSON text frames):
 *   → {"op":"subscribe","channels":["trades","candles"],"instruments":[{"exchange":"binance","symbol":"BTC/USDT"}],"since":"2024-01-31T00:00:00Z"}
 *     channels: trades | tickers | candles | books | gaps; instruments: omitted = all (live only);
 *     since: optional, replays from the database first (instruments then required). A new
 *     subscribe replaces the previous one. Also {"op":"unsubscribe"} and {"op":"ping"}.
 *   ← {"type":"subscribed",...}, then {"type":"data","channel":"trades","replay":true|false,"data":[rows]}
 *     (rows like the REST rows), {"type":"live","replayed":N} once the replay is over and
 *     everything after comes from Kafka, {"type":"error","message":...,"field":...}, {"type":"pong"}.
 *
 * The seam (no gap, no duplicate) with `since`:
 * 1. The subscription is registered with the hub and, in the same tick, the hub's held recent
 *    records (the last api.stream.recentWindowMs of every topic) are taken: from here on every
 *    record the consumer sees is either in that snapshot or buffered for this client.
 * 2. The database is replayed (ts >= since, per instrument in primary-key order) and the key
 *    and version (received_at) of every replayed row are remembered.
 * 3. The topics' end offsets are read: a fence. Records beyond it were written to Kafka after the
 *    replay's reads, so the database could not have held them.
 * 4. Snapshot and buffer are sent in consumption order, without the records the replay already
 *    sent (same key; for candles and gaps, not newer than the replayed version) and without
 *    records older than since. Live records keep being checked the same way until the consumer
 *    has passed the fence; then the remembered keys are dropped and records pass straight through.
 * A record can only be missed if the sink lagged Kafka by more than recentWindowMs when the
 * client subscribed (it is then neither in the database nor among the held records). Order per
 * instrument holds because the sink writes each partition's records in offset order, so the
 * database holds a prefix of each instrument's sequence and the rest follows from Kafka.
 */
import type { WebSocket } from 'ws';
import { messageOf } from '../../core/errors.ts';
import { sleep } from '../../core/retry.ts';
import type { ApiConfig } from '../config.ts';
import { ApiError } from '../errors.ts';
import type { ApiDatabase } from '../plugins/database.ts';
import { exchangeParam, symbolParam } from '../schemas.ts';
import { formatTime, parseTime } from '../time.ts';
import type { ApiEvents } from '../events.ts';
import { metrics } from '../telemetry.ts';
import type { Fence, StreamHub } from './hub.ts';
import { CHANNEL_SPECS, STREAM_CHANNELS, instrumentKey, replayCountQuery, replayQuery, toStreamRecord, type StreamChannel, type StreamRecord } from './records.ts';

const EXCHANGE_RE = new RegExp(exchangeParam.pattern);
const SYMBOL_RE = new RegExp(symbolParam.pattern);
const SUBSCRIBE_FIELDS = new Set(['op', 'id', 'channels', 'instruments', 'since']);

export interface Subscription {
  readonly channels: ReadonlySet<StreamChannel>;
  /** In the order given; undefined = every instrument. */
  readonly instruments: ReadonlyArray<{ exchange: string; symbol: string }> | undefined;
  readonly since: number | undefined;
  readonly id: unknown;
}

class ProtocolError extends Error {
  readonly field?: string;

  constructor(message: string, field?: string) {
    super(message);
    this.field = field;
  }
}

/** Validates a subscribe message; the error names the field at fault. */
export function parseSubscribe(msg: Record<string, unknown>, maxInstruments: number): Subscription {
  for (const k of Object.keys(msg)) if (!SUBSCRIBE_FIELDS.has(k)) throw new ProtocolError(`${k}: unknown field (expected op, channels, instruments, since, id)`, k);
  const ch = msg.channels;
  if (!Array.isArray(ch) || ch.length === 0) throw new ProtocolError(`channels: expected a non-empty array of ${STREAM_CHANNELS.join(', ')}`, 'channels');
  const channels = new Set<StreamChannel>();
  ch.forEach((c, i) => {
    if (typeof c !== 'string' || !(STREAM_CHANNELS as readonly string[]).includes(c)) throw new ProtocolError(`channels[${i}]: unknown channel ${JSON.stringify(c)} (expected ${STREAM_CHANNELS.join(', ')})`, 'channels');
    channels.add(c as StreamChannel);
  });
  let instruments: Array<{ exchange: string; symbol: string }> | undefined;
  if (msg.instruments !== undefined) {
    if (!Array.isArray(msg.instruments) || msg.instruments.length === 0) throw new ProtocolError('instruments: expected a non-empty array of {"exchange","symbol"} (omit it for every instrument)', 'instruments');
    if (msg.instruments.length > maxInstruments) throw new ProtocolError(`instruments: at most ${maxInstruments} (api.stream.maxInstruments)`, 'instruments');
    instruments = msg.instruments.map((x: unknown, i) => {
      const o = x as { exchange?: unknown; symbol?: unknown } | null;
      if (!o || typeof o !== 'object') throw new ProtocolError(`instruments[${i}]: expected {"exchange","symbol"}`, 'instruments');
      if (typeof o.exchange !== 'string' || !EXCHANGE_RE.test(o.exchange)) throw new ProtocolError(`instruments[${i}].exchange: expected a ccxt exchange id like binance`, 'instruments');
      if (typeof o.symbol !== 'string' || o.symbol.length > 100 || !SYMBOL_RE.test(o.symbol)) throw new ProtocolError(`instruments[${i}].symbol: expected a unified symbol like BTC/USDT`, 'instruments');
      return { exchange: o.exchange, symbol: o.symbol };
    });
    const keys = new Set(instruments.map((x) => instrumentKey(x.exchange, x.symbol)));
    instruments = instruments.filter((x) => keys.delete(instrumentKey(x.exchange, x.symbol)));
  }
  let since: number | undefined;
  if (msg.since !== undefined) {
    if (typeof msg.since !== 'string') throw new ProtocolError('since: expected an ISO 8601 time with a zone, like 2024-01-31T00:00:00Z', 'since');
    try {
      since = parseTime(msg.since, 'since');
    } catch (e) {
      throw new ProtocolError(messageOf(e), 'since');
    }
    if (!instruments) throw new ProtocolError('instruments: required with since (the replay reads each instrument\'s records)', 'instruments');
  }
  return { channels, instruments, since, id: msg.id };
}

/** Bytes a subscription needs at most per instrument, and beside them (compact JSON, escapes included). */
const BYTES_PER_INSTRUMENT = 768;
const BYTES_BESIDES = 16 * 1024;

/**
 * The largest message a client may send: room for a subscription naming maxInstruments
 * instruments of the longest valid exchange id and symbol (64 and 100 characters, even
 * \u-escaped), so the payload limit never refuses a subscription the instrument limit allows.
 */
export function maxMessageBytes(config: Pick<ApiConfig['stream'], 'maxInstruments'>): number {
  return BYTES_BESIDES + config.maxInstruments * BYTES_PER_INSTRUMENT;
}

export interface SessionDeps {
  readonly hub: StreamHub | undefined;
  readonly db: ApiDatabase;
  readonly config: ApiConfig['stream'];
  readonly events: ApiEvents;
}

export class StreamSession {
  private readonly socket: WebSocket;
  private readonly deps: SessionDeps;
  private gen = 0;
  private unsubscribe: (() => void) | undefined;
  private mode: 'idle' | 'replaying' | 'live' = 'idle';
  private buffer: StreamRecord[] = [];
  private seen: Map<string, number> | null = null;
  private fence: Fence | null = null;
  private since: number | undefined;
  private closed = false;

  constructor(socket: WebSocket, deps: SessionDeps) {
    this.socket = socket;
    this.deps = deps;
    deps.events.emit('session.opened', {});
    socket.on('message', (data, isBinary) => void this.onMessage(isBinary ? null : data.toString()));
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      deps.events.emit('session.closed', {});
      this.stop();
    });
    socket.on('error', (e) => deps.events.emit('session.socketError', { error: messageOf(e) }));
    // ws closes a connection whose message passes maxPayload (1009), or that breaks the protocol
    // (1002, 1007), before it emits 'error' on the socket, when nothing can be sent any more. Its
    // receiver reports the error first: a listener ahead of ws's own queues an error message
    // naming the limit before the close frame. (`_receiver` is ws's field, there since ws 2.)
    const receiver = (socket as unknown as { _receiver?: { prependListener?(event: 'error', fn: (e: Error & { code?: string }) => void): unknown } })._receiver;
    receiver?.prependListener?.('error', (e) => {
      const limit = maxMessageBytes(deps.config);
      this.error(
        e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? `message too large: at most ${limit} bytes (room for a subscription of api.stream.maxInstruments = ${deps.config.maxInstruments} instruments); closing (1009)`
          : `closing: ${e.message}`,
      );
    });
  }

  private send(msg: unknown): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify(msg));
    if (this.socket.bufferedAmount > this.deps.config.maxBufferedBytes) {
      this.deps.events.emit('session.slow', { bufferedBytes: this.socket.bufferedAmount });
      this.socket.close(1013, 'client too slow: its backlog passed api.stream.maxBufferedBytes');
    }
  }

  /** Resolves once the frame is handed to the socket: the replay's pacing. */
  private sendAndWait(msg: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readyState !== this.socket.OPEN) return reject(new Error('socket closed'));
      this.socket.send(JSON.stringify(msg), (err) => (err ? reject(err) : resolve()));
    });
  }

  private error(message: string, field?: string, id?: unknown): void {
    this.send({ type: 'error', message, ...(field ? { field } : {}), ...(id !== undefined ? { id } : {}) });
  }

  private async onMessage(text: string | null): Promise<void> {
    let msg: Record<string, unknown>;
    try {
      if (text === null) throw new ProtocolError('expected a JSON text frame');
      const parsed: unknown = JSON.parse(text);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ProtocolError('expected a JSON object like {"op":"subscribe",...}');
      msg = parsed as Record<string, unknown>;
    } catch (e) {
      return this.error(e instanceof ProtocolError ? e.message : `not JSON: ${messageOf(e)}`);
    }
    switch (msg.op) {
      case 'ping':
        return this.send({ type: 'pong', ...(msg.id !== undefined ? { id: msg.id } : {}) });
      case 'unsubscribe':
        this.stop();
        return this.send({ type: 'unsubscribed', ...(msg.id !== undefined ? { id: msg.id } : {}) });
      case 'subscribe': {
        let sub: Subscription;
        try {
          sub = parseSubscribe(msg, this.deps.config.maxInstruments);
        } catch (e) {
          return this.error(messageOf(e), e instanceof ProtocolError ? e.field : undefined, msg.id);
        }
        try {
          await this.subscribe(sub);
        } catch (e) {
          if (this.closed) return;
          this.deps.events.emit('session.failed', { error: messageOf(e) });
          this.stop();
          this.error(e instanceof ApiError ? e.message : `subscription failed: ${messageOf(e)}`, undefined, sub.id);
        }
        return;
      }
      default:
        return this.error(`op: expected subscribe, unsubscribe or ping, got ${JSON.stringify(msg.op)}`, 'op', msg.id);
    }
  }

  private stop(): void {
    this.gen++;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.mode = 'idle';
    this.buffer = [];
    this.seen = null;
    this.fence = null;
  }

  private async subscribe(sub: Subscription): Promise<void> {
    this.stop();
    const gen = this.gen;
    const hub = this.deps.hub;
    if (!hub) throw new ApiError(503, 'the live stream is not available: Kafka is not configured or api.stream.enabled is false');
    if (hub.state !== 'live') await Promise.race([hub.ready, sleep(15_000)]);
    if (gen !== this.gen || this.closed) return;
    if (hub.state !== 'live') throw new ApiError(503, 'the live stream is not connected to Kafka yet; retry shortly');

    const instruments = sub.instruments ? new Set(sub.instruments.map((x) => instrumentKey(x.exchange, x.symbol))) : null;
    this.since = sub.since;
    this.send({ type: 'subscribed', channels: [...sub.channels], instruments: sub.instruments ?? null, since: sub.since === undefined ? null : formatTime(sub.since), ...(sub.id !== undefined ? { id: sub.id } : {}) });

    if (sub.since === undefined || !sub.instruments) {
      this.mode = 'live';
      this.unsubscribe = hub.subscribe({ channels: sub.channels, instruments, deliver: (r) => this.forward(r) }).unsubscribe;
      this.send({ type: 'live', replayed: 0 });
      return;
    }

    const since = sub.since;
    const cap = this.deps.config.replayMaxRows;
    let total = 0;
    for (const channel of sub.channels) {
      for (const inst of sub.instruments) {
        const q = replayCountQuery(channel, inst.exchange, inst.symbol, since, cap);
        const [row] = await this.deps.db.query<{ n: number }>('stream_replay_count', q.text, q.values);
        total += row?.n ?? 0;
        if (total > cap) throw new ApiError(400, `since: the replay would exceed ${cap} rows (api.stream.replayMaxRows); read older history from the REST routes and subscribe with a later since`);
      }
    }
    if (gen !== this.gen) return;

    this.mode = 'replaying';
    this.seen = new Map();
    const held = hub.subscribe({
      channels: sub.channels,
      instruments,
      deliver: (r) => {
        if (this.mode === 'replaying') {
          this.buffer.push(...r);
          if (this.buffer.length > this.deps.config.replayMaxRows) {
            this.stop();
            this.error('the live records arriving during the replay passed api.stream.replayMaxRows; subscribe again');
          }
        } else this.forward(r);
      },
    });
    this.unsubscribe = held.unsubscribe;

    let replayed = 0;
    const pageRows = this.deps.config.replayPageRows;
    for (const channel of sub.channels) {
      for (const inst of sub.instruments) {
        let after: Record<string, unknown> | undefined;
        for (;;) {
          const q = replayQuery(channel, inst.exchange, inst.symbol, since, after, pageRows);
          const rows = await this.deps.db.query<Record<string, unknown>>(`stream_replay_${channel}`, q.text, q.values);
          if (gen !== this.gen) return;
          if (rows.length === 0) break;
          const recs = rows.map((r) => toStreamRecord(channel, r));
          for (const r of recs) this.seen.set(r.key, r.version);
          await this.sendAndWait({ type: 'data', channel, replay: true, data: recs.map((r) => r.row) });
          if (gen !== this.gen) return;
          metrics.sent.inc({ channel, phase: 'replay' }, recs.length);
          replayed += recs.length;
          if (rows.length < pageRows) break;
          after = rows[rows.length - 1];
        }
      }
    }
    this.fence = await hub.fence(sub.channels);
    if (gen !== this.gen) return;
    const pending = [...held.recent, ...this.buffer];
    this.buffer = [];
    this.mode = 'live';
    this.forward(pending);
    this.send({ type: 'live', replayed });
  }

  /** Live records out, without what the replay sent; one message per channel. */
  private forward(records: readonly StreamRecord[]): void {
    const byChannel = new Map<StreamChannel, unknown[]>();
    const seen = this.seen;
    for (const r of records) {
      if (this.since !== undefined && r.ts < this.since) continue;
      if (seen) {
        const v = seen.get(r.key);
        if (v !== undefined && (!CHANNEL_SPECS[r.channel].versioned || r.version <= v)) continue;
      }
      let list = byChannel.get(r.channel);
      if (!list) byChannel.set(r.channel, (list = []));
      list.push(r.row);
    }
    if (seen && this.fence && this.deps.hub?.passed(this.fence)) {
      this.seen = null;
      this.fence = null;
    }
    for (const [channel, data] of byChannel) {
      metrics.sent.inc({ channel, phase: 'live' }, data.length);
      this.send({ type: 'data', channel, replay: false, data });
    }
  }
}
