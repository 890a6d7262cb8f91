/**
 * Fault controls shared by every dialect: refuse REST or websocket upgrades with a status, pause a
 * channel's streams, rate-limit REST. Each applies to every dialect, or to the one it names. The
 * state lives here; each dialect answers in its own exchange's format (see Dialect.refusal).
 * `parseFault` reads the JSON body of `POST /__sim/faults` (see control.ts).
 */
import { TickflowError } from '../core/errors.ts';

export const STREAM_CHANNELS = ['trades', 'kline', 'ticker', 'depth'] as const;
export type StreamChannel = (typeof STREAM_CHANNELS)[number];
export type PauseTarget = StreamChannel | 'all';

/** One fault, as the control endpoint takes it. `dialect` unset = every dialect; `ms` in real time. */
export type SimFault =
  /** Closes every websocket now: abrupt = TCP reset (clients see 1006), clean = close 1001. */
  | { readonly kind: 'drop'; readonly how?: 'abrupt' | 'clean'; readonly dialect?: string }
  /** Drops the sockets carrying the channel and refuses them ('all': every upgrade, 503) for ms. */
  | { readonly kind: 'pause'; readonly channel: PauseTarget; readonly ms: number; readonly dialect?: string }
  /** REST (default) or websocket upgrades answer `status` for ms (REST: 503 default; ws: 403 default). */
  | { readonly kind: 'refuse'; readonly target?: 'rest' | 'ws'; readonly ms: number; readonly status?: number; readonly dialect?: string }
  /** REST answers the exchange's rate-limit error beyond `requestsPerSecond` (per dialect) for ms. */
  | { readonly kind: 'rateLimit'; readonly requestsPerSecond: number; readonly ms: number; readonly dialect?: string }
  /**
   * REST behaves like some real exchanges for ms: `ignoreSince` = the trades endpoints ignore
   * since/fromId/startTime and answer only the latest `latest` trades (Coinbase Exchange, Bybit);
   * `tickerWithoutTime` = tickers carry no exchange time (Kraken, Bybit). Binance dialect so far.
   */
  | { readonly kind: 'quirk'; readonly quirk: RestQuirk; readonly latest?: number; readonly ms: number; readonly dialect?: string }
  /**
   * The websocket refuses every subscribe request naming one of `symbols` (unified, `BTC/USDT`) for
   * ms, the whole request, in the venue's own words: what a venue answers for a symbol it lists
   * over REST but will not stream (halted, settling, about to be delisted). Binance
   * `{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":N}`, Bybit `{"success":false,
   * "ret_msg":"error:handler not found,topic:..."}`, OKX error 60018 for that arg (OKX answers per
   * arg; ccxt fails every watch of the connection with it, the request names no id).
   */
  | { readonly kind: 'refuseSubscribe'; readonly symbols: readonly string[]; readonly ms: number; readonly dialect?: string }
  /** Mean trades per second per symbol from now on (the engine's, so every dialect). */
  | { readonly kind: 'tradeRate'; readonly perSecond: number }
  /** Ends every refusal, pause, rate limit and quirk now. */
  | { readonly kind: 'clear' };

export const FAULT_KINDS = ['drop', 'pause', 'refuse', 'refuseSubscribe', 'rateLimit', 'quirk', 'tradeRate', 'clear'] as const;
export const REST_QUIRKS = ['ignoreSince', 'tickerWithoutTime'] as const;
export type RestQuirk = (typeof REST_QUIRKS)[number];

/** What a dialect must answer instead of serving a REST request. */
export interface RestRefusal {
  readonly status: number;
  readonly retryAfterS: number;
  /** True when it is the rate limit (the exchange's own "too many requests" answer). */
  readonly rateLimited: boolean;
}

const ALL = '*';

interface Window {
  until: number;
  status: number;
}

interface Limit {
  until: number;
  perSecond: number;
  second: number;
  count: number;
}

