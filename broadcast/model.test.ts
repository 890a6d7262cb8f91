import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RECORD_KINDS } from '../schemas/catalog.ts';
import { Matcher, REGISTRATION_KINDS, ValidationError, instrumentFilter, keepRedacted, parseBroadcaster, parseRegistration, redactBroadcaster, type RegistrationRow } from './model.ts';

function refusal(f: () => unknown): ValidationError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return e as ValidationError;
  }
  throw new Error('accepted');
}

describe('broadcasters', () => {
  it('takes an http broadcaster with defaults, and a kafka one', () => {
    const h = parseBroadcaster({ name: 'alerts', kind: 'http', config: { url: 'https://example.test/hook', secret: 's3', headers: { 'X-Team': 'a' } } });
    expect(h).toEqual({ name: 'alerts', kind: 'http', config: { url: 'https://example.test/hook', secret: 's3', headers: { 'X-Team': 'a' }, timeoutMs: 5000, retry: { maxAttempts: 5, initialMs: 200, maxMs: 10000 } } });
    expect(parseBroadcaster({ name: 'k.1', kind: 'kafka', config: { topic: 'my-topic' } })).toEqual({ name: 'k.1', kind: 'kafka', config: { topic: 'my-topic', format: 'json' } });
  });

  it('refuses a bad one naming the field', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ name: 'a', kind: 'http', config: { url: 'ftp://x/y' } }, 'config.url', /http:\/\/ or https:\/\//],
      [{ name: 'a', kind: 'http', config: { url: 'not a url' } }, 'config.url', /URL/],
      [{ name: 'a', kind: 'http', config: {} }, 'config.url', /required/],
      [{ name: 'a', kind: 'smtp', config: {} }, 'kind', /http, kafka/],
      [{ name: '-a', kind: 'kafka', config: { topic: 't' } }, 'name', /letters, digits/],
      [{ name: 'a', kind: 'kafka', config: { topic: 'a b' } }, 'config.topic', /topic name/],
      [{ name: 'a', kind: 'kafka', config: { topic: 't', format: 'xml' } }, 'config.format', /json|avro/],
      [{ name: 'a', kind: 'http', config: { url: 'http://x', timeoutMs: 5 } }, 'config.timeoutMs', /100/],
      [{ name: 'a', kind: 'http', config: { url: 'http://x', headers: { 'x-tickflow-event-id': '1' } } }, 'config.headers.x-tickflow-event-id', /delivery/],
      [{ name: 'a', kind: 'http', config: { url: 'http://x', retry: { initialMs: 500, maxMs: 100 } } }, 'config.retry.maxMs', /initialMs/],
      [{ name: 'a', kind: 'http', config: { url: 'http://x' }, colour: 'red' }, 'colour', /unknown field/],
    ];
    for (const [body, field, msg] of cases) {
      const e = refusal(() => parseBroadcaster(body));
      expect({ body, field: e.field }).toEqual({ body, field });
      expect(e.message).toMatch(msg);
    }
  });

  it('never shows a secret, and a PUT of the mask keeps the stored one', () => {
    const b = parseBroadcaster({ name: 'a', kind: 'http', config: { url: 'http://x', secret: 'hush', headers: { Authorization: 'Bearer t', 'X-Team': 'a' } } });
    const shown = redactBroadcaster(b);
    expect(JSON.stringify(shown)).not.toMatch(/hush|Bearer t/);
    expect(shown.config).toMatchObject({ secret: '***', headers: { Authorization: '***', 'X-Team': 'a' } });
    expect(keepRedacted(parseBroadcaster(shown), b).config).toEqual(b.config);
    expect(refusal(() => keepRedacted(parseBroadcaster(shown), undefined)).field).toBe('config.secret');
  });
});

