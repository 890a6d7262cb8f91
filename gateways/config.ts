import cron from 'node-cron';
import { z } from 'zod';
import { describeIssues, type SharedConfig } from '../core/config.ts';
import { parseTimeframe } from '../core/time.ts';
import { MARKET_TYPES } from './instruments.ts';

/**
 * The gateway's parts of the config: the `gateway` section and the `exchanges` entries (one per
 * ccxt exchange to run). config/schema.ts composes them into the whole file; entries are
 * validated one by one (parseExchangeEntries) so a bad entry is reported by name without
 * stopping the good ones.
 */

/** The channels of an exchange entry: the record kinds a gateway collects (schemas/catalog.ts). */
export { CHANNELS, type Channel } from '../schemas/catalog.ts';
import type { Channel } from '../schemas/catalog.ts';
export const CHANNEL_MODES = ['ws', 'poll'] as const;

/**
 * A `mode: ws` channel whose websocket keeps failing (refused, dropping as it opens, silent)
 * polls REST instead until the websocket delivers again (watch.ts). Gateway-wide under
 * `gateway.wsFallback`, overridden per entry by the entry's `wsFallback` (key by key).
 */
const wsFallbackFields = {
  /** Fall back at all. */
  enabled: z.boolean(),
  /** Consecutive websocket failures without a message before polling... */
  afterFailures: z.int().min(1),
  /** ...and for at least this long since the first of them (a brief outage is the websocket's to recover). */
  afterMs: z.int().min(0),
  /** Between two polls while fallen back. */
  pollIntervalMs: z.int().min(100),
  /** First wait before the websocket is tried again, doubling up to probeMaxMs. */
  probeInitialMs: z.int().min(100),
  probeMaxMs: z.int().min(100),
};
/** `gateway.marketsRecheckMs` default: one hour. */
export const MARKETS_RECHECK_DEFAULT_MS = 3_600_000;

export const WS_FALLBACK_DEFAULTS = { enabled: true, afterFailures: 3, afterMs: 10_000, pollIntervalMs: 5_000, probeInitialMs: 5_000, probeMaxMs: 30_000 } as const;
const wsFallbackSchema = z.strictObject(wsFallbackFields).partial();

/** Defaults of `gateway.shard: {group}` (gateways/shard.ts). */
export const SHARD_GROUP_DEFAULTS = { slots: 64, sessionTimeoutMs: 10_000, heartbeatIntervalMs: 1_000, handoverMs: 1_000, handoverGapMs: 5_000 } as const;

/**
 * `gateway.shard`: several gateway processes share the entries' instruments (gateways/shard.ts).
 * Static `{index, count}` (the `--shard i/n` flag), or membership through a Kafka consumer group
 * `{group}` (the `--shard-group g` flag): instruments move when a process joins or dies.
 */
const shardSchema = z.union([
  z
    .strictObject({ index: z.int().min(0), count: z.int().min(1) })
    .refine((s) => s.index < s.count, 'expected index < count (0-based: 0/3, 1/3, 2/3)'),
  z.strictObject({
    group: z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected a group name of letters, digits, ., _ or -'),
    /** Partitions of `<prefix>.gateway-shards` when it is created: instruments hash into this many slots. */
    slots: z.int().min(1).max(10_000).default(SHARD_GROUP_DEFAULTS.slots),
    /** A process that stops heartbeating (kill -9, a lost host) loses its slots after this long; the broker allows 6000-300000 by default. */
    sessionTimeoutMs: z.int().min(1_000).default(SHARD_GROUP_DEFAULTS.sessionTimeoutMs),
    heartbeatIntervalMs: z.int().min(100).default(SHARD_GROUP_DEFAULTS.heartbeatIntervalMs),
    /** Between a slot's assignment and its start, so the previous owner's last records reach Kafka first. */
    handoverMs: z.int().min(0).default(SHARD_GROUP_DEFAULTS.handoverMs),
    /** A ticker or book stream taken over within this long of its last record in Kafka leaves no gap record. */
    handoverGapMs: z.int().min(0).default(SHARD_GROUP_DEFAULTS.handoverGapMs),
  }),
]);