export class Faults {
  private readonly clock: () => number;
  private readonly restRefusals = new Map<string, Window>();
  private readonly wsRefusals = new Map<string, Window>();
  /** key: `${dialect}|${target}` */
  private readonly paused = new Map<string, number>();
  private readonly limits = new Map<string, Limit>();
  /** key: `${dialect}|${quirk}` */
  private readonly quirks = new Map<string, { until: number; latest: number }>();
  /** key: `${dialect}|${symbol}` -> until */
  private readonly refusedSubscriptions = new Map<string, number>();

  constructor(clock: () => number = Date.now) {
    this.clock = clock;
  }

  refuse(target: 'rest' | 'ws', ms: number, status: number, dialect = ALL): void {
    (target === 'rest' ? this.restRefusals : this.wsRefusals).set(dialect, { until: this.clock() + ms, status });
  }

  pause(target: PauseTarget, ms: number, dialect = ALL): void {
    const key = `${dialect}|${target}`;
    this.paused.set(key, Math.max(this.clock() + ms, this.paused.get(key) ?? 0));
  }

  rateLimit(perSecond: number, ms: number, dialect = ALL): void {
    this.limits.set(dialect, { until: this.clock() + ms, perSecond, second: 0, count: 0 });
  }

  refuseSubscribe(symbols: readonly string[], ms: number, dialect = ALL): void {
    for (const s of symbols) this.refusedSubscriptions.set(`${dialect}|${s}`, this.clock() + ms);
  }

  /** Whether `dialect`'s websocket refuses a subscribe request naming `symbol` (unified). */
  refusesSubscription(dialect: string, symbol: string): boolean {
    if (this.refusedSubscriptions.size === 0) return false;
    const now = this.clock();
    for (const key of [`${dialect}|${symbol}`, `${ALL}|${symbol}`]) {
      const until = this.refusedSubscriptions.get(key);
      if (until === undefined) continue;
      if (now < until) return true;
      this.refusedSubscriptions.delete(key);
    }
    return false;
  }

  quirk(quirk: RestQuirk, ms: number, latest = 10, dialect = ALL): void {
    this.quirks.set(`${dialect}|${quirk}`, { until: this.clock() + ms, latest });
  }

  /** With `ignoreSince` active: how many of the latest trades the trades endpoints answer. */
  ignoresSince(dialect: string): number | undefined {
    return this.activeQuirk(dialect, 'ignoreSince')?.latest;
  }

  tickerWithoutTime(dialect: string): boolean {
    return this.activeQuirk(dialect, 'tickerWithoutTime') !== undefined;
  }

  private activeQuirk(dialect: string, quirk: RestQuirk): { latest: number } | undefined {
    const now = this.clock();
    for (const key of [`${dialect}|${quirk}`, `${ALL}|${quirk}`]) {
      const q = this.quirks.get(key);
      if (!q) continue;
      if (now < q.until) return q;
      this.quirks.delete(key);
    }
    return undefined;
  }

  clear(): void {
    this.quirks.clear();
    this.refusedSubscriptions.clear();
    this.restRefusals.clear();
    this.wsRefusals.clear();
    this.paused.clear();
    this.limits.clear();
  }

  /** Counts one REST request of `dialect`; what to answer instead of serving it, if anything. */
  restVerdict(dialect: string): RestRefusal | undefined {
    const now = this.clock();
    const w = this.active(this.restRefusals, dialect, now);
    if (w) return { status: w.status, retryAfterS: Math.max(1, Math.ceil((w.until - now) / 1000)), rateLimited: w.status === 429 || w.status === 418 };
    for (const key of [dialect, ALL]) {
      const l = this.limits.get(key);
      if (!l) continue;
      if (now >= l.until) {
        this.limits.delete(key);
        continue;
      }
      const second = Math.floor(now / 1000);
      if (second !== l.second) {
        l.second = second;
        l.count = 0;
      }
      l.count++;
      if (l.count > l.perSecond) return { status: 429, retryAfterS: 1, rateLimited: true };
    }
    return undefined;
  }

