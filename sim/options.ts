/** Options of `buildSim`, their defaults and checks. */
import { TickflowError } from '../core/errors.ts';
import { DIALECTS, type DialectName } from './dialects/types.ts';
import { Rng, deriveSeed } from './rng.ts';
import type { SimState } from './state.ts';

export interface SimOptions {
  /** Interface to bind; default 127.0.0.1. */
  readonly host?: string;
  /** 0 = any free port (default). */
  readonly port?: number;
  /** Seeds prices, trades, history and book; default 1. */
  readonly seed?: number;
  /** Unified spot symbols; default ['BTC/USDT', 'ETH/USDT']. */
  readonly symbols?: readonly string[];
  /** Mean trades per second per symbol (Poisson arrivals); default 5. With `rateSkew`, the mean over the symbols. */
  readonly tradesPerSecond?: number;
  /**
   * Total trades per second over every symbol; when set it wins over `tradesPerSecond` (which becomes
   * this divided by the number of symbols).
   */
  readonly totalTradesPerSecond?: number;
  /**
   * Serve this many instruments: `symbols` first, then generated ones (`AAB/USDT`, `AAC/USDT`, ...,
   * start prices spread log-uniformly from 0.01 to 1,000 by the seed) up to the count. Default: just `symbols`.
   */
  readonly instruments?: number;
  /**
   * Zipf exponent of the trade rates: the symbol of rank r (its place in the list, 1 = first)
   * trades at a rate ∝ 1 / r^rateSkew, scaled so the mean stays `tradesPerSecond`. 0 (default) =
   * every symbol at `tradesPerSecond`; 1 ≈ real venues (a few hot symbols, a long tail).
   */
  readonly rateSkew?: number;
  /**
   * Per-connection websocket rules of the real venues: Binance's 1,024 streams per connection,
   * OKX's and Bybit's limits on one subscribe request. Default true.
   */
  readonly venueLimits?: boolean;
  /**
   * Binance's limit of 5 incoming messages per second per connection (a SUBSCRIBE, UNSUBSCRIBE...),
   * beyond which the venue closes the socket with 1008. Default false: ccxt 4.5 sends one SUBSCRIBE
   * per watch call without pacing, so per-symbol loops over many symbols trip it as on the real venue.
   */
  readonly venueMessageRate?: boolean;
  /** Start price per unified symbol; defaults to rough real levels (BTC 60000, ETH 3000, else 100). */
  readonly startPrice?: Readonly<Record<string, number>>;
  /** Days of synthetic 1m history before the start, served by klines; default 7. */
  readonly historyDays?: number;
  /** Price levels per book side; default 100. */
  readonly bookDepth?: number;
  /** Virtual start time (ms); default: the wall clock at start(). */
  readonly startTime?: number;
  /** Virtual clock speed: 60 = one simulated minute per real second. Default 1. */
  readonly speed?: number;
  /** How often trades are generated and sent (real ms); default 10. */
  readonly tickIntervalMs?: number;
  /** Trades kept per symbol for REST refills and `emitted`; default 2,000,000. */
  readonly maxStoredTrades?: number;
  /** Kline update cadence per subscribed stream (virtual ms); default 1000. */
  readonly klinePushIntervalMs?: number;
  /** Ticker cadence per symbol (virtual ms); default 1000. */
  readonly tickerPushIntervalMs?: number;
  /** Log-price volatility per √second; default 1e-4. */
  readonly volatility?: number;
  /** Drop a websocket whose unsent backlog exceeds this; default 64 MiB. */
  readonly maxBufferedBytes?: number;
  /** Tickers remembered per symbol in `emitted.tickers`; default 100,000, fewer past 10 symbols (1,000,000 over all of them, at least 1,000 each). */
  readonly maxEmittedTickers?: number;
  /**
   * Continue an earlier sim (its `state()`): the same candles for the minutes it served, prices
   * on from its last one, trade ids on from its last one, the virtual clock never behind it.
   * Symbols it did not have start afresh. Wins over `stateFile`'s contents.
   */
  readonly resume?: SimState;
  /**
   * Keep the state in this JSON file: read at build (a missing file = a first run; an unreadable
   * one is logged and ignored), rewritten every `stateSaveIntervalMs`, early when the trade ids
   * leased to the running sim run low, and on close. Unset: nothing is kept.
   */
  readonly stateFile?: string;
  /** How often the state file is rewritten (real ms); default 30,000. */
  readonly stateSaveIntervalMs?: number;
  /** The exchange formats served (each under its own path prefix); default all of DIALECTS. */
  readonly dialects?: readonly DialectName[];
}

export type SimDefaults = Readonly<Required<Omit<SimOptions, 'startPrice' | 'startTime' | 'resume' | 'stateFile'>>> & {
  /** Book update grid (virtual ms); Binance's fast diff stream is 100 ms. */
  readonly bookIntervalMs: number;
  /** Id of the first history trade (Binance's BTCUSDT ids are past 2^32: keep gateways honest). */
  readonly firstTradeId: number;
};

