import type { Channel } from '../config.ts';
import type { Exchange, Trade } from 'ccxt';

/** Where a trade refill starts: after this trade (exclusive), or from this time when no trade was seen. */
export interface TradeCursor {
  readonly id: string | undefined;
  /** ms */
  readonly ts: number;
}

export interface RefillOptions {
  /** Pages fetched at most; a longer outage is refilled up to there and the gap says so. */
  readonly maxPages: number;
  readonly signal?: AbortSignal;
}

/**
 * How a trade refill ended, returned by `refillTrades` when it can tell whether its pages reached
 * back to the cursor (an exchange whose `fetchTrades` ignores `since` answers only its latest
 * trades; its history may be shorter than the outage). Without it, the caller judges from the ids
 * where they are consecutive, and otherwise takes the refill as complete.
 */
export interface RefillEnd {
  /** The pages reach back to the cursor: nothing between it and the first trade refilled is missing. */
  readonly reachedCursor: boolean;
  /** Why not (for the gap record), e.g. "fetchTrades ignores since". */
  readonly why?: string;
}

/**
 * What differs between exchanges in how the gateway uses ccxt. `exchanges/default.ts` is the
 * generic behaviour; an exchange file (named by the ccxt id) overrides only what it must.
 */
export interface ExchangeAdapter {
  /** ccxt constructor options this exchange needs from the gateway, under the entry's own (which win). */
  ccxtDefaults(entryOptions: Readonly<Record<string, unknown>>): Record<string, unknown>;
  /** Start-up warnings about the entry's options (e.g. a stream whose trades REST cannot refill). */
  checkOptions(ex: Exchange): string[];
  /** Extra params for `watchTicker`. */
  watchTickerParams(ex: Exchange, symbol: string): Record<string, unknown>;
  /**
   * Trades after `from` over REST, oldest first, page by page until caught up with the present.
   * Pages may overlap what was already produced: the caller dedupes by id. Returns whether the
   * pages reached back to `from` where it can tell (see RefillEnd).
   */
  refillTrades(ex: Exchange, symbol: string, from: TradeCursor, opts: RefillOptions): AsyncGenerator<Trade[], RefillEnd | void>;
  /** Ids grow with time as integers: a trade at or below the newest produced id is a duplicate. */
  monotonicTradeIds(ex: Exchange, symbol: string): boolean;
  /** Ids are consecutive on the stream: a jump means trades were missed. */
  contiguousTradeIds(ex: Exchange, symbol: string): boolean;
  /** Candles per `fetchOHLCV` page. */
  ohlcvPageLimit(ex: Exchange): number;
  /** The book depth to ask `watchOrderBook` / `fetchOrderBook` for, to serve top `depth` levels. */
  orderBookLimit(ex: Exchange, depth: number): number | undefined;
  /**
   * Instruments per multi-symbol subscription (multiplex.ts): within what one subscribe request and
   * one connection may carry. 0: the channel's multi-symbol watch is not used (one watch per instrument).
   */
  symbolsPerSubscription(ex: Exchange, channel: Channel): number;
  /** Extra params for a channel's multi-symbol watch (e.g. which per-symbol method's options apply). */
  multiSymbolParams(ex: Exchange, channel: Channel): Record<string, unknown>;
}
