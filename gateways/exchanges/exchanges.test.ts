/**
 * The exchange files' trade refills, with ccxt's REST calls stubbed: Binance pages by id on the
 * endpoint whose ids match the stream; OKX pages backwards and hands pages over oldest first;
 * the generic refill pages forward by time.
 */
import ccxt, { type Exchange, type Trade } from 'ccxt';
import { describe, expect, it } from 'vitest';
import { defaultAdapter } from './default.ts';
import { adapterFor, type RefillEnd } from './index.ts';

const trade = (id: number, ts = id): Trade => ({ id: String(id), timestamp: ts, price: 1, amount: 1, side: 'buy', symbol: 'BTC/USDT' }) as Trade;

async function collect(gen: AsyncGenerator<Trade[], unknown>): Promise<string[]> {
  const ids: string[] = [];
  for await (const page of gen) ids.push(...page.map((t) => String(t.id)));
  return ids;
}

/** The pages' ids and how the refill ended (its return value). */
async function drain(gen: AsyncGenerator<Trade[], RefillEnd | void>): Promise<{ ids: number[]; end: RefillEnd | void }> {
  const ids: number[] = [];
  for (;;) {
    const step = await gen.next();
    if (step.done) return { ids, end: step.value };
    ids.push(...step.value.map((t) => Number(t.id)));
  }
}

function binance(apiKey?: string): { ex: Exchange; calls: Record<string, unknown>[] } {
  const a = adapterFor('binance');
  const ex = new ccxt.binance({ ...a.ccxtDefaults(apiKey ? { apiKey } : {}), ...(apiKey ? { apiKey } : {}) });
  ex.setMarkets([{ id: 'BTCUSDT', symbol: 'BTC/USDT', base: 'BTC', quote: 'USDT', type: 'spot', spot: true } as never]);
  const calls: Record<string, unknown>[] = [];
  ex.fetchTrades = async (_s, _since, limit, params = {}) => {
    calls.push({ limit, ...params });
    const from = Number(params.fromId);
    const last = 3_000_002_500; // the newest trade on the exchange
    const n = Math.max(0, Math.min(limit ?? 500, last - from + 1));
    return Array.from({ length: n }, (_, i) => trade(from + i));
  };
  (ex as unknown as Record<string, unknown>).publicGetAggTrades = async () => [{ a: 3_000_000_100, f: 9_100, l: 9_100 }];
  return { ex, calls };
}

describe('binance', () => {
  it('without an apiKey streams @aggTrade and refills from aggTrades by fromId, 1000 per page', async () => {
    const { ex, calls } = binance();
    expect((ex.options as { watchTrades: { name: string } }).watchTrades.name).toBe('aggTrade');
    const ids = await collect(adapterFor('binance').refillTrades(ex, 'BTC/USDT', { id: '3000000000', ts: 0 }, { maxPages: 100 }));
    expect(ids[0]).toBe('3000000001');
    expect(ids.at(-1)).toBe('3000002500');
    expect(ids).toHaveLength(2500);
    expect(calls.map((c) => [c.fetchTradesMethod, c.fromId, c.limit])).toEqual([
      ['publicGetAggTrades', '3000000001', 1000],
      ['publicGetAggTrades', '3000001001', 1000],
      ['publicGetAggTrades', '3000002001', 1000],
    ]);
    expect(adapterFor('binance').checkOptions(ex)).toEqual([]);
  });

  it('starts from the first trade at a time when none was seen yet', async () => {
    const { ex, calls } = binance();
    await collect(adapterFor('binance').refillTrades(ex, 'BTC/USDT', { id: undefined, ts: 1_700_000_000_000 }, { maxPages: 1 }));
    expect(calls[0]).toMatchObject({ fromId: '3000000100' });
  });

  it('with an apiKey streams @trade and refills fills from historicalTrades', async () => {
    const { ex, calls } = binance('k');
    expect((ex.options as { watchTrades?: { name?: string } }).watchTrades?.name ?? 'trade').toBe('trade');
    await collect(adapterFor('binance').refillTrades(ex, 'BTC/USDT', { id: '3000002000', ts: 0 }, { maxPages: 5 }));
    expect(calls[0]).toMatchObject({ fetchTradesMethod: 'publicGetHistoricalTrades', fromId: '3000002001' });
  });

  it('warns when the @trade stream is forced without a key (refill ids would not match)', () => {
    const ex = new ccxt.binance({ options: { watchTrades: { name: 'trade' } } });
    expect(adapterFor('binance').checkOptions(ex)[0]).toMatch(/without an apiKey/);
  });
});

describe('okx', () => {
  it('pages history-trades backwards from the present to the last trade produced, then oldest first', async () => {
    const ex = new ccxt.okx();
    const calls: Record<string, unknown>[] = [];
    ex.fetchTrades = async (_s, _since, limit, params = {}) => {
      calls.push(params);
      const before = params.after !== undefined ? Number(params.after) : 1_251; // exclusive upper id
      return Array.from({ length: Math.min(limit!, before - 1) }, (_, i) => trade(before - 1 - i)); // newest first, like OKX
    };
    const ids = await collect(adapterFor('okx').refillTrades(ex, 'BTC/USDT', { id: '1000', ts: 0 }, { maxPages: 50 }));
    expect(calls.map((c) => c.after)).toEqual([undefined, '1151', '1051']);
    expect(calls.every((c) => c.method === 'publicGetMarketHistoryTrades')).toBe(true);
    const numeric = ids.map(Number);
    expect(Math.min(...numeric)).toBeLessThanOrEqual(1001);
    expect(numeric.filter((n) => n > 1000).sort((a, b) => a - b)).toEqual(Array.from({ length: 250 }, (_, i) => 1001 + i));
    // Pages come oldest first.
    expect(numeric.indexOf(1001)).toBeLessThan(numeric.indexOf(1250));
  });
});

