/**
 * gateways/: config-driven ccxt workers that put normalized trades, tickers, candles, book tops,
 * instruments and gap records into Kafka as Avro.
 *
 *   buildGateway(config) ── one Publisher (outbox per entry → batched idempotent producer)
 *                        ├─ where the last process stopped, read from the topics (positions.ts)
 *                        └─ one ExchangeWorker per exchange entry (worker.ts)
 *                              ├─ validation: ccxt id, listed symbols, supported channels
 *                              ├─ instruments, candle history (history.ts)
 *                              ├─ one watch loop per (symbol, channel) (watch.ts): channel handlers
 *                              │  (streams.ts), gaps (gaps.ts), silence (watchdog.ts), REST refills (recovery.ts)
 *                              └─ cron polls (poll.ts)
 *
 * Exchange-specific behaviour lives in exchanges/<ccxt id>.ts; ccxt → records in normalize.ts;
 * `closed` for candles in candles.ts; metrics and logs from one event map (events.ts,
 * telemetry.ts).
 */
import { createCodec } from '../core/avro.ts';
import { logger, type Logger } from '../core/log.ts';
import { guardCcxtSendAfterClose, type Exchange } from './ccxt.ts';
import { GatewayEvents, type Problem } from './events.ts';
import { attachTelemetry } from './telemetry.ts';
import { readPositions, readPositionsOffThread, type Positions } from './positions.ts';
import { kafkaTransport, Publisher, type Transport } from './publisher.ts';
import { entryName, ExchangeWorker, literalSymbols, type WorkerStatus } from './worker.ts';
import type { InstrumentSet } from './instruments.ts';
import type { Channel, ConfigForGateway, ExchangeEntry } from './config.ts';
import { messageOf } from '../core/errors.ts';
import { RETRY, retry } from '../core/retry.ts';
import { buildShard, GroupShard, type Shard, type ShardSpec } from './shard.ts';

export { GatewayEvents, type Problem } from './events.ts';

/**
 * A shard group's takeover: a stream the positions scan did not find resumes from the oldest
 * record the scan read (Kafka holds nothing of it since), at most this long ago.
 */
const TAKEOVER_UNSEEN_MS = 10 * 60_000;

export interface GatewayDeps {
  /** Brokers to use instead of config.kafka.brokers (e.g. the local broker the CLI found). */
  readonly brokers?: readonly string[];
  /** Replaces Kafka altogether (unit tests). */
  readonly transport?: Transport;
  readonly events?: GatewayEvents;
  /** Run only the entries with these names (`name`, else id); several processes can split the exchanges. */
  readonly only?: readonly string[];
  readonly lingerMs?: number;
  readonly batchMaxRecords?: number;
  /** How long close() keeps sending what is buffered. */
  readonly flushTimeoutMs?: number;
  readonly createExchange?: (entry: ExchangeEntry, exchangeDefaults: Record<string, unknown>) => Exchange;
  readonly log?: Logger;
  /** Metrics and logs from the events (default true). */
  readonly telemetry?: boolean;
  /** Problems as log lines (default true); false where the caller prints them itself (the CLI's console). */
  readonly logProblems?: boolean;
  /**
   * Resume each stream where the previous process stopped, read from the tail of the topics at
   * start (positions.ts). Default: true with Kafka, false with a `transport`.
   */
  readonly resume?: boolean;
  /** Instead of `gateway.shard` (the CLI's `--shard i/n`, `--shard-group g`); null: unsharded. */
  readonly shard?: ShardSpec | null;
}

export interface WorkerSummary {
  readonly name: string;
  readonly status: WorkerStatus;
  readonly symbols: readonly string[];
  readonly channels: readonly string[];
}

export interface GatewayReport {
  /** Every problem found at start-up, by entry name; errors stop what they name, warnings do not. */
  readonly problems: readonly Problem[];
  readonly workers: readonly WorkerSummary[];
}

export interface Gateway {
  readonly events: GatewayEvents;
  readonly publisher: Publisher;
  /** The shard this process serves when sharded (gateways/shard.ts). */
  readonly shard: Shard | undefined;
  /** Starts every entry; resolves once each is validated (and running) or reported. */
  start(): Promise<GatewayReport>;
  /** Stops the streams, sends what is buffered (up to flushTimeoutMs), disconnects. */
  close(): Promise<void>;
  report(): GatewayReport;
  /** Each entry's instrument set, by entry name (shard ownership filters them; set before start, it applies from the first). */
  instrumentSets(): Map<string, InstrumentSet>;
  /** The workers (tests and benchmarks read their subscriptions). */
  readonly workers: readonly ExchangeWorker[];
}

