import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RECORD_KINDS, type RecordKind } from '../schemas/catalog.ts';
import { PredicateError, compilePredicate, type PredicateState } from './predicate.ts';

const trade = (o: Partial<Record<string, unknown>> = {}) => ({ exchange: 'binance', symbol: 'BTC/USDT', ts: 1_700_000_000_000_000, received_at: 1_700_000_000_000_100, id: '1', side: 'buy', price: 100, amount: 1, ...o });
const candle = (o: Partial<Record<string, unknown>> = {}) => ({ exchange: 'binance', symbol: 'BTC/USDT', ts: 0, received_at: 0, timeframe: '1m', open: 1, high: 2, low: 0.5, close: 1.5, volume: 10, closed: false, ...o });

function refused(kind: RecordKind, src: string): PredicateError {
  try {
    compilePredicate(kind, src);
  } catch (e) {
    expect(e).toBeInstanceOf(PredicateError);
    expect((e as PredicateError).code).toBe('BAD_PREDICATE');
    return e as PredicateError;
  }
  throw new Error(`"${src}" compiled for ${kind}`);
}

describe('predicate language', () => {
  it('compares fields with the six operators, and/or/not and parentheses', () => {
    const t = (src: string, r = trade()) => compilePredicate('trade', src).test(r, undefined).match;
    expect(t("side = 'buy'")).toBe(true);
    expect(t("side != 'buy'")).toBe(false);
    expect(t('price > 99.5 and amount >= 1')).toBe(true);
    expect(t('price < 100 or amount <= 0.5')).toBe(false);
    expect(t('price <= 100 AND NOT amount > 1')).toBe(true);
    expect(t("(side = 'sell' or price = 100) and amount = 1")).toBe(true);
    expect(t("side = 'sell' or price = 100 and amount = 2")).toBe(false); // and binds tighter
    expect(t('price > 1e2')).toBe(false);
    expect(t('price > -5')).toBe(true);
    expect(t("symbol = 'BTC/USDT' and exchange != 'kraken'")).toBe(true);
    expect(t("symbol = 'it''s'", trade({ symbol: "it's" }))).toBe(true);
    expect(compilePredicate('trade', '').test(trade(), undefined).match).toBe(true);
  });

  it('types literals by column: times, nulls and booleans', () => {
    expect(compilePredicate('trade', "ts >= '2023-11-14T22:13:20Z'").test(trade(), undefined).match).toBe(true);
    expect(compilePredicate('trade', "ts > '2023-11-14T22:13:21Z'").test(trade(), undefined).match).toBe(false);
    const gap = { exchange: 'x', symbol: 'y', ts: 1, received_at: 1, channel: 'trades', from_ts: 1, to_ts: null, reason: 'r', refilled: 0 };
    expect(compilePredicate('gap', 'to_ts = null').test(gap, undefined).match).toBe(true);
    expect(compilePredicate('gap', 'to_ts != null').test({ ...gap, to_ts: 5 }, undefined).match).toBe(true);
    expect(compilePredicate('candle', 'closed = true').test(candle({ closed: true }), undefined).match).toBe(true);
    const ticker = { exchange: 'x', symbol: 'y', ts: 1, received_at: 1, bid: null, ask: 2 };
    expect(compilePredicate('ticker', 'bid > 1').test(ticker, undefined).match).toBe(false);
    expect(compilePredicate('ticker', 'bid != 1').test(ticker, undefined).match).toBe(true);
  });

  it('`closed` is the candle flag, and candles only', () => {
    const p = compilePredicate('candle', "closed and timeframe = '1h'");
    expect(p.test(candle({ closed: true, timeframe: '1h' }), undefined).match).toBe(true);
    expect(p.test(candle({ closed: false, timeframe: '1h' }), undefined).match).toBe(false);
    expect(p.test(candle({ closed: true, timeframe: '1m' }), undefined).match).toBe(false);
    const e = refused('trade', 'price > 1 and closed');
    expect(e.part).toBe('closed');
    expect(e.position).toBe(14);
    expect(e.message).toMatch(/candles only/);
  });

  it('refuses what is not the language, naming the part and its position', () => {
    const cases: Array<[RecordKind, string, string, number, RegExp]> = [
      ['trade', 'prcie > 1', 'prcie', 0, /unknown field "prcie" for trade at 0 \(fields: exchange, symbol, ts, id, side, price, amount, received_at\)/],
      ['trade', "price > 'x'", "'x'", 8, /"price" is float8: expected a number/],
      ['trade', 'price => 1', '>', 7, /expected a number/],
      ['trade', 'price ~ 1', '~', 6, /unexpected character/],
      ['trade', 'price 1', '1', 6, /expected a comparison/],
      ['trade', 'price == 1', '=', 7, /expected a number/],
      ['trade', "side = 'hold'", "'hold'", 7, /one of buy, sell, unknown/],
      ['trade', "side > 'buy'", "'buy'", 7, /with = or !=/],
      ['trade', 'side crosses above 1', 'side', 0, /numeric field/],
      ['trade', 'price crosses 1', '1', 14, /"above" or "below"/],
      ['trade', 'price crosses above x', 'x', 20, /expected a number/],
      ['trade', 'price = null', 'null', 8, /never null/],
      ['trade', 'process.exit(1)', '.', 7, /property access/],
      ['trade', 'price > 1 and', '(end)', 13, /expected a field/],
      ['trade', '(price > 1', '(end)', 10, /expected "\)"/],
      ['trade', 'price > 1 price < 2', 'price', 10, /expected "and", "or" or the end/],
      ['trade', "side = 'buy", "'buy", 7, /unterminated string/],
      ['trade', 'side = "buy"', '"', 7, /single-quoted/],
      ['trade', 'price > 12abc', '12abc', 8, /malformed number/],
      ['book', 'bids > 1', 'bids', 0, /cannot be compared/],
      ['ticker', 'bid < null', 'null', 6, /= or != only/],
      ['candle', 'closed = 1', '1', 9, /true or false/],
      ['trade', "ts > 'yesterday'", "'yesterday'", 5, /ISO-8601/],
    ];
    for (const [kind, src, part, position, msg] of cases) {
      const e = refused(kind, src);
      expect({ src, part: e.part, position: e.position }).toEqual({ src, part, position });
      expect(e.message).toMatch(msg);
    }
  });

  it('crosses above fires when the field goes from <= L to > L, the first record only seeding', () => {
    const p = compilePredicate('trade', 'price crosses above 100');
    expect(p.stateful).toBe(true);
    let state: PredicateState | undefined;
    const fired: number[] = [];
    for (const price of [101, 99, 100, 101, 102, 100, 100.5, null, 99, 101]) {
      const r = p.test(trade({ price }), state);
      if (r.match) fired.push(price as number);
      state = r.state;
      expect(JSON.parse(JSON.stringify(state))).toEqual(state);
    }
    expect(fired).toEqual([101, 100.5, 101]);
  });

  it('crosses terms see every record, whatever the rest of the predicate says', () => {
    const p = compilePredicate('trade', "side = 'buy' and price crosses below 50");
    let s = p.test(trade({ price: 60, side: 'buy' }), undefined).state;
    const sell = p.test(trade({ price: 40, side: 'sell' }), s); // the crossing happens on a sell
    expect(sell.match).toBe(false);
    s = sell.state;
    expect(p.test(trade({ price: 30, side: 'buy' }), s).match).toBe(false); // already below
  });

  it('property: any input is compiled or refused with a PredicateError, never another throw', () => {
    const atoms = ['price', 'amount', 'side', 'ts', 'closed', 'crosses', 'above', 'below', 'and', 'or', 'not', '(', ')', '=', '!=', '<', '<=', '>', '>=', '1', '-2.5', "'buy'", 'true', 'null', 'x', '.', '"', "'", '1e', 'constructor', '__proto__'];
    const source = fc.oneof(fc.string({ maxLength: 60 }), fc.array(fc.constantFrom(...atoms), { maxLength: 12 }).map((a) => a.join(' ')));
    fc.assert(
      fc.property(fc.constantFrom(...RECORD_KINDS), source, (kind, src) => {
        try {
          const p = compilePredicate(kind, src);
          p.test(trade(), undefined);
        } catch (e) {
          if (!(e instanceof PredicateError)) throw e;
          expect(e.position).toBeGreaterThanOrEqual(0);
          expect(e.position).toBeLessThanOrEqual(src.length);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it('property: crosses above fires exactly once per upward crossing of a random price walk', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 1, maxLength: 300 }), fc.integer({ min: -5, max: 5 }), (steps, level) => {
        const prices = steps.reduce<number[]>((acc, d) => [...acc, (acc.at(-1) ?? 0) + d], []);
        const p = compilePredicate('trade', `price crosses above ${level}`);
        let state: PredicateState | undefined;
        let fired = 0;
        for (const price of prices) {
          const r = p.test(trade({ price }), state);
          state = JSON.parse(JSON.stringify(r.state)) as PredicateState; // as stored between batches
          if (r.match) fired++;
        }
        // Independently: runs of prices above the level that do not start at the first record.
        let runs = 0;
        for (let i = 0; i < prices.length; i++) if (prices[i]! > level && i > 0 && !(prices[i - 1]! > level)) runs++;
        expect(fired).toBe(runs);
      }),
      { numRuns: 500 },
    );
  });
});
