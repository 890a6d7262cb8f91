/**
 * `tickflow backfill <exchange> <symbol> <timeframe> --from --to`: candle history over REST
 * into Kafka on demand, through the same normalizer, `closed` rule and publisher as the
 * gateway. Candles go out closed only (a bucket still forming at `--to` is left to the
 * gateway); re-running a range is harmless, the sink upserts on (exchange, symbol, timeframe, ts).
 */
import type { Exchange } from 'ccxt';
import { createCodec } from '../core/avro.ts';
import type { ConfigForGateway, ExchangeEntry } from './config.ts';
import { TickflowError } from '../core/errors.ts';
import { logger } from '../core/log.ts';
import { RETRY, retry } from '../core/retry.ts';
import { nowUs } from '../core/time.ts';
import { CandleTracker, timeframeMs } from './candles.ts';
import { createExchange, has, knowsExchange, loadExchangeClass, translateError } from './ccxt.ts';
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
  /** The range asked for (ms; `to` capped at the exchange's present). */
  readonly from: number;
  readonly to: number;
  /** Bucket open of the first and last candle the exchange returned in the range (ms). */
  readonly first: number | undefined;
  readonly last: number | undefined;
  /**
   * Set when the exchange's candles in the range start later than `from`: the first bucket it
   * had (older history is not held by it, or it had no trades then).
   */
  readonly startsLate: number | undefined;
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

export function findEntry(config: ConfigForGateway, name: string): ExchangeEntry {
  const entry = config.exchanges.find((e) => entryName(e) === name) ?? config.exchanges.find((e) => e.id === name);
  if (entry) return entry;
  if (knowsExchange(name)) {
    return { id: name, enabled: true, symbols: ['X/Y'], marketTypes: ['spot'], multiSymbol: true, channels: { ohlcv: { mode: 'poll', timeframes: ['1m'], silenceTimeoutMs: 60_000 } }, backfillLookbackMinutes: 0, maxBufferedRecords: 250_000, options: {} };
  }
  const names = config.exchanges.map(entryName);
  throw new TickflowError('EXCHANGE_UNKNOWN', `backfill: no exchange entry named "${name}" in the config${names.length ? ` (configured: ${names.join(', ')})` : ''}, and ccxt has no exchange with that id`);
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Nothing came back for the range: an error naming the range and what the exchange does hold
 * (its first candle at or after --from, and its newest), so the next try can aim at it.
 */
async function nothingInRange(ex: Exchange, name: string, req: BackfillRequest, to: number, forming: number | undefined): Promise<TickflowError> {
  const what = `${name} has no closed ${req.symbol} ${req.timeframe} candles from ${iso(req.from)} to ${iso(to)}`;
  if (forming !== undefined) return new TickflowError('NO_DATA', `backfill: ${what}: the only one, at ${iso(forming)}, is still forming`);
  const probe = async (since: number | undefined, limit: number): Promise<number[]> => {
    try {
      const rows = await ex.fetchOHLCV(req.symbol, req.timeframe, since, limit);
      return rows.map((r) => r[0]).filter((t): t is number => typeof t === 'number' && (since === undefined || t >= since));
    } catch {
      return [];
    }
  };
  const after = await probe(req.from, 5);
  const newest = await probe(undefined, 1);
  const oldest = after.length ? Math.min(...after) : undefined;
  const latest = newest.length ? Math.max(...newest) : undefined;
  let holds: string;
  if (oldest !== undefined && latest !== undefined) holds = `it holds them from ${iso(oldest)} to ${iso(latest)}; try --from ${iso(oldest)} or later`;
  else if (oldest !== undefined) holds = `its first one after --from is at ${iso(oldest)}`;
  else if (latest !== undefined) holds = `its newest is at ${iso(latest)}, before the range`;
  else holds = 'it returned none at all for this symbol and timeframe';
  return new TickflowError('NO_DATA', `backfill: ${what}; ${holds}`);
}

export async function runBackfill(config: ConfigForGateway, req: BackfillRequest, deps: BackfillDeps = {}): Promise<BackfillResult> {
  const started = Date.now();
  const entry = findEntry(config, req.exchange);
  const name = entryName(entry);
  timeframeMs(req.timeframe);
  const adapter = adapterFor(entry.id);
  await loadExchangeClass(entry.id);
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
      RETRY.exchangeMarkets,
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
    let first: number | undefined;
    let last: number | undefined;
    await fetchCandlePages({
      ex,
      adapter,
      symbol: req.symbol,
      timeframe: req.timeframe,
      from: req.from,
      to,
      ...(deps.signal ? { signal: deps.signal } : {}),
      onPage: async (rows) => {
        first ??= rows[0]![0]!;
        last = rows[rows.length - 1]![0]!;
        await outbox.waitForRoom();
        const at = nowUs();
        for (const e of tracker.onRest(rows, exchangeNow + (Date.now() - started), { before: to })) {
          const c = normalizeCandle(name, req.symbol, req.timeframe, e.row, true, at);
          if (c) {
            outbox.add('candle', c);
            candles++;
          }
        }
        const newest = rows[rows.length - 1]![0]!;
        deps.onProgress?.({ candles, fraction: Math.min(1, (newest + timeframeMs(req.timeframe) - req.from) / (to - req.from)), at: newest });
      },
    });
    if (candles === 0) throw await nothingInRange(ex, name, req, to, last);
    const undelivered = await publisher.close(60_000);
    const tf = timeframeMs(req.timeframe);
    const firstBucket = Math.ceil(req.from / tf) * tf;
    return {
      exchange: name,
      from: req.from,
      to,
      first,
      last,
      startsLate: first !== undefined && first > firstBucket ? first : undefined,
      candles,
      acked: publisher.acked,
      undelivered,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await publisher.close(1_000).catch(() => undefined);
    await ex.close().catch(() => undefined);
  }
}
