/**
 * Bybit v5 (`ccxt.bybit` / `ccxt.pro.bybit`), served under `/bybit`: spot and a linear perpetual
 * (`BTC/USDT:USDT`) for every engine symbol, both printing the engine's trades. REST under
 * `/bybit/v5/market/*`, websockets at `/bybit/v5/public/spot` and `/bybit/v5/public/linear`.
 */
import type { SymbolEngine } from '../../engine.ts';
import { SocketHub } from '../../ws-hub.ts';
import type { Dialect, DialectModule } from '../types.ts';
import { createRestHandler } from './rest.ts';
import { BybitStreams, WS_PATHS } from './ws.ts';

const PREFIX = '/bybit';

export const bybit: DialectModule = {
  name: 'bybit',
  prefix: PREFIX,
  ccxtId: 'bybit',
  ccxtOptions({ url, wsUrl }) {
    const rest = `${url}${PREFIX}`;
    const ws = `${wsUrl}${PREFIX}/v5/public`;
    return {
      // ccxt builds every REST URL from urls.api[api] + '/' + path ('v5/market/...').
      urls: {
        api: {
          public: rest,
          spot: rest,
          futures: rest,
          v2: rest,
          ws: { public: { spot: `${ws}/spot`, linear: `${ws}/linear`, inverse: `${ws}/inverse`, option: `${ws}/option` } },
        },
      },
      // Spot and USDT-settled perpetuals (ccxt would also load inverse and option markets).
      options: { fetchMarkets: { types: ['spot', 'linear'] } },
    };
  },
  build(ctx): Dialect {
    const hub = new SocketHub({ dialect: 'bybit', log: ctx.log, faults: ctx.faults, maxBufferedBytes: ctx.maxBufferedBytes, pingIntervalMs: 0 });
    const streams = new BybitStreams(hub, ctx.market.engines, ctx.klinePushIntervalMs, ctx.log);
    hub.use(streams);
    const engines = new Map<string, SymbolEngine>(ctx.market.engines.map((e) => [e.spec.id, e]));
    const rest = createRestHandler({
      market: ctx.market,
      engines,
      refusal: () => ctx.faults.restVerdict('bybit'),
      onError: ctx.onError,
    });
    return {
      name: 'bybit',
      prefix: PREFIX,
      hub,
      handleRest: (req, res, path, url) => path.startsWith('/v5/') && rest(req, res, path, url),
      handleUpgrade(req, socket, head, path) {
        if (WS_PATHS[path] === undefined) return false;
        hub.handleUpgrade(req, socket, head);
        return true;
      },
      onBookDiff: (e) => streams.onBookDiff(e),
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
