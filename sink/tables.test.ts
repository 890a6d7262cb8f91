import { describe, expect, it } from 'vitest';
import type { Trade } from '../schemas/index.ts';
import { rowCodec, TABLES, TABLE_NAMES, upsertSql } from './tables.ts';

const trade: Trade = { exchange: 'binance', symbol: 'BTC/USDT', ts: 1_700_000_000_123_456, received_at: 1_700_000_000_200_000, id: '1', side: 'buy', price: 42_000.5, amount: 0.01 };

describe('row codec', () => {
  it('accepts a valid record and names what is wrong with a bad one', () => {
    const c = rowCodec('trades');
    expect(c.validate(trade)).toBeUndefined();
    expect(c.validate({ ...trade, price: Number.NaN })).toMatch(/^price is not a finite number/);
    expect(c.validate({ ...trade, amount: Number.POSITIVE_INFINITY })).toMatch(/^amount is not a finite number/);
    expect(c.validate({ ...trade, symbol: 'BTC\u0000' })).toBe('symbol contains a NUL character');
    expect(c.validate({ ...trade, id: '' })).toBe('id is empty');
    expect(c.validate({ ...trade, ts: 1.5 })).toMatch(/^ts is not a timestamp/);
  });

  it('lets a user event name no instrument (exchange and symbol empty in its key), never a trade', () => {
    const c = rowCodec('events');
    const event = { exchange: '', symbol: '', ts: 1, received_at: 2, id: 'e1', type: 'news', data: '{"a":1}', idempotency_key: null };
    expect(c.validate(event)).toBeUndefined();
    expect(c.validate({ ...event, id: '' })).toBe('id is empty');
    expect(rowCodec('trades').validate({ ...trade, exchange: '' })).toBe('exchange is empty');
  });

  it('lets nullable columns be null, but never a key column', () => {
    const c = rowCodec('gaps');
    const gap = { exchange: 'x', symbol: 'A/B', channel: 'trades', from_ts: 1, to_ts: null, reason: 'r', refilled: 0, ts: 2, received_at: 3 };
    expect(c.validate(gap as never)).toBeUndefined();
    expect(c.validate({ ...gap, from_ts: null } as never)).toBe('from_ts is null');
  });

  it('keys records by the key fields only', () => {
    const c = rowCodec('trades');
    expect(c.key(trade)).toBe(c.key({ ...trade, price: 1 }));
    expect(c.key(trade)).not.toBe(c.key({ ...trade, id: '2' }));
  });

  it('refuses key fields that are not columns', () => {
    expect(() => rowCodec('trades', ['exchange', 'nope'])).toThrow(/nope is not a column of trades/);
  });

  it('builds one array literal per column, times as microseconds, levels as JSON', () => {
    const book = { exchange: 'x', symbol: 'A/B', ts: 5, received_at: 6, depth: 1, bids: [{ price: 1, amount: 2 }], asks: [], sequence: null };
    const book2 = { ...book, exchange: 'a"b\\c', sequence: 7 };
    expect(rowCodec('books').columns([book as never, book2 as never])).toEqual([
      '{"x","a\\"b\\\\c"}',
      '{"A/B","A/B"}',
      '{5,5}',
      '{6,6}',
      '{1,1}',
      '{"[{\\"price\\":1,\\"amount\\":2}]","[{\\"price\\":1,\\"amount\\":2}]"}',
      '{"[]","[]"}',
      '{NULL,7}',
    ]);
    const candle = { exchange: 'x', symbol: 'A/B', timeframe: '1m', ts: 1, received_at: 2, open: 1.5, high: 2, low: 1e-7, close: 1, volume: 0, closed: true };
    expect(rowCodec('candles').columns([candle as never, { ...candle, closed: false } as never]).slice(5)).toEqual(['{1.5,1.5}', '{2,2}', '{1e-7,1e-7}', '{1,1}', '{0,0}', '{t,f}']);
  });

  it('builds the same literals from cells computed record by record', () => {
    const book = { exchange: 'x', symbol: 'A/B', ts: 5, received_at: 6, depth: 1, bids: [{ price: 1, amount: 2 }], asks: [], sequence: null };
    const books = [book, { ...book, exchange: 'a"b\\c', sequence: 7 }, { ...book, symbol: 'C/D' }] as never[];
    const c = rowCodec('books');
    expect(c.cells(books[1]!)).toEqual(['"a\\"b\\\\c"', '"A/B"', '5', '6', '1', '"[{\\"price\\":1,\\"amount\\":2}]"', '"[]"', '7']);
    const cells = books.map((b) => c.cells(b));
    expect(c.spec.columns.map((_, j) => `{${cells.map((r) => r[j]).join(',')}}`)).toEqual(c.columns(books));
    expect(c.columns([])[0]).toBe('{}');
  });
});

describe('statements', () => {
  it('insert keeps the first version, upsert updates changed non-key columns', () => {
    expect(upsertSql('trades', TABLES.trades.primaryKey, 'insert')).toMatch(/on conflict \(exchange, symbol, ts, id\) do nothing$/);
    const up = upsertSql('candles', TABLES.candles.primaryKey, 'upsert');
    expect(up).toContain('select u.exchange, u.symbol, u.timeframe, timestamptz \'epoch\' + u.ts * interval \'1 microsecond\'');
    expect(up).toContain('do update set received_at = excluded.received_at, open = excluded.open');
    expect(up).toMatch(/where \(candles\.received_at, .*\) is distinct from \(excluded\.received_at, .*\)$/);
    // instruments: every column but the key is updatable; a table whose columns are all key does nothing.
    for (const t of TABLE_NAMES) expect(upsertSql(t, TABLES[t].primaryKey, 'upsert')).toMatch(/^insert into /);
  });
});
