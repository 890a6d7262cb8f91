/**
 * The exchange files, by ccxt id. An exchange without a file gets the generic behaviour
 * (`default.ts`); adding an exchange by config needs no code, and special handling for one
 * exchange lives only in its file.
 */
import { binanceAdapter } from './binance.ts';
import { coinbaseexchangeAdapter } from './coinbaseexchange.ts';
import { bybitAdapter } from './bybit.ts';
import { defaultAdapter } from './default.ts';
import { okxAdapter } from './okx.ts';
import type { ExchangeAdapter } from './types.ts';

export type { ExchangeAdapter, RefillEnd, RefillOptions, TradeCursor } from './types.ts';

const ADAPTERS: Readonly<Record<string, Partial<ExchangeAdapter>>> = {
  binance: binanceAdapter,
  coinbaseexchange: coinbaseexchangeAdapter,
  bybit: bybitAdapter,
  okx: okxAdapter,
};

export function adapterFor(ccxtId: string): ExchangeAdapter {
  return { ...defaultAdapter, ...ADAPTERS[ccxtId] };
}
