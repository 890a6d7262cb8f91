/**
 * The instruments of an exchange entry as a set that changes while the gateway runs. An entry's
 * `symbols` is a list of unified symbols and patterns (`*` any run of characters, `?` one, neither
 * crossing `/` or `:`: `"*\/USDT"` is every spot USDT pair, `"*\/USDT:USDT"` every USDT-settled
 * perpetual), or `all`. Patterns and `all` are resolved against the exchange's markets (active
 * ones of the entry's `marketTypes`) at start and again every `marketsRecheckMs`: a new listing
 * starts, a market that is no longer listed (or no longer active) stops with a gap record naming
 * the delisting. Literal symbols are kept as written (the worker reports unlisted ones at start).
 *
 * A filter on top (`setFilter`: shard ownership, gateways/shard.ts) narrows the set; instruments
 * it moves away stop without a gap record (the process that takes them over states what it could
 * not refill). Every change goes through one reconcile at a time (`InstrumentSet`), which hands
 * the worker the symbols to start and to stop with the reason.
 */
import type { Market } from 'ccxt';

/** `all`, or unified symbols and patterns. */
export type SymbolSpec = readonly string[] | 'all';

/** Why an instrument stops: no longer listed (gap record), moved to another process (none), the gateway closing (none). */
export type RemovalReason = 'delisted' | 'shard' | 'closing';

/** The ccxt market types a pattern or `all` selects from (an entry's `marketTypes`). */
export const MARKET_TYPES = ['spot', 'swap', 'future', 'option', 'margin'] as const;
export type MarketType = (typeof MARKET_TYPES)[number];

/** Which markets a pattern or `all` may select (literal symbols are never filtered). */
export interface MarketFilter {
  /** Default: spot only. */
  readonly types?: readonly MarketType[];
}

export function isPattern(s: string): boolean {
  return /[*?]/.test(s);
}

/** True when the spec names instruments by pattern or `all`: they are resolved from markets and re-checked. */
export function isDynamic(spec: SymbolSpec): boolean {
  return spec === 'all' || spec.some(isPattern);
}

const patternCache = new Map<string, RegExp>();

/** A glob over unified symbols: `*` any run, `?` one character, neither crossing `/` or `:`. */
export function patternRegex(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/:]*').replace(/\?/g, '[^/:]');
    re = new RegExp(`^${body}$`);
    patternCache.set(pattern, re);
  }
  return re;
}

/** A market a pattern or `all` may select: listed as active (ccxt's `active` undefined counts as active) and of a wanted type. */
function selectable(m: Market | undefined, types: readonly string[]): boolean {
  if (!m || m.active === false) return false;
  return types.includes(String(m.type));
}

/**
 * The symbols `spec` names among `markets`, in spec order (patterns expand sorted), each once.
 * Literal symbols are kept whether or not they are listed (the caller reports unlisted ones);
 * patterns and `all` select listed, active markets of `filter.types` (default spot).
 */
export function resolveSymbols(spec: SymbolSpec, markets: Readonly<Record<string, Market | undefined>>, filter: MarketFilter = {}): string[] {
  const types = filter.types ?? ['spot'];
  const listed = Object.keys(markets).sort();
  const out = new Set<string>();
  for (const s of spec === 'all' ? ['all'] : spec) {
    if (spec === 'all' || isPattern(s)) {
      const re = spec === 'all' ? undefined : patternRegex(s);
      for (const m of listed) if ((!re || re.test(m)) && selectable(markets[m], types)) out.add(m);
    } else out.add(s);
  }
  return [...out];
}

/**
 * Symbols of a dynamic spec that are no longer selectable: a literal symbol whose market is
 * gone or inactive, or a pattern's symbol that left the markets. Used on re-check.
 */
export function delisted(current: readonly string[], markets: Readonly<Record<string, Market | undefined>>): string[] {
  return current.filter((s) => !markets[s] || markets[s]!.active === false);
}

/** The dynamic instrument set of one running entry (gateways/worker.ts implements it). */
export interface InstrumentSet {
  /** The symbols running now (sorted). */
  current(): readonly string[];
  /** Filter applied on top of the resolved symbols (shard ownership); re-reconciles now. */
  setFilter(owns: ((symbol: string) => boolean) | null, why: 'shard'): Promise<void>;
}

/** What an instrument set drives: the worker starts and stops an instrument's streams. */
export interface InstrumentDriver {
  /** Starts the streams of these symbols (not running yet). */
  start(symbols: readonly string[]): Promise<void>;
  /** Stops the streams of these symbols; `delisted` leaves a gap record per stream. */
  stop(symbols: readonly string[], why: RemovalReason): Promise<void>;
}

/**
 * Desired = resolved symbols ∩ filter; reconcile starts what is desired and not running and stops
 * what runs and is not desired, one reconcile at a time (calls queue behind the running one).
 */
export class ReconciledSet implements InstrumentSet {
  private readonly driver: InstrumentDriver;
  private running = new Set<string>();
  private resolved: readonly string[] = [];
  private filter: ((symbol: string) => boolean) | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(driver: InstrumentDriver) {
    this.driver = driver;
  }

  current(): readonly string[] {
    return [...this.running].sort();
  }

  /** The symbols resolved from the spec, before the filter. */
  resolvedSymbols(): readonly string[] {
    return this.resolved;
  }

  /**
   * New resolved symbols (start, or a markets re-check). Symbols that left the resolved set stop
   * as `why` (a re-check: `delisted`).
   */
  setResolved(symbols: readonly string[], why: RemovalReason = 'delisted'): Promise<void> {
    this.resolved = [...symbols];
    return this.reconcile(why);
  }

  setFilter(owns: ((symbol: string) => boolean) | null, why: 'shard' = 'shard'): Promise<void> {
    this.filter = owns;
    return this.reconcile(why);
  }

  /** Stops everything (the gateway closing). */
  clear(): Promise<void> {
    this.resolved = [];
    return this.reconcile('closing');
  }

  /**
   * Brings the running set to the desired one. Symbols leaving because the resolved set lost them
   * stop as `dropReason`; symbols the filter excludes stop as `shard`.
   */
  private reconcile(dropReason: RemovalReason): Promise<void> {
    const run = async () => {
      const resolved = new Set(this.resolved);
      const desired = this.resolved.filter((s) => !this.filter || this.filter(s));
      const want = new Set(desired);
      const leaving = [...this.running].filter((s) => !want.has(s));
      const gone = leaving.filter((s) => !resolved.has(s));
      const moved = leaving.filter((s) => resolved.has(s));
      const adding = desired.filter((s) => !this.running.has(s));
      if (gone.length > 0) {
        for (const s of gone) this.running.delete(s);
        await this.driver.stop(gone, dropReason);
      }
      if (moved.length > 0) {
        for (const s of moved) this.running.delete(s);
        await this.driver.stop(moved, dropReason === 'closing' ? 'closing' : 'shard');
      }
      if (adding.length > 0) {
        for (const s of adding) this.running.add(s);
        await this.driver.start(adding);
      }
    };
    const p = this.chain.then(run);
    this.chain = p.catch(() => undefined);
    return p;
  }
}
