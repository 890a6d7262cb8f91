/**
 * Binance spot: `/api/v3/*` REST and the market-stream websocket (`/ws`, `/stream`), served at the
 * sim's root (the sim's first dialect; every existing config points there).
 */
import type { SymbolEngine } from '../../engine.ts';
import { SocketHub } from '../../ws-hub.ts';
import type { Dialect, DialectModule } from '../types.ts';
import { createRestHandler } from './rest.ts';
import { BINANCE_MAX_STREAMS, BINANCE_MESSAGES_PER_SECOND, BinanceStreams, isStreamPath } from './ws.ts';

export const binance: DialectModule = {
  name: 'binance',
  prefix: '',
  ccxtId: 'binance',
  ccxtOptions({ url, wsUrl }) {
    const ws = `${wsUrl}/stream/ws`; // keep "/stream": ccxt's isSpotUrl() looks for it
    return {
      urls: { api: { public: `${url}/api/v3`, ws: { spot: ws, margin: ws } } },
      options: { fetchMarkets: { types: ['spot'] } },
    };
  },
  build(ctx): Dialect {
    const hub = new SocketHub({ dialect: 'binance', log: ctx.log, faults: ctx.faults, maxBufferedBytes: ctx.maxBufferedBytes, pingIntervalMs: 20_000 });
    const streams = new BinanceStreams(hub, ctx.market.engines, ctx.klinePushIntervalMs, ctx.log, {
      maxStreamsPerConnection: ctx.venueLimits ? BINANCE_MAX_STREAMS : Infinity,
      messagesPerSecond: ctx.venueMessageRate ? BINANCE_MESSAGES_PER_SECOND : Infinity,
    });
    hub.use(streams);
    const engines = new Map<string, SymbolEngine>(ctx.market.engines.map((e) => [e.spec.id, e]));
    const rest = createRestHandler({
      market: ctx.market,
      engines,
      refusal: () => ctx.faults.restVerdict('binance'),
      ignoresSince: () => ctx.faults.ignoresSince('binance'),
      tickerWithoutTime: () => ctx.faults.tickerWithoutTime('binance'),
      onError: ctx.onError,
    });
    return {
      name: 'binance',
      prefix: '',
      hub,
      handleRest: (req, res, path, url) => path.startsWith('/api/') && rest(req, res, path, url),
      handleUpgrade(req, socket, head, path) {
        if (!isStreamPath(path)) return false;
        hub.handleUpgrade(req, socket, head);
        return true;
      },
      onBookDiff: (e, d) => streams.onBookDiff(e, d),
      onTrades: (e, from, to, t) => streams.onTrades(e, from, to, t),
      onTickers: (t, views) => streams.onTickers(t, views),
      onTick: (t) => streams.onTick(t),
      onMarkets(added, removed) {
        for (const e of removed) engines.delete(e.spec.id);
        for (const e of added) engines.set(e.spec.id, e);
        streams.markets(added, removed);
      },
    };
  },
};
