/** The sim's public types: what it emitted (the truth tests compare with), its stats, the facade. */
import type { Interval } from './candles.ts';
import type { DialectName } from './dialects/types.ts';
import type { PauseTarget, SimFault } from './faults.ts';
import type { SimState } from './state.ts';


/** A trade as the sim printed it; numbers are exactly what a client parses from the wire. */
export interface SimTrade {
  readonly symbol: string;
  readonly id: number;
  /** Trade time, ms. */
  readonly timestamp: number;
  readonly price: number;
  /** Base quantity (Binance's `qty`). */
  readonly amount: number;
  /** Taker side. */
  readonly side: 'buy' | 'sell';
  readonly isBuyerMaker: boolean;
}

export interface SimCandle {
  readonly symbol: string;
  readonly timeframe: Interval;
  /** Bucket open, ms. */
  readonly timestamp: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
  readonly volume: number;
  readonly quoteVolume: number;
  readonly trades: number;
  /** False for the bucket still forming. */
  readonly closed: boolean;
}

export interface SimTicker {
  readonly symbol: string;
  /** 'ws': pushed on `@ticker` (every tickerPushIntervalMs, subscribers or not); 'rest': served by `ticker/24hr`. */
  readonly source: 'ws' | 'rest';
  /** Binance's close time `C` of the 24 h window = ccxt's ticker timestamp. */
  readonly timestamp: number;
  readonly bid: number;
  readonly bidVolume: number;
  readonly ask: number;
  readonly askVolume: number;
  readonly last: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly previousClose: number;
  readonly change: number;
  readonly percentage: number;
  readonly vwap: number;
  readonly baseVolume: number;
  readonly quoteVolume: number;
}

export interface SimBook {
  readonly symbol: string;
  readonly nonce: number;
  /** [price, amount], best first. */
  readonly bids: ReadonlyArray<readonly [number, number]>;
  readonly asks: ReadonlyArray<readonly [number, number]>;
}

export interface TradeQuery {
  /** Only trades with id >= fromId. */
  readonly fromId?: number;
  /** Only trades with timestamp >= since. */
  readonly since?: number;
  /** Only trades with timestamp <= until. */
  readonly until?: number;
}

export interface SimEmitted {
  /** Every trade generated (bounded by maxStoredTrades), oldest first; all symbols in symbol order when none is named. */
  trades(symbol?: string, query?: TradeQuery): readonly SimTrade[];
  /** Candles from the sim's start (with `includeHistory`, from the first history bucket); the last one may be forming. */
  candles(symbol: string, timeframe: Interval, opts?: { includeHistory?: boolean }): readonly SimCandle[];
  /** Every full ticker pushed (one per symbol per tickerPushIntervalMs, subscribers or not) or served by REST, oldest first. */
  tickers(symbol?: string, source?: SimTicker['source']): readonly SimTicker[];
  /**
   * Per symbol (listed and delisted), what was printed, in O(symbols): cheap at any count. Trade
   * ids are contiguous, so the trades printed in `[fromId, nextId)` number `nextId - fromId`.
   */
  counts(): Readonly<Record<string, SimEmittedCounts>>;
}

export interface SimEmittedCounts {
  /** Still listed (false: delisted at runtime). */
  readonly listed: boolean;
  /** Id of the first trade printed live (after the start or the listing). */
  readonly firstLiveId: number;
  /** Id the next trade will get: live trades printed = nextId - firstLiveId. */
  readonly nextId: number;
  /** Oldest trade id still held for REST and `emitted.trades`. */
  readonly storedFromId: number;
  /** Virtual time the trades are complete up to. */
  readonly until: number;
  /** Tickers taken on the push cadence ('ws') since the start. */
  readonly tickers: number;
  /** Its rate now, trades per second. */
  readonly tradesPerSecond: number;
}

/** What `Sim.markets` takes: symbols (or listings with a start price and rate) to list, symbols to delist. */
export interface SimMarketsChange {
  readonly add?: ReadonlyArray<string | { readonly symbol: string; readonly startPrice?: number; readonly tradesPerSecond?: number }>;
  readonly remove?: readonly string[];
}

/** One websocket connection as `stats()` reports it. */
export interface SimConnection {
  readonly id: number;
  readonly path: string;
  /** Streams (topics) subscribed on it. */
  readonly streams: number;
}

