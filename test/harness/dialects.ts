/**
 * The per-dialect case "websocket refused while REST answers" (issue 13), shared by the dialect
 * suites (test/dialects/*): a sim speaking one dialect, a gateway entry streaming trades with a
 * quick `wsFallback`; after a couple of seconds the sim's fault control refuses the dialect's
 * websocket upgrades (HTTP 403) for `refuseMs` and drops the open sockets, while REST keeps
 * answering. The gateway polls REST meanwhile and returns to the websocket; every switch is
 * recorded (with the URL and status the gateway logged). Call inside a `describe`: it registers the
 * `beforeAll`/`afterAll` and returns the outcome, filled in once `beforeAll` has run, and prints a
 * figures line per market.
 */
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { buildGateway, type Gateway } from '../../gateways/index.ts';
import { RECORD_KINDS } from '../../schemas/index.ts';
import { buildSim, type DialectName, type Sim, type SimTrade } from '../../sim/index.ts';
import { gatewayConfig, simOptions, sleep, uniquePrefix } from './gateway.ts';
import { deleteTopics, readTopics, type Decoded } from './topics.ts';

export interface RefusedMarket {
  /** The unified symbol configured in the gateway. */
  readonly symbol: string;
  /** The sim engine's symbol behind it (= symbol). */
  readonly engineSymbol?: string;
  /** The sim engine's trade id behind a stored trade id (Number(id) unless given), undefined when it is none of the sim's. */
  readonly engineId?: (storedId: string) => number | undefined;
}

export interface RefusedFeedOptions {
  readonly dialect: DialectName;
  /** The gateway entry's name. */
  readonly name: string;
  readonly markets: readonly RefusedMarket[];
  readonly seed: number;
  /** Trades per second per engine symbol (real time). */
  readonly tradesPerSecond: number;
  readonly refuseMs?: number;
  readonly pollIntervalMs?: number;
}

export interface FallbackSwitch {
  readonly symbol: string;
  readonly to: 'poll' | 'ws';
  readonly url: string | undefined;
  readonly status: number | undefined;
  readonly at: number;
}

export interface RefusedFeed {
  readonly sim: Sim;
  readonly got: Decoded;
  readonly switches: FallbackSwitch[];
  readonly refusedAt: number;
  readonly acceptedAt: number;
  readonly refuseMs: number;
  /** The engine ids of the stored trades of `symbol` (duplicates kept). */
  engineIds(symbol: string): number[];
  /** The sim's trades of `symbol` between the first and last stored one that were not stored. */
  missing(symbol: string): SimTrade[];
  /** How many of `symbol`'s trades were received while the websocket was refused (2 s in, to its end). */
  during(symbol: string): number;
}