export const gatewaySchema = z
  .strictObject({
    /** Unsharded (null): this process serves every instrument of its entries. */
    shard: shardSchema.nullable().default(null),
    /** Where `tickflow gateway` serves /metrics for Prometheus (the API and sink serve theirs). */
    metricsHost: z.string().min(1).default('127.0.0.1'),
    /** 0 picks a free port; the docker-compose deployment uses 9464. */
    metricsPort: z.int().min(0).max(65535).default(9464),
    /**
     * How often entries whose `symbols` are patterns or `all` re-read the exchange's markets:
     * new listings start, delisted markets stop with a gap record. 0: only at start.
     */
    marketsRecheckMs: z.int().min(0).default(MARKETS_RECHECK_DEFAULT_MS),
    /**
     * `tickflow gateway` runs V8 with --optimize-for-size: at 5,000 trades/s about half the RSS
     * for a few % of a core more (gateways/README.md, Memory). `tickflow start` ignores it.
     */
    optimizeForSize: z.boolean().default(true),
    wsFallback: z
      .strictObject({
        enabled: wsFallbackFields.enabled.default(WS_FALLBACK_DEFAULTS.enabled),
        afterFailures: wsFallbackFields.afterFailures.default(WS_FALLBACK_DEFAULTS.afterFailures),
        afterMs: wsFallbackFields.afterMs.default(WS_FALLBACK_DEFAULTS.afterMs),
        pollIntervalMs: wsFallbackFields.pollIntervalMs.default(WS_FALLBACK_DEFAULTS.pollIntervalMs),
        probeInitialMs: wsFallbackFields.probeInitialMs.default(WS_FALLBACK_DEFAULTS.probeInitialMs),
        probeMaxMs: wsFallbackFields.probeMaxMs.default(WS_FALLBACK_DEFAULTS.probeMaxMs),
      })
      .prefault({}),
  })
  .prefault({});

/** A cron expression with seconds (node-cron: `sec min hour day month weekday`). */
const cronSchedule = z
  .string()
  .min(1)
  .refine((s) => cron.validate(s), 'expected a cron expression with seconds, e.g. "*/10 * * * * *"');

/**
 * Per channel: `mode` ws (ccxt pro watch*) or poll (REST on `schedule`). A ws channel the
 * exchange cannot stream falls back to polling when it has a `schedule`; a poll channel without
 * one uses DEFAULT_POLL_SCHEDULES. `silenceTimeoutMs`: a ws stream without a message for this
 * long is treated as dropped (reconnect + gap); trades check REST first, so a quiet market is
 * not mistaken for a dead stream.
 */
const channelBase = (silenceTimeoutMs: number) => ({
  mode: z.enum(CHANNEL_MODES).default('ws'),
  schedule: cronSchedule.optional(),
  silenceTimeoutMs: z.int().min(1_000).default(silenceTimeoutMs),
});

/** Poll schedules used when a poll channel names none (cron with seconds). */
export const DEFAULT_POLL_SCHEDULES: Readonly<Record<Channel, string>> = {
  trades: '*/10 * * * * *',
  ticker: '*/10 * * * * *',
  ohlcv: '*/30 * * * * *',
  book: '*/10 * * * * *',
};