  /** The status a websocket upgrade of `dialect` is refused with, if it is. */
  wsVerdict(dialect: string): number | undefined {
    const w = this.active(this.wsRefusals, dialect, this.clock());
    if (w) return w.status;
    return this.isPaused(dialect, 'all') ? 503 : undefined;
  }

  isPaused(dialect: string, target: PauseTarget): boolean {
    const now = this.clock();
    for (const key of [`${dialect}|${target}`, `${ALL}|${target}`]) {
      const until = this.paused.get(key);
      if (until === undefined) continue;
      if (now < until) return true;
      this.paused.delete(key);
    }
    return false;
  }

  private active(m: Map<string, Window>, dialect: string, now: number): Window | undefined {
    for (const key of [dialect, ALL]) {
      const w = m.get(key);
      if (!w) continue;
      if (now < w.until) return w;
      m.delete(key);
    }
    return undefined;
  }
}

function bad(msg: string): TickflowError {
  return new TickflowError('CONFIG_INVALID', `sim fault: ${msg}`);
}

/** Checks a fault read from JSON (the control endpoint); throws CONFIG_INVALID naming what is wrong. */
export function parseFault(x: unknown): SimFault {
  if (x === null || typeof x !== 'object') throw bad('expected a JSON object with "kind"');
  const f = x as Record<string, unknown>;
  const num = (k: string, min = 0): number => {
    const v = f[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw bad(`"${k}" must be a number >= ${min}`);
    return v;
  };
  if (f.dialect !== undefined && typeof f.dialect !== 'string') throw bad('"dialect" must be a string');
  const dialect = f.dialect === undefined ? {} : { dialect: f.dialect };
  switch (f.kind) {
    case 'drop':
      if (f.how !== undefined && f.how !== 'abrupt' && f.how !== 'clean') throw bad('"how" must be abrupt or clean');
      return { kind: 'drop', ...(f.how ? { how: f.how } : {}), ...dialect };
    case 'pause':
      if (f.channel !== 'all' && !(STREAM_CHANNELS as readonly unknown[]).includes(f.channel)) throw bad(`"channel" must be one of all, ${STREAM_CHANNELS.join(', ')}`);
      return { kind: 'pause', channel: f.channel as PauseTarget, ms: num('ms'), ...dialect };
    case 'refuse':
      if (f.target !== undefined && f.target !== 'rest' && f.target !== 'ws') throw bad('"target" must be rest or ws');
      return { kind: 'refuse', ...(f.target ? { target: f.target } : {}), ms: num('ms'), ...(f.status !== undefined ? { status: num('status', 100) } : {}), ...dialect };
    case 'refuseSubscribe':
      if (!Array.isArray(f.symbols) || f.symbols.length === 0 || !f.symbols.every((s) => typeof s === 'string')) throw bad('"symbols" must be a non-empty array of symbols (BTC/USDT)');
      return { kind: 'refuseSubscribe', symbols: f.symbols as string[], ms: num('ms'), ...dialect };
    case 'rateLimit':
      return { kind: 'rateLimit', requestsPerSecond: num('requestsPerSecond'), ms: num('ms'), ...dialect };
    case 'quirk':
      if (!(REST_QUIRKS as readonly unknown[]).includes(f.quirk)) throw bad(`"quirk" must be one of ${REST_QUIRKS.join(', ')}`);
      return { kind: 'quirk', quirk: f.quirk as RestQuirk, ...(f.latest !== undefined ? { latest: num('latest', 1) } : {}), ms: num('ms'), ...dialect };
    case 'tradeRate':
      return { kind: 'tradeRate', perSecond: num('perSecond') };
    case 'clear':
      return { kind: 'clear' };
    default:
      throw bad(`"kind" must be one of ${FAULT_KINDS.join(', ')}`);
  }
}
