/**
 * Helpers for gateway tests: a config with one entry pointing at a sim, each test with its own
 * topic prefix.
 */
import { randomBytes } from 'node:crypto';
import { parseConfig, type Config } from '../../config/schema.ts';
import type { GatewayEvents } from '../../gateways/index.ts';
import type { DialectName, Sim } from '../../sim/index.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function uniquePrefix(tag: string): string {
  return `t${tag}${randomBytes(4).toString('hex')}`;
}

/**
 * The entry's `options` for a sim (Binance unless a dialect is named; the entry's `id` must be
 * that dialect's ccxt id): its URLs, no rate limiter, a short ccxt reconnect backoff.
 */
export function simOptions(sim: Sim, dialect: DialectName = 'binance'): Record<string, unknown> {
  const o = sim.ccxtOptions(dialect) as { options?: Record<string, unknown> };
  return { ...o, enableRateLimit: false, options: { ...o.options, ws: { backoff: { base: 100, max: 1000 } } } };
}


export function gatewayConfig(brokers: readonly string[], prefix: string, exchanges: unknown[], kafka: Record<string, unknown> = {}): Config {
  return parseConfig({ kafka: { brokers: [...brokers], topicPrefix: prefix, partitions: 2, ...kafka }, exchanges }, { env: {} });
}

/** Waits until `pred` holds, polling. */
export async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * The trade streams of `symbols`, followed through the gateway's events, so a test dropping the
 * websocket can count on each drop being one outage of each stream: `live()` waits until every
 * stream has recovered from every drop so far (its gap closed) and delivered since. Dropping on a
 * timer alone does not: under load a drop can land before a stream's first message or while it is
 * still down from the previous drop, and merges into that outage.
 */
export function tradeStreams(events: GatewayEvents, symbols: readonly string[]) {
  const s = new Map(symbols.map((sym) => [sym, { down: false, delivered: false, resumed: 0 }]));
  let drops = 0;
  events.on('stream.down', (e) => {
    const st = e.channel === 'trades' ? s.get(e.symbol) : undefined;
    if (st) Object.assign(st, { down: true, delivered: false });
  });
  events.on('stream.resumed', (e) => {
    const st = e.channel === 'trades' ? s.get(e.symbol) : undefined;
    if (st) Object.assign(st, { down: false, resumed: st.resumed + 1 });
  });
  events.on('stream.messages', (e) => {
    const st = e.channel === 'trades' ? s.get(e.symbol) : undefined;
    if (st && !st.down) st.delivered = true;
  });
  const isLive = () => [...s.values()].every((st) => !st.down && st.delivered && st.resumed >= drops);
  return {
    /** Waits until every trade stream is back from every drop so far and delivering. */
    live: (timeoutMs = 30_000) =>
      until(isLive, timeoutMs, 'trade streams live').catch(() => {
        throw new Error(`timed out waiting for the trade streams to be live after ${drops} drops: ${JSON.stringify(Object.fromEntries(s))}`);
      }),
    /** Counts a drop the test made (each stream must recover from it before `live()` holds). */
    dropped: () => void drops++,
  };
}