describe('registrations', () => {
  it('derives its kinds from the catalog: streamed records, not instrument metadata', () => {
    expect(REGISTRATION_KINDS).toEqual(expect.arrayContaining(['trade', 'ticker', 'candle', 'book', 'gap']));
    expect(REGISTRATION_KINDS).not.toContain('instrument');
    expect(REGISTRATION_KINDS.every((k) => RECORD_KINDS.includes(k))).toBe(true);
  });

  it('takes a registration with defaults and compiles its predicate', () => {
    expect(parseRegistration({ name: 'r', broadcaster: 'b', kind: 'trade' })).toEqual({ name: 'r', broadcaster: 'b', kind: 'trade', exchange: '*', symbol: '*', predicate: null });
    expect(parseRegistration({ name: 'r', broadcaster: 'b', kind: 'candle', symbol: 'BTC/*', predicate: "closed and timeframe = '1h'", paused: true }).paused).toBe(true);
  });

  it('refuses a bad one naming the field, and for a predicate the token and position', () => {
    const base = { name: 'r', broadcaster: 'b', kind: 'trade' };
    const e = refusal(() => parseRegistration({ ...base, predicate: 'price > 1 and prcie < 2' }));
    expect(e).toMatchObject({ field: 'predicate', part: 'prcie', position: 14 });
    expect(e.message).toMatch(/^registration: predicate: unknown field "prcie" for trade at 14 \(fields: .*price/);
    expect(refusal(() => parseRegistration({ ...base, predicate: 'price >> 1' }))).toMatchObject({ field: 'predicate', part: '>', position: 7 });
    expect(refusal(() => parseRegistration({ ...base, predicate: 'closed' }))).toMatchObject({ field: 'predicate', part: 'closed' });
    expect(refusal(() => parseRegistration({ ...base, predicate: 'side crosses above 3' }))).toMatchObject({ field: 'predicate', part: 'side' });
    expect(refusal(() => parseRegistration({ ...base, kind: 'instrument' })).field).toBe('kind');
    expect(refusal(() => parseRegistration({ ...base, kind: 'trades' })).message).toMatch(/expected one of trade, ticker/);
    expect(refusal(() => parseRegistration({ ...base, broadcaster: undefined })).field).toBe('broadcaster');
    expect(refusal(() => parseRegistration({ ...base, exchange: '' })).field).toBe('exchange');
    expect(refusal(() => parseRegistration([])).field).toBe('body');
  });
});

describe('instrument filter', () => {
  it('matches * and ? wildcards, everything else literally', () => {
    const f = instrumentFilter('bin*', '*/USDT');
    expect(f('binance', 'BTC/USDT')).toBe(true);
    expect(f('binanceus', 'ETH/USDT')).toBe(true);
    expect(f('kraken', 'BTC/USDT')).toBe(false);
    expect(f('binance', 'BTC/USDC')).toBe(false);
    expect(instrumentFilter('*', 'BTC/USDT:USDT')('x', 'BTC/USDT:USDT')).toBe(true);
    expect(instrumentFilter('*', 'BTC/USDT')('x', 'BTC/USDT:USDT')).toBe(false);
    expect(instrumentFilter('sim', '???/USDT')('sim', 'ETH/USDT')).toBe(true);
    expect(instrumentFilter('sim', '???/USDT')('sim', 'DOGE/USDT')).toBe(false);
    expect(instrumentFilter('a.c', '(x)')('abc', '(x)')).toBe(false);
    expect(instrumentFilter('a.c', '(x)')('a.c', '(x)')).toBe(true);
  });
});

describe('Matcher', () => {
  const row = (o: Partial<RegistrationRow> & { name: string }): RegistrationRow => ({ broadcaster: 'b', kind: 'trade', exchange: '*', symbol: '*', predicate: null, paused: false, ...o });

  it('finds exactly the registrations whose kind and filter take the instrument, leaving paused ones out', () => {
    const m = new Matcher([
      row({ name: 'exact', exchange: 'sim', symbol: 'BTC/USDT' }),
      row({ name: 'sym-wild', exchange: 'sim', symbol: '*/USDT' }),
      row({ name: 'all' }),
      row({ name: 'ex-wild', exchange: 's?m', symbol: 'ETH/USDT' }),
      row({ name: 'candles', kind: 'candle' }),
      row({ name: 'paused', paused: true }),
      row({ name: 'b-paused', broadcasterPaused: true }),
      row({ name: 'stale', predicate: 'nope > 1' }),
    ]);
    const names = (ex: string, sym: string, kind: 'trade' | 'candle' = 'trade') => m.candidates(kind, ex, sym).map((c) => c.name);
    expect(names('sim', 'BTC/USDT')).toEqual(['all', 'exact', 'sym-wild']);
    expect(names('sim', 'ETH/USDT')).toEqual(['all', 'ex-wild', 'sym-wild']);
    expect(names('sim', 'ETH/USDT')).toEqual(['all', 'ex-wild', 'sym-wild']); // cached
    expect(names('kraken', 'BTC/EUR')).toEqual(['all']);
    expect(names('sim', 'BTC/USDT', 'candle')).toEqual(['candles']);
    expect(m.candidates('gap', 'sim', 'BTC/USDT')).toEqual([]);
    expect(m.rejected.map((r) => r.name)).toEqual(['stale']);
    expect(m.kindsNamed().sort()).toEqual(['candle', 'trade']);
  });

  it('property: candidates equal a plain scan with instrumentFilter over the same registrations', () => {
    const part = fc.constantFrom('sim', 'bin', 'binance', 'BTC/USDT', 'ETH/USDT', '*', '?im', 'b*', '*/USDT', 'ETH/*', '???/USDT');
    const rowArb = fc.record({ exchange: part, symbol: part, kind: fc.constantFrom('trade', 'candle'), paused: fc.boolean() });
    const instrument = fc.record({ ex: fc.constantFrom('sim', 'bin', 'binance', 'kraken'), sym: fc.constantFrom('BTC/USDT', 'ETH/USDT', 'DOGE/USDT', 'ETH/BTC') });
    fc.assert(
      fc.property(fc.array(rowArb, { maxLength: 40 }), fc.array(instrument, { minLength: 1, maxLength: 10 }), (rows, instruments) => {
        const regs = rows.map((r, i) => row({ ...r, name: `r${String(i).padStart(3, '0')}` }));
        const m = new Matcher(regs);
        for (const { ex, sym } of [...instruments, ...instruments]) {
          const want = regs.filter((r) => r.kind === 'trade' && !r.paused && instrumentFilter(r.exchange, r.symbol)(ex, sym)).map((r) => r.name);
          expect(m.candidates('trade', ex, sym).map((c) => c.name)).toEqual(want);
        }
      }),
      { numRuns: 300 },
    );
  });
});