export const exchangeEntrySchema = z.strictObject({
  /** Any ccxt exchange id. */
  id: z.string().regex(/^[a-z0-9]+$/, 'expected a ccxt exchange id (lower-case letters and digits)'),
  /** A name for this entry when one exchange id appears twice (e.g. a testnet); defaults to id. */
  name: z.string().regex(/^[a-z0-9_-]+$/).optional(),
  enabled: z.boolean().default(true),
  /**
   * Unified symbols, patterns (`*` any run, `?` one character, neither crossing `/` or `:`:
   * `"*\/USDT"`, `"BTC/*"`, `"*\/USDT:USDT"`), or `all` (gateways/instruments.ts).
   */
  symbols: z.union(
    [z.literal('all'), z.array(z.string().regex(/^[^/\s]+\/[^/\s]+(:\S+)?$/, 'expected a ccxt unified symbol like BTC/USDT or a pattern like */USDT')).min(1)],
    { error: (iss) => (Array.isArray(iss.input) ? undefined : `"all" or a list of symbols and patterns; expected array, received ${typeof iss.input}`) },
  ),
  /** The market types patterns and `all` select from (active markets only). */
  marketTypes: z.array(z.enum(MARKET_TYPES)).min(1).default(['spot']),
  /** Overrides `gateway.marketsRecheckMs` for this entry. */
  marketsRecheckMs: z.int().min(0).optional(),
  /**
   * Carry many instruments per subscription with ccxt's multi-symbol watches where the exchange
   * has them (watchTradesForSymbols, watchTickers, watchOHLCVForSymbols, watchOrderBookForSymbols);
   * false: one ccxt watch per instrument and channel.
   */
  multiSymbol: z.boolean().default(true),
  /** Instruments per multi-symbol subscription (default per exchange: gateways/README.md). */
  symbolsPerSubscription: z.int().min(1).max(1000).optional(),
  channels: z
    .strictObject({
      trades: z.strictObject({ ...channelBase(60_000) }).optional(),
      ticker: z.strictObject({ ...channelBase(30_000) }).optional(),
      ohlcv: z.strictObject({ ...channelBase(60_000), timeframes: z.array(z.string().regex(parseTimeframe.regex, 'expected a ccxt timeframe like 1m, 4h, 1d, 1w or 1M')).min(1).default(['1m']) }).optional(),
      book: z.strictObject({ ...channelBase(30_000), depth: z.int().min(1).max(1000).default(10), intervalMs: z.int().min(10).default(1000) }).optional(),
    } satisfies Record<Channel, unknown>)
    .refine((c) => Object.keys(c).length > 0, 'expected at least one channel'),
  /** Candle history fetched on start, in minutes back from now. */
  backfillLookbackMinutes: z.int().min(0).default(24 * 60),
  /**
   * Records this entry may hold in memory while Kafka is unreachable; past it the oldest are
   * dropped and the loss is published as a `gap` record (channel `kafka`) once Kafka is back.
   */
  maxBufferedRecords: z.int().min(10).default(250_000),
  /** Overrides `gateway.wsFallback` key by key for this entry (e.g. `{ enabled: false }`). */
  wsFallback: wsFallbackSchema.optional(),
  /** Free-form ccxt constructor options: keys, urls overrides, proxies, rateLimit, options. */
  options: z.record(z.string(), z.unknown()).default({}),
});
export type ExchangeEntry = z.infer<typeof exchangeEntrySchema>;
export type GatewaySection = z.infer<typeof gatewaySchema>;
export type WsFallback = GatewaySection['wsFallback'];

export interface ExchangeEntryError {
  readonly index: number;
  readonly id: string | undefined;
  readonly message: string;
}

/** Validates the `exchanges` entries one by one: the good ones, and a line for each bad one. */
export function parseExchangeEntries(entries: readonly unknown[]): { exchanges: ExchangeEntry[]; exchangeErrors: ExchangeEntryError[] } {
  const exchanges: ExchangeEntry[] = [];
  const exchangeErrors: ExchangeEntryError[] = [];
  entries.forEach((entry, index) => {
    const r = exchangeEntrySchema.safeParse(entry);
    const id = typeof (entry as { id?: unknown } | null)?.id === 'string' ? (entry as { id: string }).id : undefined;
    if (r.success) exchanges.push(r.data);
    else exchangeErrors.push({ index, id, message: describeIssues(r.error, `exchanges[${index}]`).join('; ') });
  });
  return { exchanges, exchangeErrors };
}

/** The config as the gateway reads it. */
export type ConfigForGateway = SharedConfig & {
  readonly gateway: GatewaySection;
  readonly exchanges: readonly ExchangeEntry[];
  /** Entries that failed validation, reported at start-up by the gateway, skipped. */
  readonly exchangeErrors: readonly ExchangeEntryError[];
};
