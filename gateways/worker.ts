/**
 * One exchange entry at work: builds its ccxt instance, validates the entry against what the
 * exchange lists and supports (each problem reported by name; a bad symbol or channel is
 * skipped, the rest runs), publishes the instruments, backfills candle history and runs one
 * loop per (symbol, channel) over websocket or a cron poll.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { DEFAULT_POLL_SCHEDULES, WS_FALLBACK_DEFAULTS, type Channel, type ExchangeEntry, type WsFallback } from './config.ts';
import { TickflowError, messageOf, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { RETRY, backoffDelay, sleep } from '../core/retry.ts';
import { CandleTracker, ExchangeClock } from './candles.ts';
import { CAPABILITY, createExchange, has, instrumentExchange, overrideHosts, strayUrls, translateError, type Exchange } from './ccxt.ts';
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
import { runWatch } from './watch.ts';
import { Watchdog } from './watchdog.ts';
import type { Positions } from './positions.ts';
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
  status: WorkerStatus = 'starting';
  readonly name: string;
  readonly problems: Problem[] = [];
  symbols: string[] = [];
  channels: ChannelPlan[] = [];
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
  private positions: Positions | undefined;
  private settle!: () => void;
  /** Resolves once the entry is validated and running, or failed, or waiting for the exchange to answer. */
  readonly settled: Promise<void> = new Promise((r) => (this.settle = r));

  constructor(
    readonly entry: ExchangeEntry,
    readonly index: number,
    private readonly deps: WorkerDeps,
  ) {
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
      this.ex = (this.deps.createExchange ?? createExchange)(entry, this.adapter.ccxtDefaults(entry.options));
    } catch (e) {
      this.fail(e instanceof TickflowError ? e.code : 'EXCHANGE_UNKNOWN', messageOf(e));
      return;
    }
    const ex = this.ex;
    this.watchUrls(ex);
    if (!(await this.loadMarkets(ex))) return;

    // Symbols the exchange lists.
    for (const s of entry.symbols) {
      if (ex.markets?.[s]) this.symbols.push(s);
      else this.problem('error', 'SYMBOL_UNKNOWN', `symbol ${s} is not listed by ${entry.id}${this.similarSymbols(ex, s)}`, { symbol: s });
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
    if (this.symbols.length === 0 || this.channels.length === 0) {
      this.fail('CONFIG_INVALID', `nothing to run: ${this.symbols.length === 0 ? 'no listed symbol' : 'no supported channel'} left`);
      return;
    }

    const ctx = this.context(ex);
    this.publishInstruments(ex);
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
    this.deps.events.emit('exchange.ready', { exchange: this.name, symbols: this.symbols, channels: this.channels.map((c) => `${c.channel}:${c.mode}`) });
    this.settle();

    // Streams start from where the previous process stopped (read concurrently with loadMarkets).
    this.positions = await this.deps.positions;
    if (this.abort.signal.aborted) return;
    const plan = new Map(this.channels.map((c) => [c.channel, c]));
    const spawn = (p: Promise<void>) =>
      this.loops.push(p.catch((e: unknown) => this.log.error({ err: e }, 'stream loop crashed')));
    for (const symbol of this.symbols) {
      if (plan.get('trades')?.mode === 'ws') spawn(runWatch(ctx, tradesChannel(ctx, symbol, entry.channels.trades!.silenceTimeoutMs)));
      if (plan.get('ticker')?.mode === 'ws') spawn(runWatch(ctx, tickerChannel(ctx, symbol, entry.channels.ticker!.silenceTimeoutMs)));
      if (plan.get('book')?.mode === 'ws') spawn(runWatch(ctx, bookChannel(ctx, symbol, entry.channels.book!)));
      if (plan.has('ohlcv')) {
        for (const tf of timeframes) {
          const ws = plan.get('ohlcv')!.mode === 'ws';
          spawn(
            (async () => {
              await backfillHistory(ctx, symbol, tf, entry.backfillLookbackMinutes);
              if (ws && !this.abort.signal.aborted) await runWatch(ctx, ohlcvChannel(ctx, symbol, tf, ohlcv!.silenceTimeoutMs));
            })(),
          );
        }
      }
    }
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
    const wsOhlcv = plan.get('ohlcv')?.mode === 'ws';
    this.timer = setInterval(() => {
      ctx.watchdog.tick(Date.now());
      if (wsOhlcv) for (const s of this.symbols) for (const tf of timeframes) tickCandles(ctx, s, tf);
    }, 1_000);
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

  private publishInstruments(ex: Exchange): void {
    const at = nowUs();
    const mode = Number((ex as unknown as { precisionMode?: number }).precisionMode ?? 4);
    for (const s of this.symbols) this.outbox.add('instrument', normalizeInstrument(this.name, ex.markets![s]!, mode, at));
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
          const p = this.positions?.get({ exchange: this.name, channel: 'trades', symbol });
          if (p?.id !== undefined) l.resume(p.id, p.tsUs / 1000);
        }
        return l;
      },
      stoppedAt: (ref) => this.positions?.resumeFrom(ref),
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
    if (this.timer) clearInterval(this.timer);
    for (const t of this.tasks) await t.destroy();
    if (this.ex) await this.ex.close().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.loops), new Promise((r) => (timer = setTimeout(r, 5_000)))]);
    clearTimeout(timer);
    this.status = 'stopped';
    this.settle();
  }
}
