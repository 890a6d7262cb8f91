/**
 * Helpers for gateway tests: a config with one entry pointing at a sim, each test with its own
 * topic prefix.
 */
import { randomBytes } from 'node:crypto';
import { parseConfig, type Config } from '../../config/schema.ts';
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
