/**
 * Binance spot. Trade refills page by id (`fromId`): `fetchTrades(since)` asks aggTrades for a
 * one-hour window only (startTime..startTime+1h), and ids are exact where times are not.
 *
 * The key-less REST trade endpoint is aggTrades, whose ids are aggregate-trade ids; the `@trade`
 * stream uses fill ids, which only `historicalTrades` serves and ccxt sends that only with an
 * API key. So without an apiKey the gateway streams `@aggTrade` (one trade per taker order and
 * price; ids then match the refill exactly), and with one it streams `@trade` and refills from
 * historicalTrades. Either can be forced with `options.watchTrades.name`.
 */
import type { Exchange, Trade } from 'ccxt';
import { defaultAdapter } from './default.ts';
import type { ExchangeAdapter, RefillEnd, RefillOptions, TradeCursor } from './types.ts';

const PAGE = 1000;
/** Binance's accepted depth limits for the REST snapshot. */
const DEPTH_LIMITS = [5, 10, 20, 50, 100, 500, 1000, 5000];

type Implicit = Record<string, (params: Record<string, unknown>) => Promise<unknown>>;

const hasKey = (ex: Exchange) => typeof ex.apiKey === 'string' && ex.apiKey !== '';
const streamName = (ex: Exchange): string => String((ex.options as { watchTrades?: { name?: unknown } }).watchTrades?.name ?? 'trade');
const isSpot = (ex: Exchange, symbol: string) => ex.market(symbol).spot === true;

/** The first aggregate trade at or after `ts` (within Binance's one-hour window): its `a` and `f` ids. */
async function firstAggAt(ex: Exchange, symbol: string, ts: number): Promise<{ a: string; f: string } | undefined> {
  const rows = (await (ex as unknown as Implicit).publicGetAggTrades!({ symbol: ex.market(symbol).id, startTime: ts, endTime: ts + 3_599_999, limit: 1 })) as Array<{ a: number | string; f: number | string }>;
  const r = rows[0];
  return r ? { a: String(r.a), f: String(r.f) } : undefined;
}

const next = (id: string): string => (BigInt(id) + 1n).toString();

async function* refillById(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[], RefillEnd | void> {
  if (!isSpot(ex, symbol)) return yield* defaultAdapter.refillTrades(ex, symbol, from, opts);
  const fills = streamName(ex) === 'trade' && hasKey(ex);
  let fromId: string | undefined;
  if (from.id !== undefined && /^\d+$/.test(from.id)) fromId = next(from.id);
  else {
    const first = await firstAggAt(ex, symbol, from.ts);
    fromId = first && (fills ? first.f : first.a);
  }
  if (fromId === undefined) return;
  const method = fills ? 'publicGetHistoricalTrades' : 'publicGetAggTrades';
  for (let page = 0; page < opts.maxPages; page++) {
    if (opts.signal?.aborted) return;
    const trades = await ex.fetchTrades(symbol, undefined, PAGE, { fetchTradesMethod: method, fromId });
    if (trades.length === 0) return;
    // Binance answers from `fromId` on; a page starting later skipped trades (a proxy or an
    // endpoint that ignores fromId): the caller counts the ids skipped.
    const first = String(trades[0]!.id);
    const skipped = /^\d+$/.test(first) && BigInt(first) > BigInt(fromId);
    yield trades;
    if (skipped) return { reachedCursor: false, why: `${method} answered from id ${first} when asked from ${fromId}` };
    if (trades.length < PAGE) return;
    fromId = next(String(trades[trades.length - 1]!.id));
  }
}

export const binanceAdapter: Partial<ExchangeAdapter> = {
  ccxtDefaults: (entryOptions) => {
    const key = entryOptions.apiKey;
    return typeof key === 'string' && key !== '' ? {} : { options: { watchTrades: { name: 'aggTrade' } } };
  },
  checkOptions: (ex) =>
    streamName(ex) === 'trade' && !hasKey(ex)
      ? ['trades stream `@trade` without an apiKey: REST refills can only return aggregate-trade ids, which do not match; set apiKey or options.watchTrades.name: aggTrade']
      : [],
  // `@miniTicker` (ccxt's default) has no bid/ask.
  watchTickerParams: () => ({ name: 'ticker' }),
  refillTrades: refillById,
  monotonicTradeIds: (ex, symbol) => isSpot(ex, symbol),
  contiguousTradeIds: (ex, symbol) => isSpot(ex, symbol),
  ohlcvPageLimit: () => 1000,
  orderBookLimit: (_ex, depth) => DEPTH_LIMITS.find((l) => l >= Math.max(depth, 100)) ?? 5000,
  // ccxt's watch*ForSymbols take at most 200 symbols, and ccxt puts at most 200 subscriptions
  // (`options.subscriptionLimitByStream`) on each of its `options.streamLimits` (50) connections.
  symbolsPerSubscription: () => 200,
  // watchTradesForSymbols reads its stream name from `options.watchTradesForSymbols` unless told
  // it stands for watchTrades, whose `options.watchTrades.name` (aggTrade without a key) is ours.
  multiSymbolParams: (_ex, channel) => (channel === 'trades' ? { callerMethodName: 'watchTrades' } : channel === 'ticker' ? { name: 'ticker' } : {}),
};
