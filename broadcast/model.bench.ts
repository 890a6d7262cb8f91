/**
 * Microbench of the per-record matching (`node --import tsx broadcast/model.bench.ts`): 1,000
 * registrations (exact instruments, symbol patterns, exchange patterns; a third with a crosses
 * predicate) over a stream of trades on 40 instruments, through Matcher.candidates and each
 * candidate's predicate, beside a plain scan of every registration's filter per record. Prints
 * records/s and matches/s; the delivery-side bench is `npm run bench:broadcast`.
 */
import { Matcher, instrumentFilter, type RegistrationRow } from './model.ts';
import type { PredicateState } from './predicate.ts';

const REGS = 1_000;
const RECORDS = Number(process.env.RECORDS ?? 200_000);
const exchanges = ['binance', 'okx', 'kraken', 'bybit'];
const symbols = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'BTC/EUR', 'ETH/BTC', 'DOGE/USDT', 'LTC/USDT', 'DOT/USDT'];
const predicates = [null, "side = 'buy' and amount > 0.5", 'price crosses above 100', 'amount >= 0.9 or price < 90'];

const rows: RegistrationRow[] = Array.from({ length: REGS }, (_, i) => {
  const shape = i % 10;
  const exchange = shape < 6 ? exchanges[i % 4]! : shape < 9 ? exchanges[i % 4]! : '*';
  const symbol = shape < 6 ? symbols[i % 10]! : shape < 9 ? '*/USDT' : symbols[i % 10]!;
  return { name: `r${String(i).padStart(4, '0')}`, broadcaster: 'b', kind: 'trade', exchange, symbol, predicate: predicates[i % 4]!, paused: false };
});

let seed = 42;
const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
const prices = new Map<string, number>();
const trades = Array.from({ length: RECORDS }, (_, i) => {
  const exchange = exchanges[i % 4]!;
  const symbol = symbols[Math.floor(rand() * 10)]!;
  const key = `${exchange}|${symbol}`;
  const price = (prices.get(key) ?? 100) + (rand() - 0.5) * 2;
  prices.set(key, price);
  return { exchange, symbol, ts: i, received_at: i, id: String(i), side: rand() < 0.5 ? 'buy' : 'sell', price, amount: rand() };
});

function run(label: string, candidates: (ex: string, sym: string) => readonly { name: string; predicate: { test: Matcher['registrations'][number]['predicate']['test'] } }[]): void {
  const state = new Map<string, PredicateState | undefined>();
  let matched = 0;
  const t0 = performance.now();
  for (const t of trades) {
    for (const c of candidates(t.exchange, t.symbol)) {
      const key = `${c.name}|${t.exchange}|${t.symbol}`;
      const r = c.predicate.test(t, state.get(key));
      if (r.state) state.set(key, r.state);
      if (r.match) matched++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`${label}: ${Math.round(RECORDS / s).toLocaleString('en')} records/s, ${Math.round(matched / s).toLocaleString('en')} matches/s (${matched.toLocaleString('en')} matches over ${RECORDS.toLocaleString('en')} trades, ${REGS} registrations)`);
}

const m = new Matcher(rows);
const filters = m.registrations.map((c) => ({ c, f: instrumentFilter(c.exchange, c.symbol) }));
run('plain scan of every filter', (ex, sym) => filters.filter((x) => x.f(ex, sym)).map((x) => x.c));
run('Matcher.candidates', (ex, sym) => m.candidates('trade', ex, sym));
