/** Every dialect the sim speaks, by name (see types.ts for what a dialect is). */
import { binance } from './binance/index.ts';
import { bybit } from './bybit/index.ts';
import { coinbaseexchange } from './coinbaseexchange/index.ts';
import { okx } from './okx/index.ts';
import { kraken } from './kraken/index.ts';
import type { DialectModule, DialectName } from './types.ts';

export { DIALECTS, type Dialect, type DialectModule, type DialectName } from './types.ts';

export const DIALECT_MODULES: Readonly<Record<DialectName, DialectModule>> = Object.freeze({
  binance,
  bybit,
  okx,
  kraken,
  coinbaseexchange,
});
