/**
 * `tickflow backfill <exchange> <symbol> <timeframe> --from --to`: candle history over REST
 * into Kafka on demand, through the same normalizer, `closed` rule and publisher as the
 * gateway. Candles go out closed only (a bucket still forming at `--to` is left to the
 * gateway); re-running a range is harmless, the sink upserts on (exchange, symbol, timeframe, ts).
 */
import { createCodec } from '../core/avro.ts';
import type { Config, ExchangeEntry } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { retry } from '../core/retry.ts';
import { CandleTracker, timeframeMs } from './candles.ts';
import { ccxtClassFor, createExchange, has, translateError } from './ccxt.ts';
import { GatewayEvents } from './events.ts';
import { adapterFor } from './exchanges/index.ts';
import { fetchCandlePages } from './history.ts';
import { normalizeCandle } from './normalize.ts';
import { kafkaTransport, Publisher, type Transport } from './publisher.ts';
import { entryName } from './worker.ts';

export interface BackfillRequest {
  /** An entry's name (or id) from the config, or any ccxt id (then with default options). */
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: string;
  /** ms, inclusive (bucket opens). */
  readonly from: number;
  /** ms, exclusive; default: now. */
  readonly to?: number;
}

export interface BackfillProgress {
  readonly candles: number;
  /** 0..1 of the requested range. */
  readonly fraction: number;
  /** Bucket open of the newest candle fetched, ms. */
  readonly at: number;
}

export interface BackfillResult {
  readonly exchange: string;
  readonly candles: number;
  readonly acked: number;
  readonly undelivered: number;
  readonly seconds: number;
}

export interface BackfillDeps {
  readonly brokers?: readonly string[];
  readonly transport?: Transport;
  readonly onProgress?: (p: BackfillProgress) => void;
  readonly signal?: AbortSignal;
}

/** How long backfill waits for an unreachable schema registry before it stops. */
const REGISTRY_WAIT_MS = 60_000;

export function findEntry(config: Config, name: string): ExchangeEntry {
  const entry = config.exchanges.find((e) => entryName(e) === name) ?? config.exchanges.find((e) => e.id === name);
  if (entry) return entry;
  if (ccxtClassFor(name)) {
    return { id: name, enabled: true, symbols: ['X/Y'], channels: { ohlcv: { mode: 'poll', timeframes: ['1m'], silenceTimeoutMs: 60_000 } }, backfillLookbackMinutes: 0, maxBufferedRecords: 250_000, options: {} };
  }
  const names = config.exchanges.map(entryName);
  throw new TickflowError('EXCHANGE_UNKNOWN', `backfill: no exchange entry named "${name}" in the config${names.length ? ` (configured: ${names.join(', ')})` : ''}, and ccxt has no exchange with that id`);
}

export async function runBackfill(config: Config, req: BackfillRequest, deps: BackfillDeps = {}): Promise<BackfillResult> {
  const started = Date.now();
  const entry = findEntry(config, req.exchange);
  const name = entryName(entry);
  timeframeMs(req.timeframe);
  const adapter = adapterFor(entry.id);
  const ex = createExchange(entry, adapter.ccxtDefaults(entry.options));
  const events = new GatewayEvents();
  const codec = createCodec(config.kafka);
  const publisher = new Publisher({
    topicPrefix: config.kafka.topicPrefix,
    codec,
    transport: deps.transport ?? kafkaTransport({ ...config.kafka, brokers: deps.brokers ?? config.kafka.brokers }, codec),
    events,
  });
  try {
    // With a schema registry, the schemas are registered before anything is encoded; an
    // unreachable registry is waited for (logged with its URL) up to a minute.
    await codec.prepareWaiting({ log: logger('backfill'), who: 'backfill', deadlineMs: REGISTRY_WAIT_MS, ...(deps.signal ? { signal: deps.signal } : {}) }).catch((e: unknown) => {
      throw e instanceof TickflowError && e.retriable ? new TickflowError(e.code, `backfill: ${e.message} (waited ${REGISTRY_WAIT_MS / 1000} s)`, { cause: e }) : e;
    });
    await retry(
      async () => {
        try {
          await ex.loadMarkets();
        } catch (e) {
          throw translateError(e, `${name} loadMarkets`, ex);
        }
      },
      { attempts: 5, initialDelayMs: 1_000, maxDelayMs: 10_000 },
    );
    if (!ex.markets?.[req.symbol]) throw new TickflowError('SYMBOL_UNKNOWN', `backfill: symbol ${req.symbol} is not listed by ${name} (${entry.id})`);
    if (!has(ex, 'fetchOHLCV')) throw new TickflowError('CHANNEL_UNSUPPORTED', `backfill: ${entry.id} has no fetchOHLCV`);
    if (ex.timeframes && Object.keys(ex.timeframes).length > 0 && !(req.timeframe in ex.timeframes)) {
      throw new TickflowError('CHANNEL_UNSUPPORTED', `backfill: timeframe ${req.timeframe} is not offered by ${entry.id} (offers ${Object.keys(ex.timeframes).join(', ')})`);
    }
    let exchangeNow = Date.now();
    if (has(ex, 'fetchTime')) exchangeNow = (await ex.fetchTime().catch(() => undefined)) ?? exchangeNow;
    const to = Math.min(req.to ?? exchangeNow, exchangeNow + timeframeMs(req.timeframe));
    if (!(req.from < to)) throw new TickflowError('CONFIG_INVALID', `backfill: --from (${new Date(req.from).toISOString()}) must be before --to (${new Date(to).toISOString()})`);

    publisher.start();
    const outbox = publisher.outbox(name, entry.maxBufferedRecords);
    const tracker = new CandleTracker(req.timeframe);
    let candles = 0;
    await fetchCandlePages({
      ex,
      adapter,
      symbol: req.symbol,
      timeframe: req.timeframe,
      from: req.from,
      to,
      ...(deps.signal ? { signal: deps.signal } : {}),
      onPage: async (rows) => {
        await outbox.waitForRoom();
        const at = Date.now() * 1000;
        for (const e of tracker.onRest(rows, exchangeNow + (Date.now() - started), { before: to })) {
          const c = normalizeCandle(name, req.symbol, req.timeframe, e.row, true, at);
          if (c) {
            outbox.add('candle', c);
            candles++;
          }
        }
        const last = rows[rows.length - 1]![0]!;
        deps.onProgress?.({ candles, fraction: Math.min(1, (last + timeframeMs(req.timeframe) - req.from) / (to - req.from)), at: last });
      },
    });
    const undelivered = await publisher.close(60_000);
    return { exchange: name, candles, acked: publisher.acked, undelivered, seconds: (Date.now() - started) / 1000 };
  } finally {
    await publisher.close(1_000).catch(() => undefined);
    await ex.close().catch(() => undefined);
  }
}
