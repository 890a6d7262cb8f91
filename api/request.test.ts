/** The request-level helpers: cursors, content negotiation, CSV, error wording, rollup choice. */
import { describe, expect, it } from 'vitest';
import type { FastifyRequest } from 'fastify';
import { decodeCursor, encodeCursor, fingerprint } from './cursor.ts';
import { describeValidation, translateDbError, ApiError } from './errors.ts';
import { pageJson, toCsv, wantsCsv } from './reply.ts';
import { rollupFor } from './sql.ts';
import { parseInterval } from './time.ts';

const req = (accept?: string, format?: string) => ({ headers: accept ? { accept } : {}, query: format ? { format } : {} }) as unknown as FastifyRequest;

describe('cursors', () => {
  it('round-trip, and are refused for another query or when forged', () => {
    const fp = fingerprint('trades', { exchange: 'binance', symbol: 'BTC/USDT', from: 1 });
    const c = encodeCursor({ p: 1_700_000_000_000_123, i: 'abc' }, fp);
    expect(decodeCursor(c, fp)).toEqual({ p: 1_700_000_000_000_123, i: 'abc' });
    expect(() => decodeCursor(c, fingerprint('trades', { exchange: 'binance', symbol: 'ETH/USDT', from: 1 }))).toThrow(/other parameters/);
    expect(() => decodeCursor('eyJwIjoiMSJ9', fp)).toThrow(/^cursor: /);
    expect(() => decodeCursor('%%%', fp)).toThrow(/^cursor: /);
  });
});

describe('content negotiation', () => {
  it('answers CSV only when CSV is preferred, or asked by format=csv', () => {
    expect(wantsCsv(req())).toBe(false);
    expect(wantsCsv(req('text/csv'))).toBe(true);
    expect(wantsCsv(req('text/csv;q=0.5, application/json'))).toBe(false);
    expect(wantsCsv(req('application/json;q=0.2, text/csv'))).toBe(true);
    expect(wantsCsv(req('*/*'))).toBe(false);
    expect(wantsCsv(req('application/json', 'csv'))).toBe(true);
    expect(wantsCsv(req('text/csv', 'json'))).toBe(false);
  });

  it('writes CSV with a header, empty cells for null and quoted cells where needed', () => {
    expect(toCsv(['a', 'b', 'c'], [{ a: 'x,y', b: null, c: 1.5 }, { a: 'say "hi"', b: true, c: -0.25 }])).toBe('a,b,c\r\nx,y\r\n'.replace('x,y', '"x,y",,1.5') + '"say ""hi""",true,-0.25\r\n');
  });

  it('writes the JSON envelope equal to JSON.stringify of the same page', () => {
    const data = [
      { exchange: 'binance', symbol: 'BTC/USDT', bucket: '2024-01-01T00:00:00.000Z', open: 1.5, high: null, low: 1e-7, close: 1e21, volume: 0, trades: 3 },
      { exchange: 'binance', symbol: 'BTC/"USDT"', bucket: '2024-01-01T00:01:00.000Z', open: Number.NaN, high: 2, low: 1, close: 1, volume: 2, trades: null },
    ];
    const expected = JSON.stringify({ data, next: 'abc' });
    expect(JSON.parse(pageJson('Candle', data, 'abc'))).toEqual(JSON.parse(expected));
  });
});

describe('error wording', () => {
  it('names the parameter of a schema error', () => {
    expect(describeValidation([{ keyword: 'required', instancePath: '', params: { missingProperty: 'from' } }], 'querystring')).toEqual({ parameter: 'from', message: 'from: required' });
    expect(describeValidation([{ keyword: 'additionalProperties', instancePath: '', params: { additionalProperty: 'limt' } }], 'querystring')).toEqual({ parameter: 'limt', message: 'limt: unknown parameter' });
    expect(describeValidation([{ keyword: 'maximum', instancePath: '/limit', params: { limit: 10 } }], 'querystring')).toEqual({ parameter: 'limit', message: 'limit: must be at most 10' });
  });

  it('turns a statement timeout into a 400 and an unreachable database into a 503', () => {
    expect(translateDbError(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }), 1000)).toMatchObject({ statusCode: 400 });
    expect(translateDbError(new Error('Query read timeout'), 1000)).toMatchObject({ statusCode: 503 });
    expect(translateDbError(new Error('connect ECONNREFUSED 127.0.0.1:5432'), 1000)).toMatchObject({ statusCode: 503 });
    const bug = new TypeError('x is undefined');
    expect(translateDbError(bug, 1000)).toBe(bug);
    expect(translateDbError(new ApiError(400, 'x'), 1000)).toBeInstanceOf(ApiError);
  });
});

describe('rollup choice', () => {
  it('serves an interval from the coarsest rollup whose bucket divides it', () => {
    const table = (iv: string) => rollupFor(parseInterval(iv, 'interval'))?.table;
    expect(['1m', '5m', '90m', '7m', '4h', '1h', '1d', '2d', '1w', '25h', '1441m'].map(table)).toEqual([
      'ohlcv_1m', 'ohlcv_1m', 'ohlcv_1m', 'ohlcv_1m', 'ohlcv_1h', 'ohlcv_1h', 'ohlcv_1d', 'ohlcv_1d', 'ohlcv_1d', 'ohlcv_1h', 'ohlcv_1m',
    ]);
  });
});
