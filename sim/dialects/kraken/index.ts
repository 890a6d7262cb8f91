/**
 * Kraken spot: `/0/public/*` REST and the websocket API v2 (`/v2`), served under `/kraken`.
 * ccxt.kraken / ccxt.pro.kraken reach it through `urls.api` overrides (`ccxtOptions`).
 */
import type { SymbolEngine } from '../../engine.ts';
import { SocketHub } from '../../ws-hub.ts';
import type { Dialect, DialectModule } from '../types.ts';
import { createKrakenRest } from './rest.ts';
import { type KrakenPair, krakenPair } from './wire.ts';
import { KrakenStreams } from './ws.ts';

const PREFIX = '/kraken';

export const kraken: DialectModule = {
  name: 'kraken',
  prefix: PREFIX,
  ccxtId: 'kraken',
  ccxtOptions({ url, wsUrl }) {
    const rest = `${url}${PREFIX}`;
    const v2 = `${wsUrl}${PREFIX}/v2`;
    return {
      urls: {
        api: {
          public: rest,
          private: rest,
          zendesk: `${rest}/zendesk`,
          // ccxt.pro.kraken's public channels use publicV2; the v1 URLs are for private calls only.
          ws: { public: v2, publicV2: v2, private: v2, privateV2: v2, beta: v2, 'beta-private': v2 },
        },
      },
    };
  },
  build(ctx): Dialect {
    const hub = new SocketHub({ dialect: 'kraken', log: ctx.log, faults: ctx.faults, maxBufferedBytes: ctx.maxBufferedBytes, pingIntervalMs: 0 });
    const pairs = new Map<SymbolEngine, KrakenPair>(ctx.market.engines.map((e) => [e, krakenPair(e.spec)]));
    const streams = new KrakenStreams(hub, pairs, ctx.klinePushIntervalMs, () => ctx.market.now(), (e) => ctx.market.takeTicker(e, 'ws'));
    hub.use(streams);
    const rest = createKrakenRest({ market: ctx.market, pairs, refusal: () => ctx.faults.restVerdict('kraken'), onError: ctx.onError });
    return {
      name: 'kraken',
      prefix: PREFIX,
      hub,
      handleRest: (req, res, path, url) => rest(req, res, path, url),
      handleUpgrade(req, socket, head, path) {
        if (path !== '/v2' && path !== '/v2/') return false;
        hub.handleUpgrade(req, socket, head);
        return true;
      },
      onTrades: (e, from, to) => streams.onTrades(e, from, to),
      onTickers: (t, views) => streams.onTickers(t, views),
      onTick: (t) => streams.onTick(t),
      onMarkets(added, removed) {
        for (const e of removed) pairs.delete(e);
        for (const e of added) pairs.set(e, krakenPair(e.spec));
        streams.markets(added, removed);
      },
    };
  },
};
