/**
 * One exchange entry at work: builds its ccxt instance, validates the entry against what the
 * exchange lists and supports (each problem reported by name; a bad symbol or channel is
 * skipped, the rest runs), publishes the instruments, backfills candle history and runs one
 * loop per (symbol, channel) over websocket or a cron poll.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { DEFAULT_POLL_SCHEDULES, MARKETS_RECHECK_DEFAULT_MS, WS_FALLBACK_DEFAULTS, type Channel, type ExchangeEntry, type WsFallback } from './config.ts';
import { TickflowError, messageOf, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { RETRY, backoffDelay, sleep } from '../core/retry.ts';
import { CandleTracker, ExchangeClock } from './candles.ts';
import { CAPABILITY, createExchange, has, instrumentExchange, loadExchangeClass, overrideHosts, strayUrls, translateError, type Exchange } from './ccxt.ts';
import type { GatewayEvents, Problem } from './events.ts';
import { adapterFor, type ExchangeAdapter } from './exchanges/index.ts';
import { normalizeInstrument } from './normalize.ts';
import { startPoll, type PollPlan } from './poll.ts';
import type { WorkerContext } from './context.ts';
import { nowUs } from '../core/time.ts';
import type { Outbox } from './outbox.ts';
import type { Publisher } from './publisher.ts';
import { backfillHistory } from './recovery.ts';
import { bookChannel, ohlcvChannel, tickCandles, tickerChannel, tradesChannel } from './streams.ts';
import { runWatch, type ChannelHandler } from './watch.ts';
import { gapRecord } from './gaps.ts';
import { isDynamic, isPattern, ReconciledSet, resolveSymbols, type InstrumentSet, type RemovalReason } from './instruments.ts';
import { MULTI_CAPABILITY, Multiplexer } from './multiplex.ts';
import type { Market } from 'ccxt';
import { Watchdog } from './watchdog.ts';
import type { Positions } from './positions.ts';
import { msToUs } from '../core/time.ts';
import { TradeLedger } from './trades.ts';

let cronLoggerSet = false;
function routeCronLogs(log: Logger): void {
  if (cronLoggerSet) return;
  cronLoggerSet = true;
  cron.setLogger({
    info: (m) => log.debug({ part: 'cron' }, m),
    warn: (m) => log.warn({ part: 'cron' }, m),
    error: (m, err) => log.error({ part: 'cron', err }, String(m)),
    debug: (m) => log.debug({ part: 'cron' }, String(m)),
  });
}

export type WorkerStatus = 'starting' | 'running' | 'failed' | 'stopped';

export interface WorkerDeps {
  readonly publisher: Publisher;
  readonly events: GatewayEvents;
  readonly log: Logger;
  /** Builds the ccxt instance (tests may wrap it). */
  readonly createExchange?: (entry: ExchangeEntry, exchangeDefaults: Record<string, unknown>) => Exchange;
  /** Where the previous process stopped (read from Kafka at start, positions.ts); streams wait for it. */
  readonly positions?: Promise<Positions | undefined>;
  /** `gateway.wsFallback` (the entry's own `wsFallback` overrides it key by key). */
  readonly wsFallback?: WsFallback | undefined;
  /** `gateway.marketsRecheckMs` (the entry's own overrides it). */
  readonly marketsRecheckMs?: number | undefined;
  /**
   * Where the previous process stopped the streams of symbols `positions` was not read for
   * (patterns, new listings, instruments moved in): read when they start. Without it they start
   * as new.
   */
  readonly positionsFor?: (symbols: readonly string[]) => Promise<Positions | undefined>;
  /** The first instruments are running (after the start's positions were read). */
  readonly onRunning?: () => void;
}

/** The symbols of an entry whose positions the gateway reads at start (the literal ones). */
export function literalSymbols(entry: Pick<ExchangeEntry, 'symbols'>): string[] {
  return entry.symbols === 'all' ? [] : entry.symbols.filter((s) => !isPattern(s));
}

/** One running instrument: its streams' abort, loops and handlers. */
interface InstrumentRun {
  readonly abort: AbortController;
  readonly loops: Promise<void>[];
  readonly handlers: ChannelHandler<unknown>[];
}