export function feedRefusedWhileRestAnswers(o: RefusedFeedOptions): RefusedFeed {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix(`gw${o.name}`);
  const refuseMs = o.refuseMs ?? 8_000;
  const engineSymbols = [...new Set(o.markets.map((m) => m.engineSymbol ?? m.symbol))];
  const market = (symbol: string) => o.markets.find((m) => m.symbol === symbol)!;
  let sim: Sim | undefined;
  let gw: Gateway | undefined;
  const out = {
    switches: [] as FallbackSwitch[],
    refusedAt: 0,
    acceptedAt: 0,
    refuseMs,
    get sim() {
      return sim!;
    },
    got: undefined as unknown as Decoded,
    engineIds(symbol: string): number[] {
      const of = market(symbol).engineId ?? ((id: string) => Number(id));
      return out.got.trade.filter((t) => t.symbol === symbol).map((t) => of(t.id) ?? Number.NaN);
    },
    missing(symbol: string): SimTrade[] {
      const ids = out.engineIds(symbol);
      const stored = new Set(ids);
      const last = Math.max(...ids);
      return sim!.emitted.trades(market(symbol).engineSymbol ?? symbol, { fromId: Math.min(...ids) }).filter((t) => t.id <= last && !stored.has(t.id));
    },
    during(symbol: string): number {
      return out.got.trade.filter((t) => t.symbol === symbol && t.received_at / 1000 > out.refusedAt + 2_000 && t.received_at / 1000 < out.acceptedAt).length;
    },
  };

  beforeAll(async () => {
    sim = buildSim({ seed: o.seed, symbols: engineSymbols, tradesPerSecond: o.tradesPerSecond, historyDays: 0, dialects: [o.dialect] });
    await sim.start();
    const config = gatewayConfig(brokers, prefix, [
      {
        id: o.dialect,
        name: o.name,
        symbols: o.markets.map((m) => m.symbol),
        channels: { trades: {} },
        backfillLookbackMinutes: 0,
        wsFallback: { afterMs: 0, pollIntervalMs: o.pollIntervalMs ?? 1_000, probeInitialMs: 2_000, probeMaxMs: 3_000 },
        options: simOptions(sim, o.dialect),
      },
    ]);
    gw = buildGateway(config);
    gw.events.on('stream.fallback', (e) => out.switches.push({ symbol: e.symbol, to: e.to, url: e.url, status: e.status, at: Date.now() }));
    await gw.start();
    await sleep(2_000);
    out.refusedAt = Date.now();
    sim.applyFault({ kind: 'refuse', target: 'ws', status: 403, ms: refuseMs, dialect: o.dialect });
    sim.applyFault({ kind: 'drop', how: 'abrupt', dialect: o.dialect });
    await sleep(refuseMs);
    out.acceptedAt = Date.now();
    const back = () => o.markets.every((m) => out.switches.some((s) => s.symbol === m.symbol && s.to === 'ws'));
    const deadline = Date.now() + 15_000;
    while (!back() && Date.now() < deadline) await sleep(100);
    await sleep(2_000);
    await gw.close();
    out.got = await readTopics(brokers, prefix, ['trade', 'gap']);
    for (const { symbol } of o.markets) {
      const ids = out.engineIds(symbol);
      const mine = out.switches.filter((s) => s.symbol === symbol);
      console.log(
        `${o.dialect} ${symbol} ws refused ${refuseMs} ms: trades emitted ${ids.length - (ids.length - new Set(ids).size) + out.missing(symbol).length} (first to last stored), stored ${ids.length} ` +
          `(${out.during(symbol)} while refused), missing ${out.missing(symbol).length}, duplicates ${ids.length - new Set(ids).size}, ` +
          `switches ${mine.map((s) => `${s.to} after ${s.at - (s.to === 'poll' ? out.refusedAt : out.acceptedAt)} ms`).join(', ')}`,
      );
    }
  }, 90_000);

  afterAll(async () => {
    await gw?.close();
    await sim?.close();
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  return out;
}

/**
 * Asserts the closed 1m candles stored for `symbol` (the engine's `engineSymbol`): each bucket
 * once, contiguous, each equal to a closed candle the sim emitted. Returns their bucket opens (ms)
 * for a test's own bounds (how far back, how recent).
 */
export function expectClosedCandlesLikeSim(candles: Decoded['candle'], sim: Sim, symbol: string, engineSymbol = symbol): number[] {
  const closed = candles.filter((c) => c.symbol === symbol && c.closed).sort((a, b) => a.ts - b.ts);
  const ts = closed.map((c) => c.ts / 1000);
  expect(new Set(ts).size).toBe(ts.length);
  for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBe(60_000);
  const simCandles = new Map(sim.emitted.candles(engineSymbol, '1m', { includeHistory: true }).map((c) => [c.timestamp, c]));
  for (const c of closed) {
    const s = simCandles.get(c.ts / 1000)!;
    expect(s.closed).toBe(true);
    expect({ o: c.open, h: c.high, l: c.low, c: c.close, v: c.volume, tf: c.timeframe }).toEqual({ o: s.open, h: s.high, l: s.low, c: s.close, v: s.volume, tf: '1m' });
  }
  return ts;
}