/**
 * Constructor options for `ccxt.binance` / `ccxt.pro.binance`, plain data (fit for YAML config).
 * The caller must add what cannot be data: `httpAgent: new http.Agent()` — ccxt refuses `ws://`
 * URLs without one (NotSupported) — or call `await exchange.loadHttpProxyAgent()` before watching.
 */
export interface SimCcxtOptions {
  readonly urls: { readonly api: { readonly public: string; readonly ws: { readonly spot: string; readonly margin: string } } };
  readonly options: { readonly fetchMarkets: { readonly types: readonly string[] } };
}

export interface SimStats {
  readonly running: boolean;
  readonly url: string;
  readonly virtualNow: number;
  readonly speed: number;
  readonly tradesPerSecond: number;
  readonly symbols: Readonly<Record<string, { trades: number; lastId: number; storedTrades: number; bid: number; ask: number }>>;
  readonly tradesGenerated: number;
  readonly ticks: number;
  /** Tick processing time, real ms. */
  readonly tickMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Ticks whose processing took longer than the tick interval (the sim falling behind). */
  readonly overrunTicks: number;
  /** Share of wall time the event loop was busy since start (0..1). */
  readonly eventLoopUtilization: number;
  /** Busy and total event-loop time since start, ms: diff two samples for a window's utilization. */
  readonly eventLoop: { readonly busyMs: number; readonly wallMs: number };
  /** Websocket counters, summed over the dialects. */
  readonly ws: Readonly<Record<string, number>>;
  /** The same per dialect, with its open connections (streams per connection). */
  readonly dialects: Readonly<Record<string, { readonly ws: Readonly<Record<string, number>>; readonly restRequests: number; readonly connections: readonly SimConnection[] }>>;
  /** Markets listed now. */
  readonly markets: number;
  readonly restRequests: number;
}

export interface Sim {
  start(): Promise<void>;
  close(): Promise<void>;
  readonly port: number;
  /** http://host:port */
  readonly url: string;
  /** ws://host:port */
  readonly wsUrl: string;
  /** The markets listed now (`instruments` generated ones included), in rank order. */
  readonly symbols: readonly string[];
  /** Lists and delists markets at runtime (what `POST /__sim/markets` does); errors name a bad symbol and change nothing. */
  markets(change: SimMarketsChange): { added: string[]; removed: string[]; markets: number };
  /** The dialects it speaks, each under its own path prefix (Binance's at the root). */
  readonly dialects: readonly DialectName[];
  /** ccxt options for `ccxt.binance`; with a dialect, for that dialect's ccxt class (see DIALECT_MODULES[d].ccxtId). */
  ccxtOptions(): SimCcxtOptions;
  ccxtOptions(dialect: DialectName): Record<string, unknown>;
  /** The sim's (virtual) clock, ms. */
  now(): number;
  /** Closes every websocket of every dialect now: 'abrupt' (default) resets the TCP connection (clients see 1006), 'clean' sends close 1001. */
  dropConnections(how?: 'abrupt' | 'clean'): number;
  /** Drops the sockets carrying `channel`'s streams and refuses them ('all': refuses every upgrade, 503) for `ms` real ms; trades keep being generated. */
  pauseStream(channel: PauseTarget, ms: number): void;
  /** REST answers `status` (503 default; 429/418 carry the exchange's rate-limit body) with Retry-After for `ms` real ms. */
  refuseService(ms: number, status?: number): void;
  /** Websocket upgrades are answered `status` (403 default) for `ms` real ms; open sockets stay. */
  refuseWebsocket(ms: number, status?: number): void;
  /** REST answers the exchange's rate-limit error beyond `requestsPerSecond` per dialect, for `ms` real ms. */
  rateLimit(requestsPerSecond: number, ms: number): void;
  /** Any fault, optionally for one dialect only (what `POST /__sim/faults` takes). Returns the sockets dropped. */
  applyFault(fault: SimFault): number;
  /** Ends every refusal, pause and rate limit. */
  clearFaults(): void;
  setTradeRate(perSecondPerSymbol: number): void;
  orderBook(symbol: string, limit?: number): SimBook;
  readonly emitted: SimEmitted;
  stats(): SimStats;
  /** What a later sim needs to continue this one (`SimOptions.resume`); exact after close(). */
  state(): SimState;
  /** True when this sim continues an earlier one's state. */
  readonly resumed: boolean;
}