/** The channels of an entry, as validation leaves them. */
export interface ChannelPlan {
  readonly channel: Channel;
  readonly mode: 'ws' | 'poll';
  readonly schedule: string;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function entryName(entry: Pick<ExchangeEntry, 'id' | 'name'>): string {
  return entry.name ?? entry.id;
}

export class ExchangeWorker {
  readonly entry: ExchangeEntry;
  readonly index: number;
  private readonly deps: WorkerDeps;
  status: WorkerStatus = 'starting';
  readonly name: string;
  readonly problems: Problem[] = [];
  /** The instruments running now (updated in place as the instrument set changes; poll tasks read it). */
  readonly symbols: string[] = [];
  channels: ChannelPlan[] = [];
  private timeframes: string[] = [];
  private ctx: WorkerContext | undefined;
  private readonly runs = new Map<string, InstrumentRun>();
  private readonly muxes = new Map<string, Multiplexer<unknown>>();
  private readonly set = new ReconciledSet({ start: (s) => this.startInstruments(s), stop: (s, why) => this.stopInstruments(s, why) });
  /** Where each instrument's previous run stopped (the positions read for it). */
  private readonly positionsOf = new Map<string, Positions | undefined>();
  private recheckTimer: NodeJS.Timeout | undefined;
  private ex: Exchange | undefined;
  private adapter: ExchangeAdapter;
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly tasks: ScheduledTask[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly outbox: Outbox;
  private readonly log: Logger;
  private readonly clock = new ExchangeClock();
  private readonly ledgers = new Map<string, TradeLedger>();
  private readonly trackers = new Map<string, CandleTracker>();
  private settle!: () => void;
  /** Resolves once the entry is validated and running, or failed, or waiting for the exchange to answer. */
  readonly settled: Promise<void> = new Promise((r) => (this.settle = r));

  constructor(entry: ExchangeEntry, index: number, deps: WorkerDeps) {
    this.entry = entry;
    this.index = index;
    this.deps = deps;
    this.name = entryName(entry);
    this.adapter = adapterFor(entry.id);
    this.outbox = deps.publisher.outbox(this.name, entry.maxBufferedRecords);
    this.log = deps.log.child({ exchange: this.name });
    routeCronLogs(deps.log);
  }

  private problem(severity: Problem['severity'], code: ErrorCode, message: string, extra: { symbol?: string; channel?: Channel } = {}): void {
    const p: Problem = { exchange: this.name, index: this.index, severity, code, message: `exchanges[${this.index}] (${this.name}): ${message}`, ...extra };
    this.problems.push(p);
    this.deps.events.emit('problem', p);
  }

  private fail(code: ErrorCode, message: string): void {
    this.problem('error', code, message);
    this.status = 'failed';
    this.settle();
  }

  /** Validates and starts; never throws: problems are reported through `problems` and events. */
  async start(): Promise<void> {
    try {
      await this.startInner();
    } catch (e) {
      if (!this.abort.signal.aborted) this.fail('INTERNAL', `could not start: ${messageOf(e)}`);
    } finally {
      this.settle();
    }
  }

  private async startInner(): Promise<void> {
    const entry = this.entry;
    try {
      // Only this entry's ccxt class is loaded (never all of ccxt: gateways/README.md, Memory).
      await loadExchangeClass(entry.id);
      this.ex = (this.deps.createExchange ?? createExchange)(entry, this.adapter.ccxtDefaults(entry.options));
    } catch (e) {
      this.fail(e instanceof TickflowError ? e.code : 'EXCHANGE_UNKNOWN', messageOf(e));
      return;
    }
    const ex = this.ex;
    this.watchUrls(ex);
    if (!(await this.loadMarkets(ex))) return;

    // Symbols the exchange lists (patterns and `all`: its active markets of the entry's types).
    const initial: string[] = [];
    for (const s of resolveSymbols(entry.symbols, ex.markets ?? {}, { types: entry.marketTypes })) {
      if (ex.markets?.[s]) initial.push(s);
      else this.problem('error', 'SYMBOL_UNKNOWN', `symbol ${s} is not listed by ${entry.id}${this.similarSymbols(ex, s)}`, { symbol: s });
    }
    if (entry.symbols !== 'all') {
      for (const p of entry.symbols.filter(isPattern)) {
        if (!initial.some((s) => patternMatches(p, s))) this.problem('warning', 'SYMBOL_UNKNOWN', `pattern ${p} matches no active ${entry.marketTypes.join('/')} market of ${entry.id} yet (re-checked every ${this.recheckMs() / 1000}s)`, { symbol: p });
      }
    }
    // Channels it supports, per mode.
    const isPro = typeof (ex as unknown as { watchTrades?: unknown }).watchTrades === 'function';
    for (const channel of Object.keys(entry.channels) as Channel[]) {
      const cfg = entry.channels[channel]!;
      const cap = CAPABILITY[channel];
      if (cfg.mode === 'ws') {
        if (isPro && has(ex, cap.ws)) this.channels.push({ channel, mode: 'ws', schedule: '' });
        else if (cfg.schedule && has(ex, cap.poll)) {
          this.problem('warning', 'CHANNEL_UNSUPPORTED', `channel ${channel}: ${entry.id} cannot stream it (no ${cap.ws}); polling ${cap.poll} on "${cfg.schedule}" instead`, { channel });
          this.channels.push({ channel, mode: 'poll', schedule: cfg.schedule });
        } else {
          this.problem('error', 'CHANNEL_UNSUPPORTED', `channel ${channel}: ${entry.id} cannot stream it over websocket (no ${cap.ws}); set mode: poll${has(ex, cap.poll) ? ', or a schedule to fall back to polling' : ''}`, { channel });
        }
      } else if (has(ex, cap.poll)) {
        this.channels.push({ channel, mode: 'poll', schedule: cfg.schedule ?? DEFAULT_POLL_SCHEDULES[channel] });
      } else {
        this.problem('error', 'CHANNEL_UNSUPPORTED', `channel ${channel}: ${entry.id} has no ${cap.poll} to poll`, { channel });
      }
    }
    const ohlcv = entry.channels.ohlcv;
    let timeframes = ohlcv?.timeframes ?? [];
    if (ohlcv && ex.timeframes && Object.keys(ex.timeframes).length > 0) {
      const offered = Object.keys(ex.timeframes);
      const bad = timeframes.filter((tf) => !offered.includes(tf));
      for (const tf of bad) this.problem('error', 'CHANNEL_UNSUPPORTED', `channel ohlcv: timeframe ${tf} is not offered by ${entry.id} (offers ${offered.join(', ')})`, { channel: 'ohlcv' });
      timeframes = timeframes.filter((tf) => offered.includes(tf));
      if (timeframes.length === 0) this.channels = this.channels.filter((c) => c.channel !== 'ohlcv');
    }
    for (const w of this.adapter.checkOptions(ex)) this.problem('warning', 'CONFIG_INVALID', w);
    if ((initial.length === 0 && !isDynamic(entry.symbols)) || this.channels.length === 0) {
      this.fail('CONFIG_INVALID', `nothing to run: ${initial.length === 0 ? 'no listed symbol' : 'no supported channel'} left`);
      return;
    }
    this.timeframes = timeframes;

    const ctx = this.context(ex);
    this.ctx = ctx;
    if (has(ex, 'fetchTime')) {
      try {
        const t0 = Date.now();
        const serverTime = await ex.fetchTime();
        if (typeof serverTime === 'number') this.clock.setOffset(serverTime, (t0 + Date.now()) / 2);
      } catch (e) {
        this.log.debug({ err: messageOf(e) }, 'fetchTime failed; the local clock stands in for the exchange clock');
      }
    }

    if (this.abort.signal.aborted) return; // closed while starting: start nothing
    this.status = 'running';
    this.symbols.push(...initial);
    this.deps.events.emit('exchange.ready', { exchange: this.name, symbols: [...this.symbols], channels: this.channels.map((c) => `${c.channel}:${c.mode}`) });
    this.settle();

    // Streams start from where the previous process stopped (read concurrently with loadMarkets).
    const positions = await this.deps.positions;
    if (this.abort.signal.aborted) return;
    // Only those it was read for (sharded: the ones this process owned then; the others read theirs when moved in).
    for (const s of literalSymbols(entry)) if (positions?.covers(this.name, s) ?? true) this.positionsOf.set(s, positions);
    await this.set.setResolved(initial);
    if (this.abort.signal.aborted) return;
    // Those not started (moved away by a shard change while the positions were read) read theirs
    // anew when they start: the startup's positions are stale by then and not a takeover's.
    for (const [s, p] of [...this.positionsOf]) if (p === positions && !this.runs.has(s)) this.positionsOf.delete(s);
    // A filter set meanwhile (shard ownership) may have left some of them out.
    for (const s of [...this.symbols]) if (!this.runs.has(s)) this.symbols.splice(this.symbols.indexOf(s), 1);
    this.deps.onRunning?.();
    for (const c of this.channels) {
      if (c.mode !== 'poll') continue;
      const pp: PollPlan = {
        channel: c.channel,
        schedule: c.schedule,
        symbols: this.symbols,
        ...(c.channel === 'ohlcv' ? { timeframes } : {}),
        ...(c.channel === 'book' ? { depth: entry.channels.book!.depth } : {}),
      };
      this.tasks.push(startPoll(ctx, pp));
    }
    const wsOhlcv = this.channels.some((c) => c.channel === 'ohlcv' && c.mode === 'ws');
    this.timer = setInterval(() => {
      ctx.watchdog.tick(Date.now());
      if (wsOhlcv) for (const s of this.symbols) for (const tf of timeframes) tickCandles(ctx, s, tf);
    }, 1_000);
    const recheckMs = this.recheckMs();
    if (isDynamic(entry.symbols) && recheckMs > 0) {
      this.recheckTimer = setInterval(() => void this.recheckMarkets(), recheckMs);
      this.recheckTimer.unref();
    }
  }

  /** The entry's instrument set (shard ownership narrows it with `setFilter`). */
  get instruments(): InstrumentSet {
    return this.set;
  }

  private recheckMs(): number {
    return this.entry.marketsRecheckMs ?? this.deps.marketsRecheckMs ?? MARKETS_RECHECK_DEFAULT_MS;
  }

  /**
   * Reads the markets again and brings the instruments to what the entry's patterns select now:
   * new listings start, markets no longer listed (or no longer active) stop with a gap record.
   * ccxt keeps knowing the delisted markets (its multi-symbol subscriptions still name them).
   */
  async recheckMarkets(): Promise<void> {
    const ex = this.ex;
    if (!ex || this.status !== 'running' || this.abort.signal.aborted) return;
    let fresh: Market[];
    try {
      fresh = ((await ex.fetchMarkets()) as (Market | undefined)[]).filter((m): m is Market => typeof m?.symbol === 'string');
    } catch (e) {
      this.log.warn({ err: translateError(e, 'fetchMarkets', ex).message }, 'markets re-check failed; trying again at the next one');
      return;
    }
    if (this.abort.signal.aborted) return;
    const bySymbol: Record<string, Market> = Object.fromEntries(fresh.map((m) => [m!.symbol, m]));
    const kept = (Object.values(ex.markets ?? {}) as (Market | undefined)[]).filter((m): m is Market => typeof m?.symbol === 'string' && !(m.symbol in bySymbol));
    ex.setMarkets([...fresh, ...kept]);
    const resolved = resolveSymbols(this.entry.symbols, bySymbol, { types: this.entry.marketTypes }).filter((s) => bySymbol[s] !== undefined);
    const before = new Set(this.set.resolvedSymbols());
    const listed = resolved.filter((s) => !before.has(s));
    const after = new Set(resolved);
    const gone = [...before].filter((s) => !after.has(s));
    this.deps.events.emit('instruments.changed', { exchange: this.name, listed, delisted: gone });
    await this.set.setResolved(resolved, 'delisted');
  }

  /** The multi-symbol subscriptions of a channel (and timeframe), where the exchange has them and the entry wants them. */
  private mux(ctx: WorkerContext, channel: Channel, timeframe?: string): Multiplexer<unknown> | undefined {
    const ex = ctx.ex;
    if (!this.multiSymbol(ex, channel)) return undefined;
    const key = `${channel}\u0000${timeframe ?? ''}`;
    let m = this.muxes.get(key);
    if (!m) {
      const size = this.adapter.symbolsPerSubscription(ex, channel) === 0 ? 0 : (this.entry.symbolsPerSubscription ?? this.adapter.symbolsPerSubscription(ex, channel));
      if (size === 0) return undefined;
      const params = this.adapter.multiSymbolParams(ex, channel);
      const book = this.entry.channels.book;
      m = (
        channel === 'trades' ? Multiplexer.trades(ctx, size, params)
        : channel === 'ticker' ? Multiplexer.ticker(ctx, size, params)
        : channel === 'book' ? Multiplexer.book(ctx, size, params, this.adapter.orderBookLimit(ex, book?.depth ?? 10))
        : Multiplexer.ohlcv(ctx, size, params, timeframe!)
      ) as Multiplexer<unknown>;
      this.muxes.set(key, m);
    }
    return m;
  }

  /** Whether a channel's instruments share multi-symbol subscriptions. */
  private multiSymbol(ex: Exchange, channel: Channel): boolean {
    return this.entry.multiSymbol && has(ex, MULTI_CAPABILITY[channel]) && this.adapter.symbolsPerSubscription(ex, channel) > 0;
  }

  /** Multi-symbol subscriptions running, per channel (and timeframe): `trades` → 3. */
  subscriptions(): Record<string, number> {
    return Object.fromEntries([...this.muxes].map(([k, m]) => [k.replace('\u0000', ' ').trim(), m.subscriptions]));
  }

  /** Starts the streams of instruments (InstrumentSet): instruments published, positions read, loops spawned. */
  private async startInstruments(symbols: readonly string[]): Promise<void> {
    const ctx = this.ctx;
    const ex = this.ex;
    if (!ctx || !ex || this.abort.signal.aborted) return;
    this.publishInstruments(ex, symbols);
    const t0 = Date.now();
    const unread = symbols.filter((s) => !this.positionsOf.has(s));
    let progress: StartProgress | undefined;
    if (unread.length > 0) {
      const p = this.deps.positionsFor ? await this.deps.positionsFor(unread).catch(() => undefined) : undefined;
      for (const s of unread) this.positionsOf.set(s, p);
      if (p?.takeover) progress = new StartProgress(this.log, `takeover of ${unread.length} instruments`, t0, new Set(unread));
    }
    progress?.stage(`positions read (${Date.now() - t0} ms)`);
    if (this.abort.signal.aborted) return;
    const entry = this.entry;
    const plan = new Map(this.channels.map((c) => [c.channel, c]));
    for (const symbol of symbols) {
      const run: InstrumentRun = { abort: new AbortController(), loops: [], handlers: [] };
      this.runs.set(symbol, run);
      const sctx: WorkerContext = { ...ctx, signal: AbortSignal.any([this.abort.signal, run.abort.signal]) };
      const spawn = (p: Promise<void>) => {
        const l = p.catch((e: unknown) => this.log.error({ err: e, symbol }, 'stream loop crashed'));
        run.loops.push(l);
        this.loops.push(l);
      };
      const watch = <M>(h: ChannelHandler<M>) => {
        run.handlers.push(h as ChannelHandler<unknown>);
        spawn(runWatch(sctx, h));
      };
      if (plan.get('trades')?.mode === 'ws') {
        const h = tradesChannel(sctx, symbol, entry.channels.trades!.silenceTimeoutMs, this.mux(ctx, 'trades')?.attach(symbol) as never);
        watch(progress?.has(symbol) ? progress.follow(symbol, h) : h);
      }
      if (plan.get('ticker')?.mode === 'ws') watch(tickerChannel(sctx, symbol, entry.channels.ticker!.silenceTimeoutMs, this.mux(ctx, 'ticker')?.attach(symbol) as never));
      if (plan.get('book')?.mode === 'ws') watch(bookChannel(sctx, symbol, entry.channels.book!, this.mux(ctx, 'book')?.attach(symbol) as never));
      if (plan.has('ohlcv')) {
        const ws = plan.get('ohlcv')!.mode === 'ws';
        for (const tf of this.timeframes) {
          spawn(
            (async () => {
              await backfillHistory(sctx, symbol, tf, entry.backfillLookbackMinutes);
              if (ws && !sctx.signal.aborted) {
                const h = ohlcvChannel(sctx, symbol, tf, entry.channels.ohlcv!.silenceTimeoutMs, this.mux(ctx, 'ohlcv', tf)?.attach(symbol) as never);
                run.handlers.push(h as ChannelHandler<unknown>);
                await runWatch(sctx, h);
              }
            })(),
          );
        }
      }
      if (!this.symbols.includes(symbol)) this.symbols.push(symbol);
    }
  }

  /**
   * Stops the streams of instruments. `delisted`: each stream ends with a gap record naming the
   * delisting (from its last record); `shard` and `closing`: none.
   */
  private async stopInstruments(symbols: readonly string[], why: RemovalReason): Promise<void> {
    const ex = this.ex;
    const waits: Promise<void>[] = [];
    for (const symbol of symbols) {
      const run = this.runs.get(symbol);
      this.runs.delete(symbol);
      const i = this.symbols.indexOf(symbol);
      if (i >= 0) this.symbols.splice(i, 1);
      if (!run) continue;
      run.abort.abort(new TickflowError('INTERNAL', `${symbol} stopped (${why})`));
      for (const m of this.muxes.values()) m.detach(symbol);
      // Back later (moved back in, relisted): it resumes from where Kafka says, not from this run's state.
      this.positionsOf.delete(symbol);
      if (ex && !this.abort.signal.aborted) this.unwatchOne(ex, symbol);
      waits.push(
        Promise.all(run.loops).then(() => {
          if (why === 'delisted') this.endDelisted(symbol, run);
          if (!this.runs.has(symbol)) {
            this.ledgers.delete(symbol);
            for (const tf of this.timeframes) this.trackers.delete(`${symbol}\u0000${tf}`);
          }
        }),
      );
    }
    await Promise.all(waits);
  }

  /** Each stream of a delisted instrument ends with a gap record naming the delisting (from its last record). */
  private endDelisted(symbol: string, run: InstrumentRun): void {
    const reason = `delisted: ${symbol} is no longer listed by ${this.entry.id} (markets re-check)`;
    const covered = new Set<string>();
    for (const h of run.handlers) {
      covered.add(`${h.ref.channel}\u0000${h.ref.timeframe ?? ''}`);
      h.gap.end(h.down(), reason);
    }
    // Polled channels and candles still backfilling: a gap record from the last trade, else from now.
    for (const c of this.channels) {
      for (const tf of c.channel === 'ohlcv' ? this.timeframes : [undefined]) {
        if (covered.has(`${c.channel}\u0000${tf ?? ''}`)) continue;
        const from = c.channel === 'trades' ? this.ledgers.get(symbol)?.lastTradeTsMs : undefined;
        this.outbox.add('gap', gapRecord({ exchange: this.name, symbol, channel: c.channel, fromUs: from !== undefined ? msToUs(from) : nowUs(), toUs: null, reason: `${tf ? `${c.channel} ${tf}` : c.channel}: ${reason}` }));
      }
    }
  }

  /** A per-symbol ccxt subscription of a stopped instrument: unwatched where ccxt can (else its caches keep filling). */
  private unwatchOne(ex: Exchange, symbol: string): void {
    const calls: [Channel, string, unknown[]][] = [
      ['trades', 'unWatchTrades', [symbol]],
      ['ticker', 'unWatchTicker', [symbol]],
      ['book', 'unWatchOrderBook', [symbol]],
      ...this.timeframes.map((tf): [Channel, string, unknown[]] => ['ohlcv', 'unWatchOHLCV', [symbol, tf]]),
    ];
    for (const [channel, fn, args] of calls) {
      const plan = this.channels.find((c) => c.channel === channel);
      if (plan?.mode !== 'ws' || this.multiSymbol(ex, channel) || !has(ex, fn)) continue;
      const f = (ex as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[fn];
      void Promise.resolve()
        .then(() => f!.apply(ex, args))
        .catch((e: unknown) => this.log.debug({ symbol, channel, err: messageOf(e) }, 'unwatch failed'));
    }
    // What ccxt already cached for it is not coming back to a loop.
    const trades = (ex.trades as Record<string, unknown[] | undefined> | undefined)?.[symbol];
    if (Array.isArray(trades)) trades.length = 0;
  }

  /**
   * Retries while the exchange is unreachable (reported once as a warning); false when it refuses.
   * ccxt (4.5) keeps the promise of the first `loadMarkets()` call, rejected or not, and hands it
   * back to every later call without sending a request: a retry must pass `reload` (which starts a
   * fresh load whenever none is in flight) or the exchange is never asked again.
   */
  private async loadMarkets(ex: Exchange): Promise<boolean> {
    for (let attempt = 1; !this.abort.signal.aborted; attempt++) {
      try {
        await ex.loadMarkets(attempt > 1);
        return true;
      } catch (e) {
        const err = translateError(e, 'loadMarkets', ex);
        if (!err.retriable) {
          this.fail(err.code, `cannot load markets: ${err.message}`);
          return false;
        }
        const delayMs = backoffDelay(attempt, RETRY.exchangeMarkets.initialDelayMs, RETRY.exchangeMarkets.maxDelayMs);
        if (attempt === 1) {
          this.problem('warning', 'EXCHANGE_NETWORK', `cannot load markets yet (${err.message}); retrying in the background`);
          this.settle();
        }
        this.log.warn({ attempt, delayMs, err: err.message }, 'loadMarkets failed, retrying');
        await sleep(delayMs, this.abort.signal).catch(() => undefined);
      }
    }
    return false;
  }

  /**
   * An entry that overrides ccxt's URLs (a proxy, a testnet, the sim) may still have ccxt call
   * the exchange's own hosts: ccxt's gemini fetches `urls.api.webExchange` for its currencies.
   * Every request's final URL (REST and websocket) is compared with the overrides' hosts; the
   * first to another host is a warning naming it (once per host). The URLs ccxt knows outside the
   * overrides are logged at start (info: most are for market types the entry does not use).
   */
  private watchUrls(ex: Exchange): void {
    const hosts = overrideHosts((this.entry.options as { urls?: unknown }).urls);
    const warned = new Set<string>();
    const checked = new Set<string>();
    instrumentExchange(ex, (url, kind) => {
      if (hosts.size === 0 || kind === 'ws' && checked.has(url)) return;
      if (kind === 'ws') checked.add(url);
      let host: string;
      try {
        host = new URL(url).host.toLowerCase();
      } catch {
        return;
      }
      if (hosts.has(host) || warned.has(host)) return;
      warned.add(host);
      this.problem('warning', 'CONFIG_INVALID', `${this.entry.id} sends ${kind === 'ws' ? 'a websocket connection' : 'a request'} to ${url}, outside the overridden urls (${[...hosts].join(', ')}); override that URL too (options.urls) or expect it to reach the real exchange`);
    });
    const stray = strayUrls(ex, hosts);
    if (stray.length > 0) this.log.info({ stray }, `ccxt's ${this.entry.id} knows ${stray.length} endpoint URL(s) outside the overridden urls; a call to one is reported: ${stray.join(', ')}`);
  }

  private similarSymbols(ex: Exchange, s: string): string {
    const base = s.split('/')[0]!;
    const near = Object.keys(ex.markets ?? {}).filter((m) => m.startsWith(`${base}/`)).slice(0, 5);
    return near.length ? ` (it lists ${near.join(', ')})` : '';
  }

  private publishInstruments(ex: Exchange, symbols: readonly string[]): void {
    const at = nowUs();
    const mode = Number((ex as unknown as { precisionMode?: number }).precisionMode ?? 4);
    for (const s of symbols) {
      const m = ex.markets?.[s];
      if (m) this.outbox.add('instrument', normalizeInstrument(this.name, m, mode, at));
    }
  }

  private context(ex: Exchange): WorkerContext {
    const monotonic = (symbol: string) => this.adapter.monotonicTradeIds(ex, symbol);
    return {
      name: this.name,
      entry: this.entry,
      ex,
      adapter: this.adapter,
      outbox: this.outbox,
      events: this.deps.events,
      log: this.log,
      clock: this.clock,
      signal: this.abort.signal,
      watchdog: new Watchdog(this.log),
      fallback: { ...WS_FALLBACK_DEFAULTS, ...this.deps.wsFallback, ...stripUndefined(this.entry.wsFallback ?? {}) },
      ledger: (symbol) => {
        let l = this.ledgers.get(symbol);
        if (!l) {
          this.ledgers.set(symbol, (l = new TradeLedger(monotonic(symbol))));
          const p = this.positionsOf.get(symbol)?.get({ exchange: this.name, channel: 'trades', symbol });
          if (p?.id !== undefined) l.resume(p.id, p.tsUs / 1000);
        }
        return l;
      },
      stoppedAt: (ref) => this.positionsOf.get(ref.symbol)?.resumeFrom(ref),
      tracker: (symbol, timeframe) => {
        const k = `${symbol}\u0000${timeframe}`;
        let t = this.trackers.get(k);
        if (!t) this.trackers.set(k, (t = new CandleTracker(timeframe)));
        return t;
      },
    };
  }

  async close(): Promise<void> {
    if (this.status === 'stopped') return;
    this.abort.abort(new TickflowError('INTERNAL', 'gateway closing'));
    // A takeover's gap not recovered yet is stated now, while the publisher still sends (the
    // loops' own statement may come after it closed when they are slow to end).
    for (const run of this.runs.values()) for (const h of run.handlers) h.gap.stateQuiet();
    if (this.timer) clearInterval(this.timer);
    if (this.recheckTimer) clearInterval(this.recheckTimer);
    for (const t of this.tasks) await t.destroy();
    if (this.ex) await this.ex.close().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.loops, ...[...this.muxes.values()].map((m) => m.close())]), new Promise((r) => (timer = setTimeout(r, 5_000)))]);
    clearTimeout(timer);
    this.status = 'stopped';
    this.settle();
  }
}

