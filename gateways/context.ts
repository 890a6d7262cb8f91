/**
 * What the loops of one exchange worker (watch loops, polls, REST recovery) share: the entry's
 * ccxt instance and adapter, its outbox, events, clock and per-instrument state.
 */
import type { Exchange } from 'ccxt';
import type { ExchangeEntry } from './config.ts';
import type { Logger } from '../core/log.ts';
import type { CandleTracker, ExchangeClock } from './candles.ts';
import type { GatewayEvents, StreamRef } from './events.ts';
import type { ExchangeAdapter } from './exchanges/index.ts';
import type { Outbox } from './outbox.ts';
import type { StreamPosition } from './positions.ts';
import type { TradeLedger } from './trades.ts';
import type { FallbackPolicy } from './watch.ts';
import type { Watchdog } from './watchdog.ts';

export interface WorkerContext {
  /** The `exchange` field of the records: the entry's name, else its ccxt id. */
  readonly name: string;
  readonly entry: ExchangeEntry;
  readonly ex: Exchange;
  readonly adapter: ExchangeAdapter;
  readonly outbox: Outbox;
  readonly events: GatewayEvents;
  readonly log: Logger;
  readonly clock: ExchangeClock;
  readonly signal: AbortSignal;
  readonly watchdog: Watchdog;
  /** When a failing websocket falls back to REST polling (the entry's `wsFallback` over the gateway's); default DEFAULT_FALLBACK. */
  readonly fallback?: FallbackPolicy;
  ledger(symbol: string): TradeLedger;
  tracker(symbol: string, timeframe: string): CandleTracker;
  /** Where the previous gateway process stopped this stream (positions.ts), if it got anything into Kafka. */
  readonly stoppedAt?: (ref: StreamRef) => StreamPosition | undefined;
}
