/**
 * Opt-in, for users with internet: the gateway against the real Binance and OKX public
 * endpoints, into the real Kafka. `TICKFLOW_LIVE=1 npx vitest run test/gateway-live.test.ts`.
 * Skipped by default (no exchange is reachable from the development machines).
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { buildGateway, type Gateway } from '../gateways/index.ts';
import { gatewayConfig, sleep, uniquePrefix } from './harness/gateway.ts';
import { deleteTopics, readTopics } from './harness/topics.ts';
import { RECORD_KINDS } from '../schemas/index.ts';

describe.skipIf(!process.env.TICKFLOW_LIVE)('live exchanges (TICKFLOW_LIVE=1)', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwlive');
  let gw: Gateway | undefined;

  afterAll(async () => {
    await gw?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  it('streams trades, tickers, candles and books from Binance and OKX', async () => {
    const channels = { trades: {}, ticker: {}, ohlcv: { timeframes: ['1m'] }, book: { depth: 5, intervalMs: 1000 } };
    const spot = { options: { fetchMarkets: { types: ['spot'] } } };
    gw = buildGateway(
      gatewayConfig(brokers, prefix, [
        { id: 'binance', symbols: ['BTC/USDT', 'ETH/USDT'], channels, backfillLookbackMinutes: 30, options: spot },
        { id: 'okx', symbols: ['BTC/USDT'], channels, backfillLookbackMinutes: 30, options: spot },
      ]),
    );
    const report = await gw.start();
    expect(report.problems.filter((p) => p.severity === 'error')).toEqual([]);
    expect(report.workers.map((w) => [w.name, w.status])).toEqual([
      ['binance', 'running'],
      ['okx', 'running'],
    ]);
    await sleep(30_000);
    await gw.close();
    const got = await readTopics(brokers, prefix, RECORD_KINDS);
    for (const [exchange, symbol] of [
      ['binance', 'BTC/USDT'],
      ['okx', 'BTC/USDT'],
    ] as const) {
      const trades = got.trade.filter((t) => t.exchange === exchange && t.symbol === symbol);
      expect(trades.length).toBeGreaterThan(0);
      expect(new Set(trades.map((t) => t.id)).size).toBe(trades.length);
      expect(trades.every((t) => t.side === 'buy' || t.side === 'sell')).toBe(true);
      const ticker = got.ticker.find((t) => t.exchange === exchange && t.symbol === symbol)!;
      expect(ticker.bid).toBeGreaterThan(0);
      expect(ticker.ask).toBeGreaterThanOrEqual(ticker.bid!);
      const closed = got.candle.filter((c) => c.exchange === exchange && c.symbol === symbol && c.closed).map((c) => c.ts);
      expect(closed.length).toBeGreaterThanOrEqual(25); // the 30-minute history
      expect(new Set(closed).size).toBe(closed.length);
      expect(got.book.some((b) => b.exchange === exchange && b.symbol === symbol && b.bids.length === 5)).toBe(true);
      expect(got.instrument.some((i) => i.exchange === exchange && i.symbol === symbol)).toBe(true);
    }
  }, 120_000);
});