export function buildGateway(config: ConfigForGateway, deps: GatewayDeps = {}): Gateway {
  const log = deps.log ?? logger('gateway');
  const events = deps.events ?? new GatewayEvents();
  const detach = deps.telemetry === false ? () => undefined : attachTelemetry(events, log, { logProblems: deps.logProblems ?? true });
  const brokers = deps.brokers ?? config.kafka.brokers;
  const codec = createCodec(config.kafka);
  const transport = deps.transport ?? kafkaTransport({ ...config.kafka, brokers }, codec);
  const publisher = new Publisher({
    topicPrefix: config.kafka.topicPrefix,
    codec,
    transport,
    events,
    ...(deps.lingerMs !== undefined ? { lingerMs: deps.lingerMs } : {}),
    ...(deps.batchMaxRecords !== undefined ? { batchMaxRecords: deps.batchMaxRecords } : {}),
  });

  const problems: Problem[] = [];
  const report = (p: Problem) => {
    problems.push(p);
    events.emit('problem', p);
  };
  const only = deps.only ? new Set(deps.only) : undefined;

  // Entries that failed schema validation, by the name the user gave them.
  for (const e of config.exchangeErrors) {
    if (only && !(e.id && only.has(e.id))) continue;
    report({ exchange: e.id ?? `exchanges[${e.index}]`, index: e.index, severity: 'error', code: 'CONFIG_INVALID', message: `${e.message} (entry skipped)` });
  }
  // The position of each valid entry in the file (bad ones were taken out of config.exchanges).
  const bad = new Set(config.exchangeErrors.map((e) => e.index));
  const positions: number[] = [];
  for (let i = 0; positions.length < config.exchanges.length; i++) if (!bad.has(i)) positions.push(i);

  const shard = buildShard(deps.shard !== undefined ? deps.shard : config.gateway?.shard, { ...config.kafka, brokers }, log);
  const closing = new AbortController();
  const doResume = deps.resume ?? !deps.transport;
  /** Where the streams of these instruments stopped, per entry (a shard group's takeovers say so). */
  const readWanted = (wanted: Parameters<typeof readPositions>[2], offThread = false) =>
    (offThread ? readPositionsOffThread : readPositions)({ ...config.kafka, brokers }, codec, wanted, { log, ...(shard instanceof GroupShard ? { unseenSince: TAKEOVER_UNSEEN_MS } : {}) }).then((p) => {
      if (shard instanceof GroupShard) p.takeover = { by: shard.label, quietMs: shard.handoverGapMs };
      return p;
    });
  let positionsRead!: (p: Positions | undefined) => void;
  const resumeFrom = new Promise<Positions | undefined>((r) => (positionsRead = r));
  const workers: ExchangeWorker[] = [];
  const seen = new Map<string, number>();
  config.exchanges.forEach((entry, k) => {
    const name = entryName(entry);
    const index = positions[k]!;
    if (only && !only.has(name)) return;
    if (!entry.enabled) {
      log.info({ exchange: name }, 'exchange entry disabled in config');
      return;
    }
    const prev = seen.get(name);
    if (prev !== undefined) {
      report({ exchange: name, index, severity: 'error', code: 'CONFIG_INVALID', message: `exchanges[${index}] (${name}): the name ${name} is already used by exchanges[${prev}]; give one of them a distinct \`name\` (entry skipped)` });
      return;
    }
    seen.set(name, index);
    // Instruments started after the first read (patterns, listings, moved in) read their own.
    const positionsFor = (symbols: readonly string[]) =>
      !doResume
        ? Promise.resolve(undefined)
        : // A shard group's takeovers scan in a worker thread (the process is busy serving the rest).
          retry(() => readWanted([{ exchange: name, symbols, channels: Object.keys(entry.channels) as Channel[], timeframes: entry.channels.ohlcv?.timeframes ?? [] }], shard instanceof GroupShard), {
            ...RETRY.kafkaPositions,
            signal: closing.signal,
          });
    workers.push(
      new ExchangeWorker(entry, index, {
        publisher,
        events,
        log,
        positions: resumeFrom,
        positionsFor,
        wsFallback: config.gateway?.wsFallback,
        marketsRecheckMs: config.gateway?.marketsRecheckMs,
        onRunning: () => onRunning(name),
        ...(deps.createExchange ? { createExchange: deps.createExchange } : {}),
      }),
    );
  });

  const snapshot = (): GatewayReport => ({
    problems: [...problems, ...workers.flatMap((w) => w.problems)],
    workers: workers.map((w) => ({ name: w.name, status: w.status, symbols: [...w.symbols], channels: w.channels.map((c) => `${c.channel}:${c.mode}`) })),
  });

  let started = false;
  let closed = false;

  /** One line per change of what an entry serves here (the shard tests lay these side by side). */
  const logServing = (w: ExchangeWorker) => {
    const now = w.instruments.current();
    if (shard) log.info({ exchange: w.name, symbols: now }, `shard ${shard.label}: ${w.name} serves ${now.length} instruments: ${now.join(', ')}`);
  };
  const onRunning = (name: string) => {
    const w = workers.find((x) => x.name === name);
    if (w && !closed) logServing(w);
  };
  /**
   * Each entry's instruments narrowed to the shard's (gateways/instruments.ts setFilter): on a
   * move, instruments moved away stop without a gap record, moved-in ones start from where their
   * streams stopped in Kafka (read now, after the handover wait: the previous owner's last records)
   * and state only what they could not recover.
   */
  const applyShard = (w: ExchangeWorker): Promise<void> =>
    w.instruments.setFilter((symbol) => shard!.owns(w.name, symbol), 'shard').then(
      () => {
        if (w.status === 'running' && !closed) logServing(w);
      },
      (e: unknown) => log.error({ exchange: w.name, err: messageOf(e) }, 'shard: moving instruments failed'),
    );

  return {
    events,
    publisher,
    shard,
    report: snapshot,
    workers,
    // Every entry's, started or not: a filter set before an entry runs applies to its first start.
    instrumentSets: () => new Map(workers.map((w) => [w.name, w.instruments])),
    async start() {
      if (started) return snapshot();
      started = true;
      guardCcxtSendAfterClose((e) => log.debug({ err: e.message }, 'ccxt sent a subscription on a closed websocket (its watch already failed)'));
      // With a schema registry nothing can be encoded before the schemas are registered: wait
      // for it (each try logged with its URL); a refusal (wrong URL path, incompatible schema)
      // rejects start() with one line.
      if (workers.length > 0) {
        try {
          await codec.prepareWaiting({ log, who: 'the gateway', signal: closing.signal });
        } catch (e) {
          if (closed) return snapshot();
          throw e;
        }
      }
      publisher.start();
      // Sharded: which instruments are this process's first (a group member's once the group
      // answered and the previous owners' last records are in Kafka, so the positions are theirs).
      if (shard) {
        await shard.start();
        if (closed) return snapshot();
        for (const w of workers) await applyShard(w);
        shard.events.on('change', () => {
          if (!closed) for (const w of workers) void applyShard(w);
        });
      }
      if (doResume) {
        const wanted = workers.map((w) => ({
          exchange: w.name,
          symbols: shard ? literalSymbols(w.entry).filter((s) => shard.owns(w.name, s)) : literalSymbols(w.entry),
          channels: Object.keys(w.entry.channels) as Channel[],
          timeframes: w.entry.channels.ohlcv?.timeframes ?? [],
        }));
        // The streams wait for their positions: while Kafka cannot be read nothing could be
        // delivered anyway, and once it can, the refill covers the wait (from the gateway's
        // start for a stream Kafka knows nothing of: a first start included).
        const startedAtMs = Date.now();
        let waited = false;
        retry(() => readWanted(wanted), {
          // Short cap: the streams start within ~2 s of Kafka answering.
          ...RETRY.kafkaPositions,
          signal: closing.signal,
          onRetry: (e, attempt, delayMs) => {
            waited = true;
            log[attempt <= 1 || attempt % 15 === 0 ? 'warn' : 'debug']({ brokers, attempt, delayMs, err: messageOf(e) }, `cannot read where the previous run stopped from Kafka (${brokers.join(', ')}) yet; the streams wait for it`);
          },
        }).then((p) => {
          if (waited) p.waitedSinceMs = startedAtMs;
          positionsRead(p);
        }, (e: unknown) => {
          if (!closing.signal.aborted) log.error({ err: messageOf(e) }, 'could not read where the previous run stopped from Kafka; streams start as new (the downtime has no gap record)');
          positionsRead(undefined);
        });
      } else positionsRead(undefined);
      for (const w of workers) void w.start();
      await Promise.all(workers.map((w) => w.settled));
      return snapshot();
    },
    async close() {
      if (closed) return;
      closed = true;
      closing.abort();
      // Leave the shard group first: the others take the instruments over while these streams stop.
      await shard?.close();
      await Promise.all(workers.map((w) => w.close()));
      const undelivered = await publisher.close(deps.flushTimeoutMs ?? 10_000);
      if (undelivered > 0) log.error({ undelivered }, `closing with ${undelivered} records Kafka did not take (unreachable); they are lost`);
      detach();
    },
  };
}
