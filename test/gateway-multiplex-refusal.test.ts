/**
 * An exchange that refuses a multi-symbol subscription, on the real ccxt against the sim and the
 * real broker, for two venues' dialects:
 * - Binance: one symbol of the chunk is refused (sim fault `refuseSubscribe`: the venue answers
 *   `{"error":{"code":2,"msg":"Invalid request: invalid stream"}}` for the whole SUBSCRIBE);
 * - Bybit: the chunk is larger than Bybit spot takes (`symbolsPerSubscription: 12`, the venue's
 *   limit is 10 args: `args size >10`) AND one symbol of it is refused (`error:handler not
 *   found,topic:...`);
 * - OKX: one symbol refused (error 60018 naming its instId; OKX refuses per arg, and ccxt fails
 *   every watch of the connection with it, the answer naming no request).
 * Each entry streams trades and tickers (two multi-symbol subscriptions, each refused).
 * What a user expects: the refusal is logged naming the exchange and the symbols; the good symbols
 * stream over the websocket (no REST fallback, no gap record) and every trade the sim emitted for
 * them, from the first in Kafka to the last, is in Kafka once; the refused symbol alone falls back
 * to REST polling (its trades still reach Kafka, what polling cannot recover is a gap record).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { engineIdOfSpot } from '../sim/dialects/bybit/wire.ts';
import { buildSim, type DialectName, type Sim } from '../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix, until } from './harness/gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './harness/topics.ts';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'LTC/USDT', 'DOT/USDT', 'AVAX/USDT', 'LINK/USDT', 'TRX/USDT', 'BNB/USDT'];
const REFUSED = 'LTC/USDT';
const GOOD = SYMBOLS.filter((s) => s !== REFUSED);

/** The sim's trade id behind a trade id as the dialect prints it (Bybit: 19-digit execIds). */
const engineId = (dialect: DialectName, id: string): number => (dialect === 'bybit' ? (engineIdOfSpot(id) ?? NaN) : Number(id));

type Line = { level: number; msg: string } & Record<string, unknown>;

describe.each<[DialectName, Record<string, unknown>]>([
  ['binance', {}],
  ['bybit', { symbolsPerSubscription: 12 }],
  ['okx', {}],
])('%s refuses a multi-symbol subscription', (dialect, entryExtra) => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix(`gwrefuse${dialect}`);
  let sim: Sim;
  let gw: Gateway | undefined;
  let got: Decoded;
  const lines: Line[] = [];
  const fallbacks: Array<{ symbol: string; to: string }> = [];

  beforeAll(async () => {
    sim = buildSim({ seed: 17, symbols: SYMBOLS, tradesPerSecond: 10, historyDays: 0, dialects: [dialect] });
    await sim.start();
    sim.applyFault({ kind: 'refuseSubscribe', symbols: [REFUSED], ms: 3_600_000 });
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Line);
        cb();
      },
    });
    const config = gatewayConfig(brokers, prefix, [
      {
        id: dialect,
        name: 'sim',
        symbols: SYMBOLS,
        channels: { trades: {}, ticker: {} },
        backfillLookbackMinutes: 0,
        wsFallback: { afterMs: 0, pollIntervalMs: 1_000, probeInitialMs: 2_000, probeMaxMs: 4_000 },
        options: simOptions(sim, dialect),
        ...entryExtra,
      },
    ]);
    gw = buildGateway(config, { log: pino({ level: 'info' }, out) });
    gw.events.on('stream.fallback', (e) => fallbacks.push({ symbol: e.symbol, to: e.to }));
    const acked = new Map<string, number>();
    gw.events.on('produce.ack', (e) => {
      for (const r of e.records) if (r.kind === 'trade') acked.set(r.symbol, Math.max(acked.get(r.symbol) ?? 0, r.ts));
    });
    const report = await gw.start();
    expect(report.problems).toEqual([]);
    await sleep(3_000);
    // Every instrument, the refused one included, has trades in Kafka emitted after this point.
    const markUs = Math.max(...SYMBOLS.map((s) => sim.emitted.trades(s).at(-1)?.timestamp ?? 0)) * 1000;
    await until(() => SYMBOLS.every((s) => (acked.get(s) ?? 0) > markUs), 60_000, `every instrument's trades in Kafka (acked: ${JSON.stringify(Object.fromEntries(acked))})`);
    await sleep(2_000);
    await gw.close();
    gw = undefined;
    got = await readTopics(brokers, prefix, ['trade', 'ticker', 'gap']);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, ['trade', 'gap', 'instrument', 'ticker', 'candle', 'book']).catch(() => undefined);
  });

  it('logs the refusal naming the exchange and the symbols', () => {
    const refusals = lines.filter((l) => l.level >= 40 && /refused/.test(l.msg));
    console.log(`${dialect} refusal logs:\n${refusals.map((l) => `  ${l.msg}`).join('\n')}`);
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.some((l) => l.msg.includes(dialect) && l.msg.includes(REFUSED))).toBe(true);
    // The refused symbol alone, named as such.
    expect(refusals.some((l) => l.msg.includes(dialect) && (l.symbols as string[] | undefined)?.length === 1 && (l.symbols as string[])[0] === REFUSED)).toBe(true);
  });

  it('the good symbols stream over the websocket (trades and tickers), every trade once, no gap', () => {
    expect(fallbacks.filter((f) => GOOD.includes(f.symbol))).toEqual([]);
    expect(got.gap.filter((g) => GOOD.includes(g.symbol)).map((g) => `${g.symbol}: ${g.reason}`)).toEqual([]);
    for (const symbol of GOOD) {
      const ids = got.trade.filter((t) => t.symbol === symbol).map((t) => engineId(dialect, t.id));
      expect(ids.length, `${symbol}: no trades`).toBeGreaterThan(0);
      expect(new Set(ids).size, `${symbol}: duplicates`).toBe(ids.length);
      const sorted = [...ids].sort((a, b) => a - b);
      const want = sim.emitted.trades(symbol, { fromId: sorted[0]! }).filter((t) => t.id <= sorted.at(-1)!).map((t) => t.id);
      expect(sorted, `${symbol}: trades missing between the first and the last in Kafka`).toEqual(want);
      expect(got.ticker.filter((t) => t.symbol === symbol).length, `${symbol}: no tickers`).toBeGreaterThan(0);
    }
  });

  it('the refused symbol falls back to REST polling: its trades reach Kafka, what is missing is in a gap record', () => {
    expect(fallbacks.filter((f) => f.symbol === REFUSED && f.to === 'poll').length).toBeGreaterThan(0);
    const ids = new Set(got.trade.filter((t) => t.symbol === REFUSED).map((t) => engineId(dialect, t.id)));
    expect(ids.size).toBeGreaterThan(0);
    const gaps = got.gap.filter((g) => g.symbol === REFUSED && g.channel === 'trades');
    const stated = (tsUs: number) => gaps.some((g) => g.from_ts < tsUs && (g.to_ts === null || tsUs < g.to_ts));
    const first = Math.min(...ids);
    const last = Math.max(...ids);
    const lost = sim.emitted.trades(REFUSED, { fromId: first }).filter((t) => t.id <= last && !ids.has(t.id) && !stated(t.timestamp * 1000));
    expect(lost.map((t) => t.id)).toEqual([]);
  });
});
