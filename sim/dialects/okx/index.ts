/**
 * OKX v5 spot under `/okx`: REST `/okx/api/v5/*` and the public websockets
 * `/okx/ws/v5/public` and `/okx/ws/v5/business`, for the real `ccxt.okx` / `ccxt.pro.okx`
 * (ccxt builds REST URLs as `urls.api.rest + '/api/v5/...'` and websocket URLs as
 * `urls.api.ws + '/public'` or `'/business'`).
 */
import type { SymbolEngine } from '../../engine.ts';
import { SocketHub } from '../../ws-hub.ts';
import type { Dialect, DialectModule } from '../types.ts';
import { createRestHandler } from './rest.ts';
import { instId } from './wire.ts';
import { OkxStreams, accessOf } from './ws.ts';

const PREFIX = '/okx';

export const okx: DialectModule = {
  name: 'okx',
  prefix: PREFIX,
  ccxtId: 'okx',
  ccxtOptions({ url, wsUrl }) {
    return {
      urls: { api: { rest: `${url}${PREFIX}`, ws: `${wsUrl}${PREFIX}/ws/v5` } },
      // The sim lists spot only (the other types answer empty lists): skip three requests.
      options: { fetchMarkets: { types: ['spot'] } },
    };
  },
  build(ctx): Dialect {
    // OKX's servers send no ping frames: clients send the text `ping` (answered `pong`).
    const hub = new SocketHub({ dialect: 'okx', log: ctx.log, faults: ctx.faults, maxBufferedBytes: ctx.maxBufferedBytes, pingIntervalMs: 0 });
    const streams = new OkxStreams(hub, ctx.market.engines, ctx.klinePushIntervalMs);
    hub.use(streams);
    const engines = new Map<string, SymbolEngine>(ctx.market.engines.map((e) => [instId(e.spec), e]));
    const rest = createRestHandler({
      market: ctx.market,
      engines,
      refusal: () => ctx.faults.restVerdict('okx'),
      onError: ctx.onError,
    });
    return {
      name: 'okx',
      prefix: PREFIX,
      hub,
      handleRest: (req, res, path, url) => path.startsWith('/api/v5/') && rest(req, res, path, url),
      handleUpgrade(req, socket, head, path) {
        if (accessOf(path) === undefined) return false;
        hub.handleUpgrade(req, socket, head);
        return true;
      },
      onBookDiff: (e, d) => streams.onBookDiff(e, d),
      onTrades: (e, from, to) => streams.onTrades(e, from, to),
      onTickers: (t, views) => streams.onTickers(t, views),
      onTick: (t) => streams.onTick(t),
      onMarkets(added, removed) {
        for (const e of removed) engines.delete(instId(e.spec));
        for (const e of added) engines.set(instId(e.spec), e);
        streams.markets(added, removed);
      },
    };
  },
};
