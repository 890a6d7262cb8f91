/**
 * Which exchanges and instruments the API knows, so a misspelled one is a 404 naming what is
 * known instead of an empty 200 (or, with fill=null, a page of made-up empty candles).
 *
 * Known = listed in the `instruments` table (the gateways publish the markets they collect) or
 * present in any table of records (schemas/catalog.ts), so data written
 * without metadata — a backfill, another producer — is still served. Every table's primary key
 * leads with (exchange, symbol), so the check is one index probe per table at most, stopping at
 * the first hit; a hit is cached for a minute (instruments don't vanish in less; retention
 * deleting the last record of one just leaves its empty answers for that minute). Misses are
 * never cached: an instrument that appears answers at once. The lists in a 404 (an exchange's
 * symbols, or the exchanges) are loose index scans, read only on that path.
 */
import { TABLE_NAMES, specOfTable } from '../schemas/catalog.ts';
import { ApiError } from './errors.ts';
import type { ApiDatabase } from './plugins/database.ts';

/**
 * Every record table of market data (user events are not: an instrument is not known because
 * someone posted an event naming it); compacted kinds (the latest state per instrument, small:
 * instruments) first, the likeliest hit.
 */
const TABLES = TABLE_NAMES.filter((t) => specOfTable(t).instrumentOptional !== true).sort((a, b) => Number(specOfTable(b).compacted) - Number(specOfTable(a).compacted));
const HIT_TTL_MS = 60_000;
const MAX_CACHED = 10_000;
/** Names listed in a 404 at most. */
const LIST = 20;

const anyRow = (where: string) => TABLES.map((t) => `exists(select 1 from ${t} where ${where})`).join(' or ');
const INSTRUMENT_SQL = `select (${anyRow('exchange = $1 and symbol = $2')}) as known`;
const EXCHANGE_SQL = `select (${anyRow('exchange = $1')}) as known`;

/** A loose index scan of one table's distinct `col` (after the `where`), the first `LIST + 1` of them. */
function distinct(table: string, col: 'exchange' | 'symbol', where: string): string {
  const and = where ? `${where} and ` : '';
  return `(with recursive v(x) as (
  (select ${col} from ${table} ${where ? `where ${where} ` : ''}order by ${col} limit 1)
  union all
  select (select ${col} from ${table} where ${and}${col} > v.x order by ${col} limit 1) from v where v.x is not null
) select x from v where x is not null limit ${LIST + 1})`;
}
const EXCHANGES_SQL = `select x from (${TABLES.map((t) => distinct(t, 'exchange', '')).join(' union ')}) u order by x limit ${LIST + 1}`;
const SYMBOLS_SQL = `select x from (${TABLES.map((t) => distinct(t, 'symbol', 'exchange = $1')).join(' union ')}) u order by x limit ${LIST + 1}`;

function listed(names: readonly string[]): string {
  if (names.length === 0) return 'none yet (nothing is stored)';
  return names.length > LIST ? `${names.slice(0, LIST).join(', ')}, …` : names.join(', ');
}

export class KnownInstruments {
  private readonly db: ApiDatabase;
  private readonly hits = new Map<string, number>();

  constructor(db: ApiDatabase) {
    this.db = db;
  }

  /** Resolves when the instrument is known; else a 404 naming the exchange's known symbols, or the known exchanges. */
  async requireInstrument(exchange: string, symbol: string): Promise<void> {
    if (await this.instrument(exchange, symbol)) return;
    if (!(await this.exchange(exchange))) throw await this.unknownExchange(exchange);
    const symbols = (await this.db.query<{ x: string }>('known_symbols', SYMBOLS_SQL, [exchange])).map((r) => r.x);
    const upper = symbol.toUpperCase();
    const hint = upper !== symbol && (await this.instrument(exchange, upper)) ? ` (did you mean ${upper}?)` : '';
    throw new ApiError(404, `symbol: ${exchange} has no instrument ${JSON.stringify(symbol)}${hint}; known: ${listed(symbols)} (all: /v1/instruments?exchange=${exchange})`, { parameter: 'symbol' });
  }

  /**
   * For routes where exchange and symbol are optional filters: each one given must name
   * something known (a symbol alone: on some known exchange).
   */
  async requireFilter(exchange: string | undefined, symbol: string | undefined): Promise<void> {
    if (exchange !== undefined && symbol !== undefined) return this.requireInstrument(exchange, symbol);
    if (exchange !== undefined) {
      if (!(await this.exchange(exchange))) throw await this.unknownExchange(exchange);
      return;
    }
    if (symbol === undefined) return;
    const exchanges = await this.exchanges();
    for (const e of exchanges) if (await this.instrument(e, symbol)) return;
    throw new ApiError(404, `symbol: no exchange has an instrument ${JSON.stringify(symbol)}; known exchanges: ${listed(exchanges)} (their instruments: /v1/instruments)`, { parameter: 'symbol' });
  }

  private async instrument(exchange: string, symbol: string): Promise<boolean> {
    return this.cached(`i\u0001${exchange}\u0001${symbol}`, async () => {
      const [row] = await this.db.query<{ known: boolean }>('known_instrument', INSTRUMENT_SQL, [exchange, symbol]);
      return row?.known === true;
    });
  }

  private async exchange(exchange: string): Promise<boolean> {
    return this.cached(`e\u0001${exchange}`, async () => {
      const [row] = await this.db.query<{ known: boolean }>('known_exchange', EXCHANGE_SQL, [exchange]);
      return row?.known === true;
    });
  }

  private async exchanges(): Promise<string[]> {
    return (await this.db.query<{ x: string }>('known_exchanges', EXCHANGES_SQL, [])).map((r) => r.x);
  }

  private async unknownExchange(exchange: string): Promise<ApiError> {
    return new ApiError(404, `exchange: no exchange ${JSON.stringify(exchange)} is known; known: ${listed(await this.exchanges())}`, { parameter: 'exchange' });
  }

  private async cached(key: string, look: () => Promise<boolean>): Promise<boolean> {
    const until = this.hits.get(key);
    if (until !== undefined && until > Date.now()) return true;
    const known = await look();
    if (known) {
      if (this.hits.size >= MAX_CACHED) this.hits.clear();
      this.hits.set(key, Date.now() + HIT_TTL_MS);
    } else this.hits.delete(key);
    return known;
  }
}
