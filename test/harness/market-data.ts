/**
 * Market data into the database the way the sink writes it (set-based `unnest` upserts on the
 * natural keys), from records shaped like the Avro ones (times in µs), and the rollup refreshes
 * of both database flavours. For tests and benchmarks of what reads the tables.
 */
import type { Pool } from '../../core/db.ts';
import { detectFlavour, type Flavour } from '../../migrations/runner.ts';
import type { Candle, Gap, Instrument, Ticker, Trade } from '../../schemas/index.ts';

/** µs → ISO with six fraction digits (exact as a timestamptz parameter). */
export function isoUs(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us - ms * 1000).padStart(3, '0')}Z`;
}

const CHUNK = 5_000;

async function chunked<T>(rows: readonly T[], write: (chunk: readonly T[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) await write(rows.slice(i, i + CHUNK));
}

export async function insertTrades(pool: Pool, trades: readonly Trade[]): Promise<void> {
  await chunked(trades, (c) =>
    pool.query(
      `insert into trades (exchange, symbol, ts, id, side, price, amount, received_at)
       select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::timestamptz[])
       on conflict (exchange, symbol, ts, id) do nothing`,
      [c.map((t) => t.exchange), c.map((t) => t.symbol), c.map((t) => isoUs(t.ts)), c.map((t) => t.id), c.map((t) => t.side), c.map((t) => t.price), c.map((t) => t.amount), c.map((t) => isoUs(t.received_at))],
    ),
  );
}

export async function insertTickers(pool: Pool, tickers: readonly Ticker[]): Promise<void> {
  const cols = ['bid', 'bid_size', 'ask', 'ask_size', 'last', 'open_24h', 'high_24h', 'low_24h', 'base_volume_24h', 'quote_volume_24h'] as const;
  await chunked(tickers, (c) =>
    pool.query(
      `insert into tickers (exchange, symbol, ts, received_at, ${cols.join(', ')})
       select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], ${cols.map((_, i) => `$${i + 5}::float8[]`).join(', ')})
       on conflict (exchange, symbol, ts) do update set ${cols.map((k) => `${k} = excluded.${k}`).join(', ')}`,
      [c.map((t) => t.exchange), c.map((t) => t.symbol), c.map((t) => isoUs(t.ts)), c.map((t) => isoUs(t.received_at)), ...cols.map((k) => c.map((t) => t[k]))],
    ),
  );
}

export async function insertCandles(pool: Pool, candles: readonly Candle[]): Promise<void> {
  await chunked(candles, (c) =>
    pool.query(
      `insert into candles (exchange, symbol, timeframe, ts, received_at, open, high, low, close, volume, closed)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::bool[])
       on conflict (exchange, symbol, timeframe, ts) do update set received_at = excluded.received_at, open = excluded.open, high = excluded.high,
         low = excluded.low, close = excluded.close, volume = excluded.volume, closed = excluded.closed`,
      [c.map((x) => x.exchange), c.map((x) => x.symbol), c.map((x) => x.timeframe), c.map((x) => isoUs(x.ts)), c.map((x) => isoUs(x.received_at)), c.map((x) => x.open), c.map((x) => x.high), c.map((x) => x.low), c.map((x) => x.close), c.map((x) => x.volume), c.map((x) => x.closed)],
    ),
  );
}

export async function insertGaps(pool: Pool, gaps: readonly Gap[]): Promise<void> {
  await chunked(gaps, (c) =>
    pool.query(
      `insert into gaps (exchange, symbol, channel, from_ts, to_ts, reason, refilled, ts, received_at)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int8[], $8::timestamptz[], $9::timestamptz[])
       on conflict (exchange, symbol, channel, from_ts) do update set to_ts = excluded.to_ts, reason = excluded.reason, refilled = excluded.refilled, ts = excluded.ts, received_at = excluded.received_at`,
      [c.map((g) => g.exchange), c.map((g) => g.symbol), c.map((g) => g.channel), c.map((g) => isoUs(g.from_ts)), c.map((g) => (g.to_ts === null ? null : isoUs(g.to_ts))), c.map((g) => g.reason), c.map((g) => g.refilled), c.map((g) => isoUs(g.ts)), c.map((g) => isoUs(g.received_at))],
    ),
  );
}

export async function insertInstruments(pool: Pool, instruments: readonly Instrument[]): Promise<void> {
  await chunked(instruments, (c) =>
    pool.query(
      `insert into instruments (exchange, symbol, base, quote, type, active, price_increment, amount_increment, min_amount, exchange_symbol, ts, received_at)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::float8[], $8::float8[], $9::float8[], $10::text[], $11::timestamptz[], $12::timestamptz[])
       on conflict (exchange, symbol) do update set base = excluded.base, quote = excluded.quote, type = excluded.type, active = excluded.active, ts = excluded.ts, received_at = excluded.received_at`,
      [
        c.map((i) => i.exchange),
        c.map((i) => i.symbol),
        c.map((i) => i.base),
        c.map((i) => i.quote),
        c.map((i) => i.type),
        c.map((i) => i.active),
        c.map((i) => i.price_increment),
        c.map((i) => i.amount_increment),
        c.map((i) => i.min_amount),
        c.map((i) => i.exchange_symbol),
        c.map((i) => isoUs(i.ts)),
        c.map((i) => isoUs(i.received_at)),
      ],
    ),
  );
}

/** Materializes the OHLCV rollups below `upto` (default now), the way each flavour's refresher does. */
export async function refreshRollups(pool: Pool, upto?: number, flavour?: Flavour): Promise<void> {
  const f = flavour ?? (await detectFlavour(pool));
  const end = upto === undefined ? 'now()' : `'${isoUs(upto)}'::timestamptz`;
  if (f === 'timescaledb') {
    // One statement each, outside a transaction (TimescaleDB refuses CALL refresh inside one).
    for (const view of ['ohlcv_1m', 'ohlcv_1h', 'ohlcv_1d']) await pool.query(`call refresh_continuous_aggregate('${view}', null, ${end})`);
  } else {
    await pool.query(`select tickflow_refresh_ohlcv(${end})`);
  }
}