describe('coinbaseexchange', () => {
  it('pages products/{id}/trades backwards by the `after` trade id to the last trade produced, then oldest first', async () => {
    const ex = new ccxt.coinbaseexchange();
    const calls: Record<string, unknown>[] = [];
    ex.fetchTrades = async (_s, since, limit, params = {}) => {
      calls.push({ since, limit, ...params });
      const before = params.after !== undefined ? Number(params.after) : 1_251;
      return Array.from({ length: Math.min(limit!, before - 1) }, (_, i) => trade(before - 1 - i)); // newest first
    };
    const { ids, end } = await drain(adapterFor('coinbaseexchange').refillTrades(ex, 'BTC/USD', { id: '1000', ts: 0 }, { maxPages: 50 }));
    expect(calls).toEqual([
      { since: undefined, limit: 100 },
      { since: undefined, limit: 100, after: '1151' },
      { since: undefined, limit: 100, after: '1051' },
    ]);
    expect(ids.filter((n) => n > 1000).sort((a, b) => a - b)).toEqual(Array.from({ length: 250 }, (_, i) => 1001 + i));
    expect(ids.indexOf(1001)).toBeLessThan(ids.indexOf(1250));
    expect(end).toEqual({ reachedCursor: true });
  });
});

describe('default', () => {
  it('pages forward by time, inclusive of the last millisecond, until nothing new', async () => {
    const ex = new ccxt.kraken();
    const all = Array.from({ length: 25 }, (_, i) => trade(i + 1, 1_000 + Math.floor(i / 2))); // two trades per ms
    const sinces: number[] = [];
    ex.fetchTrades = async (_s, since) => {
      sinces.push(since!);
      return all.filter((t) => t.timestamp! >= since!).slice(0, 10);
    };
    const ids = await collect(adapterFor('kraken').refillTrades(ex, 'BTC/USD', { id: '4', ts: 1_001 }, { maxPages: 20 }));
    expect([...new Set(ids.map(Number))].filter((n) => n > 4).sort((a, b) => a - b)).toEqual(Array.from({ length: 21 }, (_, i) => i + 5));
    expect(sinces[0]).toBe(1_001);
  });
});

describe('a refill that cannot reach back', () => {
  /** Like Bybit (or Coinbase Exchange without its cursor): the latest `n` trades whatever `since` says, then filtered by ccxt's parseTrades. The generic refill (`default.ts`) on such an exchange; Bybit's own file: bybit.test.ts. */
  const latestOnly = (ex: Exchange, all: Trade[], n: number, calls: (number | undefined)[] = []) => {
    ex.fetchTrades = async (_s, since) => {
      calls.push(since);
      return all.slice(-n).filter((t) => since === undefined || t.timestamp! >= since);
    };
  };
  const all = Array.from({ length: 100 }, (_, i) => trade(i + 1, 10_000 + i * 10));

  it('generic: says so when the first page does not hold the last trade produced (fetchTrades ignores since)', async () => {
    const ex = new ccxt.bybit();
    const calls: (number | undefined)[] = [];
    latestOnly(ex, all, 20, calls);
    const { ids, end } = await drain(defaultAdapter.refillTrades(ex, 'BTC/USDT', { id: '50', ts: 10_490 }, { maxPages: 20 }));
    expect(Math.min(...ids)).toBe(81);
    expect(end).toMatchObject({ reachedCursor: false, why: expect.stringMatching(/ignores since/) });
    expect(calls).toHaveLength(2); // the second page (since = the newest) brings nothing new
  });

  it('generic: reached when the page holds the last trade produced, or when no trade was produced yet', async () => {
    const ex = new ccxt.bybit();
    latestOnly(ex, all, 60);
    expect((await drain(defaultAdapter.refillTrades(ex, 'BTC/USDT', { id: '50', ts: 10_490 }, { maxPages: 20 }))).end).toEqual({ reachedCursor: true });
    expect((await drain(defaultAdapter.refillTrades(ex, 'BTC/USDT', { id: undefined, ts: 10_495 }, { maxPages: 20 }))).end).toEqual({ reachedCursor: true });
  });

  it('binance: a page that starts after the asked fromId', async () => {
    const { ex } = binance();
    ex.fetchTrades = async () => Array.from({ length: 10 }, (_, i) => trade(3_000_002_491 + i));
    const { ids, end } = await drain(adapterFor('binance').refillTrades(ex, 'BTC/USDT', { id: '3000000000', ts: 0 }, { maxPages: 100 }));
    expect(ids[0]).toBe(3_000_002_491);
    expect(end).toMatchObject({ reachedCursor: false, why: 'publicGetAggTrades answered from id 3000002491 when asked from 3000000001' });
  });

  it('okx: history that keeps answering the same page', async () => {
    const ex = new ccxt.okx();
    ex.fetchTrades = async () => Array.from({ length: 100 }, (_, i) => trade(2_000 - i));
    const { end } = await drain(adapterFor('okx').refillTrades(ex, 'BTC/USDT', { id: '1000', ts: 0 }, { maxPages: 50 }));
    expect(end).toMatchObject({ reachedCursor: false });
  });
});
