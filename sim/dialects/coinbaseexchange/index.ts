/**
 * Coinbase Exchange under `/coinbaseexchange`: REST `/coinbaseexchange/products...` and the feed
 * `/coinbaseexchange/ws-feed`, for the real `ccxt.coinbaseexchange` / `ccxt.pro.coinbaseexchange`
 * (ccxt builds REST URLs as `urls.api.public + '/products/...'` and connects to `urls.api.ws`).
 */
import type { SymbolEngine } from '../../engine.ts';
import { SocketHub } from '../../ws-hub.ts';
import type { Dialect, DialectModule } from '../types.ts';
import { createRestHandler } from './rest.ts';
import { productId } from './wire.ts';
import { CoinbaseStreams } from './ws.ts';

const PREFIX = '/coinbaseexchange';
const WS_PATH = '/ws-feed';

export const coinbaseexchange: DialectModule = {
  name: 'coinbaseexchange',
  prefix: PREFIX,
  ccxtId: 'coinbaseexchange',
  ccxtOptions({ url, wsUrl }) {
    return { urls: { api: { public: `${url}${PREFIX}`, private: `${url}${PREFIX}`, ws: `${wsUrl}${PREFIX}${WS_PATH}` } } };
  },
  build(ctx): Dialect {
    // Coinbase sends no ping frames (ws answers the client's); `heartbeat` is a channel.
    const hub = new SocketHub({ dialect: 'coinbaseexchange', log: ctx.log, faults: ctx.faults, maxBufferedBytes: ctx.maxBufferedBytes, pingIntervalMs: 0 });
    const streams = new CoinbaseStreams(hub, ctx.market.engines);
    hub.use(streams);
    const engines = new Map<string, SymbolEngine>(ctx.market.engines.map((e) => [productId(e.spec), e]));
    const rest = createRestHandler({
      market: ctx.market,
      engines,
      refusal: () => ctx.faults.restVerdict('coinbaseexchange'),
      onError: ctx.onError,
    });
    return {
      name: 'coinbaseexchange',
      prefix: PREFIX,
      hub,
      handleRest: (req, res, path, url) => rest(req, res, path, url),
      handleUpgrade(req, socket, head, path) {
        if (path !== WS_PATH && path !== '/') return false;
        hub.handleUpgrade(req, socket, head);
        return true;
      },
      onBookDiff: (e, d) => streams.onBookDiff(e, d),
      onTrades: (e, from, to) => streams.onTrades(e, from, to),
      onTickers: (t, views) => streams.onTickers(t, views),
      onTick: (t) => streams.onTick(t),
      onMarkets(added, removed) {
        for (const e of removed) engines.delete(productId(e.spec));
        for (const e of added) engines.set(productId(e.spec), e);
        streams.markets(added, removed);
      },
    };
  },
};