/**
 * How far a batch of instruments started together (a shard takeover) got: logged per stage
 * (positions read, every trade stream's first message, every trade stream resumed: its restart
 * refill done), with the time since the batch started. For finding where a takeover's time goes.
 */
class StartProgress {
  private readonly live = new Set<string>();
  private readonly resumed = new Set<string>();
  private readonly log: Logger;
  private readonly what: string;
  private readonly t0: number;
  private readonly symbols: ReadonlySet<string>;

  constructor(log: Logger, what: string, t0: number, symbols: ReadonlySet<string>) {
    this.log = log;
    this.what = what;
    this.t0 = t0;
    this.symbols = symbols;
  }

  has(symbol: string): boolean {
    return this.symbols.has(symbol);
  }

  stage(msg: string): void {
    this.log.info({ ms: Date.now() - this.t0, instruments: this.symbols.size }, `${this.what}: ${msg} +${Date.now() - this.t0} ms`);
  }

  /** The trades handler of `symbol`, reporting its first message and its first resumption. */
  follow<M>(symbol: string, h: ChannelHandler<M>): ChannelHandler<M> {
    const mark = (set: Set<string>, label: string) => {
      if (set.has(symbol)) return;
      set.add(symbol);
      const n = set.size;
      if (n === 1 || n === this.symbols.size || n % 100 === 0) this.stage(`${n} of ${this.symbols.size} trade streams ${label}`);
    };
    return {
      ...h,
      receive: async (m, at, via) => {
        mark(this.live, 'got their first message');
        const r = await h.receive(m, at, via);
        if (r !== 'closing') mark(this.resumed, 'resumed (refill done)');
        return r;
      },
    };
  }
}

function patternMatches(pattern: string, symbol: string): boolean {
  return resolveSymbols([pattern], { [symbol]: { symbol, type: 'spot' } as Market }, { types: ['spot', 'swap', 'future', 'option', 'margin'] }).length > 0;
}
