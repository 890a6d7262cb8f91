import type { Market } from 'ccxt';
import { describe, expect, it } from 'vitest';
import { isDynamic, patternRegex, ReconciledSet, resolveSymbols, type RemovalReason } from './instruments.ts';

const m = (symbol: string, type = 'spot', active: boolean | undefined = true) => ({ symbol, type, active }) as unknown as Market;
const markets = Object.fromEntries(
  [m('BTC/USDT'), m('ETH/USDT'), m('ETH/BTC'), m('SOL/USDT', 'spot', false), m('BTC/USDT:USDT', 'swap'), m('XRP/USDC', 'spot', undefined), m('BTC/USDC')].map((x) => [x!.symbol, x]),
);

describe('resolveSymbols', () => {
  it('expands patterns over active markets of the wanted types, keeping literal symbols as written', () => {
    expect(resolveSymbols(['*/USDT'], markets)).toEqual(['BTC/USDT', 'ETH/USDT']);
    expect(resolveSymbols(['BTC/*'], markets)).toEqual(['BTC/USDC', 'BTC/USDT']);
    expect(resolveSymbols(['*/USDT:USDT'], markets, { types: ['swap'] })).toEqual(['BTC/USDT:USDT']);
    expect(resolveSymbols(['*/USDT'], markets, { types: ['spot', 'swap'] })).toEqual(['BTC/USDT', 'ETH/USDT']);
    expect(resolveSymbols(['???/USDC'], markets)).toEqual(['BTC/USDC', 'XRP/USDC']);
    expect(resolveSymbols(['DOGE/USDT', 'ETH/BTC', '*/USDT'], markets)).toEqual(['DOGE/USDT', 'ETH/BTC', 'BTC/USDT', 'ETH/USDT']);
    expect(resolveSymbols('all', markets)).toEqual(['BTC/USDC', 'BTC/USDT', 'ETH/BTC', 'ETH/USDT', 'XRP/USDC']);
    expect(resolveSymbols('all', markets, { types: ['swap'] })).toEqual(['BTC/USDT:USDT']);
  });

  it('patterns match whole symbols, never across / or :', () => {
    expect(patternRegex('*/USDT').test('BTC/USDT:USDT')).toBe(false);
    expect(patternRegex('B*').test('BTC/USDT')).toBe(false);
    expect(patternRegex('1000*/USDT').test('1000PEPE/USDT')).toBe(true);
    expect(isDynamic(['BTC/USDT'])).toBe(false);
    expect(isDynamic(['BTC/USDT', '*/USDC'])).toBe(true);
    expect(isDynamic('all')).toBe(true);
  });
});

describe('ReconciledSet', () => {
  function driven() {
    const log: string[] = [];
    const set = new ReconciledSet({
      start: async (s) => void log.push(`start ${s.join(',')}`),
      stop: async (s, why: RemovalReason) => void log.push(`stop ${s.join(',')} ${why}`),
    });
    return { set, log };
  }

  it('starts new symbols, stops delisted ones, and moves filtered ones away as shard', async () => {
    const { set, log } = driven();
    await set.setResolved(['A/X', 'B/X', 'C/X']);
    expect(set.current()).toEqual(['A/X', 'B/X', 'C/X']);
    await set.setResolved(['A/X', 'C/X', 'D/X'], 'delisted');
    await set.setFilter((s) => s !== 'C/X', 'shard');
    expect(set.current()).toEqual(['A/X', 'D/X']);
    // Delisted while filtered away: nothing runs to stop; back under the filter, it is not resolved.
    await set.setResolved(['A/X', 'D/X'], 'delisted');
    await set.setFilter(null, 'shard');
    await set.setResolved(['A/X', 'C/X', 'D/X']);
    expect(log).toEqual(['start A/X,B/X,C/X', 'stop B/X delisted', 'start D/X', 'stop C/X shard', 'start C/X']);
    expect(set.current()).toEqual(['A/X', 'C/X', 'D/X']);
  });

  it('runs one reconcile at a time; each brings the running set to the latest desired one', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const set = new ReconciledSet({
      start: async (s) => {
        order.push(`start ${s.join(',')}`);
        if (s.includes('A/X')) await gate;
      },
      stop: async (s, why) => void order.push(`stop ${s.join(',')} ${why}`),
    });
    const a = set.setResolved(['A/X']);
    await new Promise((r) => setTimeout(r, 20));
    const b = set.setFilter(() => false, 'shard');
    await new Promise((r) => setTimeout(r, 20));
    // The stop waits for the start in flight.
    expect(order).toEqual(['start A/X']);
    release();
    await Promise.all([a, b]);
    expect(order).toEqual(['start A/X', 'stop A/X shard']);
    expect(set.current()).toEqual([]);
  });
});
