import { TickflowError } from '../core/errors.ts';

/**
 * Static description of one simulated spot market: ids the way Binance spells them, and the
 * tick/step sizes that every price and quantity the sim emits is a whole multiple of. Prices and
 * quantities are kept as integers (ticks, steps) inside the sim and formatted only on the wire,
 * so the numbers a client parses are exactly the numbers the sim recorded.
 */
export interface MarketSpec {
  /** Unified ccxt symbol, `BTC/USDT`. */
  readonly symbol: string;
  /** Exchange id, `BTCUSDT`. */
  readonly id: string;
  /** Lower-case id as used in stream names, `btcusdt`. */
  readonly lid: string;
  readonly base: string;
  readonly quote: string;
  /** Price tick = 10^-tickDecimals. */
  readonly tickDecimals: number;
  /** Quantity step = 10^-stepDecimals. */
  readonly stepDecimals: number;
  readonly tick: number;
  readonly step: number;
  readonly startPrice: number;
  /** Minimum order quantity, in steps. */
  readonly minQtySteps: number;
  /** Minimum notional in quote units (Binance's NOTIONAL filter). */
  readonly minNotional: number;
}

/** Rough real-world levels so the demo looks familiar; anything else starts at 100. */
const DEFAULT_START_PRICES: Record<string, number> = {
  BTC: 60_000,
  ETH: 3_000,
  BNB: 550,
  SOL: 150,
  XRP: 0.6,
  DOGE: 0.15,
  ADA: 0.45,
  LTC: 80,
};

const MAX_DECIMALS = 8;

export function marketSpec(symbol: string, startPrice?: number): MarketSpec {
  const m = /^([A-Z0-9]{2,12})\/([A-Z0-9]{2,12})$/.exec(symbol);
  if (!m) {
    throw new TickflowError('CONFIG_INVALID', `sim: symbol "${symbol}" is not a unified spot symbol like BTC/USDT`);
  }
  const base = m[1]!;
  const quote = m[2]!;
  const price = startPrice ?? DEFAULT_START_PRICES[base] ?? 100;
  if (!(price > 0) || !Number.isFinite(price)) {
    throw new TickflowError('CONFIG_INVALID', `sim: start price of ${symbol} must be a positive number, got ${price}`);
  }
  const magnitude = Math.floor(Math.log10(price));
  // About six significant digits of price, and one step worth a few cents to a dollar:
  // 60000 -> tick 0.01, step 0.00001 (Binance's BTCUSDT); 3000 -> 0.001/0.0001; 0.15 -> 0.0000001/1.
  const tickDecimals = clamp(6 - magnitude, 2, MAX_DECIMALS);
  const stepDecimals = clamp(magnitude + 1, 0, MAX_DECIMALS);
  const step = 10 ** -stepDecimals;
  return {
    symbol,
    id: base + quote,
    lid: (base + quote).toLowerCase(),
    base,
    quote,
    tickDecimals,
    stepDecimals,
    tick: 10 ** -tickDecimals,
    step,
    startPrice: price,
    minQtySteps: 1,
    minNotional: 5,
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000', '0000000', '00000000'];

/**
 * `units` × 10^-decimals as Binance writes numbers: always 8 decimals ("60000.01000000").
 * Pure string work on the integer, so the text is exact; `units / 10 ** decimals` parses back to
 * the very same double that `Number(text)` gives.
 */
export function fmtUnits(units: number, decimals: number): string {
  const neg = units < 0;
  const s = String(neg ? -units : units);
  let out: string;
  if (decimals === 0) out = s + '.00000000';
  else if (s.length > decimals) out = s.slice(0, s.length - decimals) + '.' + s.slice(s.length - decimals) + ZEROS[MAX_DECIMALS - decimals];
  else out = '0.' + ZEROS[decimals - s.length] + s + ZEROS[MAX_DECIMALS - decimals];
  return neg ? '-' + out : out;
}

/** A float (quote volumes, averages) the way Binance writes it. */
export function fmtFloat(x: number): string {
  return Number.isFinite(x) ? x.toFixed(MAX_DECIMALS) : '0.00000000';
}

export function unitsToNumber(units: number, decimals: number): number {
  return units / 10 ** decimals;
}

/** One entry of `GET /api/v3/exchangeInfo` `symbols`, as Binance spot sends it today. */
export function exchangeInfoSymbol(spec: MarketSpec): Record<string, unknown> {
  return {
    symbol: spec.id,
    status: 'TRADING',
    baseAsset: spec.base,
    baseAssetPrecision: 8,
    quoteAsset: spec.quote,
    quotePrecision: 8,
    quoteAssetPrecision: 8,
    baseCommissionPrecision: 8,
    quoteCommissionPrecision: 8,
    orderTypes: ['LIMIT', 'LIMIT_MAKER', 'MARKET', 'STOP_LOSS', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT', 'TAKE_PROFIT_LIMIT'],
    icebergAllowed: true,
    ocoAllowed: true,
    otoAllowed: true,
    quoteOrderQtyMarketAllowed: true,
    allowTrailingStop: true,
    cancelReplaceAllowed: true,
    amendAllowed: true,
    isSpotTradingAllowed: true,
    isMarginTradingAllowed: false,
    filters: [
      {
        filterType: 'PRICE_FILTER',
        minPrice: fmtUnits(1, spec.tickDecimals),
        maxPrice: fmtUnits(1_000_000 * 10 ** spec.tickDecimals, spec.tickDecimals),
        tickSize: fmtUnits(1, spec.tickDecimals),
      },
      {
        filterType: 'LOT_SIZE',
        minQty: fmtUnits(spec.minQtySteps, spec.stepDecimals),
        maxQty: fmtUnits(9_000_000 * 10 ** spec.stepDecimals, spec.stepDecimals),
        stepSize: fmtUnits(1, spec.stepDecimals),
      },
      { filterType: 'ICEBERG_PARTS', limit: 10 },
      {
        filterType: 'MARKET_LOT_SIZE',
        minQty: '0.00000000',
        maxQty: fmtUnits(100_000 * 10 ** spec.stepDecimals, spec.stepDecimals),
        stepSize: '0.00000000',
      },
      {
        filterType: 'TRAILING_DELTA',
        minTrailingAboveDelta: 10,
        maxTrailingAboveDelta: 2000,
        minTrailingBelowDelta: 10,
        maxTrailingBelowDelta: 2000,
      },
      {
        filterType: 'PERCENT_PRICE_BY_SIDE',
        bidMultiplierUp: '5',
        bidMultiplierDown: '0.2',
        askMultiplierUp: '5',
        askMultiplierDown: '0.2',
        avgPriceMins: 5,
      },
      {
        filterType: 'NOTIONAL',
        minNotional: fmtFloat(spec.minNotional),
        applyMinToMarket: true,
        maxNotional: '9000000.00000000',
        applyMaxToMarket: false,
        avgPriceMins: 5,
      },
      { filterType: 'MAX_NUM_ORDERS', maxNumOrders: 200 },
      { filterType: 'MAX_NUM_ALGO_ORDERS', maxNumAlgoOrders: 5 },
    ],
    permissions: [],
    permissionSets: [['SPOT']],
    defaultSelfTradePreventionMode: 'EXPIRE_MAKER',
    allowedSelfTradePreventionModes: ['EXPIRE_TAKER', 'EXPIRE_MAKER', 'EXPIRE_BOTH', 'DECREMENT'],
  };
}