export const SIM_DEFAULTS: SimDefaults = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  seed: 1,
  symbols: Object.freeze(['BTC/USDT', 'ETH/USDT']),
  tradesPerSecond: 5,
  historyDays: 7,
  bookDepth: 100,
  speed: 1,
  tickIntervalMs: 10,
  maxStoredTrades: 2_000_000,
  klinePushIntervalMs: 1000,
  tickerPushIntervalMs: 1000,
  volatility: 1e-4,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxEmittedTickers: 100_000,
  stateSaveIntervalMs: 30_000,
  dialects: DIALECTS,
  totalTradesPerSecond: 0,
  instruments: 0,
  rateSkew: 0,
  venueLimits: true,
  venueMessageRate: false,
  bookIntervalMs: 100,
  firstTradeId: 3_000_000_000,
});

export function invalid(msg: string): TickflowError {
  return new TickflowError('CONFIG_INVALID', `sim: ${msg}`);
}

export function resolveOptions(opts: SimOptions) {
  const o = { ...SIM_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof SIM_DEFAULTS &
    Pick<SimOptions, 'startPrice' | 'startTime' | 'resume' | 'stateFile'>;
  const positive = (name: keyof typeof SIM_DEFAULTS, v: number, allowZero = false): void => {
    if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) throw invalid(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`);
  };
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw invalid(`port must be 0..65535, got ${o.port}`);
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`);
  positive('tradesPerSecond', o.tradesPerSecond, true);
  positive('historyDays', o.historyDays, true);
  positive('bookDepth', o.bookDepth);
  positive('speed', o.speed);
  positive('tickIntervalMs', o.tickIntervalMs);
  positive('maxStoredTrades', o.maxStoredTrades);
  positive('klinePushIntervalMs', o.klinePushIntervalMs);
  positive('tickerPushIntervalMs', o.tickerPushIntervalMs);
  positive('stateSaveIntervalMs', o.stateSaveIntervalMs);
  positive('volatility', o.volatility, true);
  if (o.symbols.length === 0) throw invalid('symbols must not be empty');
  if (new Set(o.symbols).size !== o.symbols.length) throw invalid(`symbols must be unique, got ${o.symbols.join(',')}`);
  for (const d of o.dialects) {
    if (!(DIALECTS as readonly string[]).includes(d)) throw invalid(`unknown dialect ${d} (known: ${DIALECTS.join(', ')})`);
  }
  for (const s of Object.keys(o.startPrice ?? {})) {
    if (!o.symbols.includes(s)) throw invalid(`startPrice names ${s}, which is not in symbols`);
  }
  positive('totalTradesPerSecond', o.totalTradesPerSecond, true);
  positive('rateSkew', o.rateSkew, true);
  if (!Number.isInteger(o.instruments) || o.instruments < 0 || o.instruments > 100_000) throw invalid(`instruments must be an integer 0..100000, got ${o.instruments}`);
  const symbols = [...o.symbols, ...generatedSymbols(o.symbols, o.instruments - o.symbols.length)];
  const startPrice: Record<string, number> = { ...generatedPrices(o.seed, symbols.slice(o.symbols.length)), ...(o.startPrice ?? {}) };
  const tradesPerSecond = o.totalTradesPerSecond > 0 ? o.totalTradesPerSecond / symbols.length : o.tradesPerSecond;
  const maxEmittedTickers = opts.maxEmittedTickers ?? Math.min(SIM_DEFAULTS.maxEmittedTickers, Math.max(1_000, Math.floor(1_000_000 / symbols.length)));
  return { ...o, symbols, startPrice, tradesPerSecond, maxEmittedTickers };
}

/**
 * Generated symbols: a three-letter base (more letters past 16,224) over USDT, `ABA/USDT`, `BBA/USDT`, ...;
 * never X or Z first (Kraken's legacy asset prefixes), never one of `taken`.
 */
function generatedSymbols(taken: readonly string[], count: number): string[] {
  const FIRST = 'ABCDEFGHIJKLMNOPQRSTUVWY';
  const REST = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const out: string[] = [];
  const used = new Set(taken);
  for (let i = 24; out.length < count; i++) {
    let base = FIRST[i % 24]!;
    for (let r = Math.floor(i / 24); r > 0 || base.length < 3; r = Math.floor(r / 26)) base += REST[r % 26]!;
    const symbol = `${base}/USDT`;
    if (!used.has(symbol)) {
      used.add(symbol);
      out.push(symbol);
    }
  }
  return out;
}

/** Start prices of generated symbols, log-uniform in [0.01, 1000), from the seed. */
function generatedPrices(seed: number, symbols: readonly string[]): Record<string, number> {
  const rng = new Rng(deriveSeed(seed, 'generated-prices'));
  const out: Record<string, number> = {};
  for (const s of symbols) out[s] = Number((10 ** (-2 + 5 * rng.next())).toPrecision(4));
  return out;
}

/**
 * Relative trade rate of the symbol of rank `rank` (0-based) among `n`, mean 1 over the n:
 * Zipf with exponent `skew` (0 = all 1).
 */
export function rateWeights(n: number, skew: number): Float64Array {
  const w = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) sum += w[r] = 1 / (r + 1) ** skew;
  for (let r = 0; r < n; r++) w[r] = (w[r]! * n) / sum;
  return w;
}

export type ResolvedOptions = ReturnType<typeof resolveOptions>;
