/**
 * Trade bookkeeping per instrument, shared by the stream, the poll and the refills: what was
 * produced last (the refill cursor) and whether a trade was produced already (dedupe by id).
 */
import type { Trade as CcxtTrade } from 'ccxt';
import type { TradeCursor } from './exchanges/index.ts';
import { normalizeTrade, tradeId } from './normalize.ts';
import type { Trade } from '../schemas/index.ts';

const INT = /^\d{1,30}$/;

/** Compares two non-negative integer strings without leading zeros. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export class TradeLedger {
  private readonly monotonic: boolean;
  private readonly remember: number;
  /** Newest trade produced (by id when ids are monotonic, else by arrival). */
  private lastId: string | undefined;
  private lastTs: number | undefined;
  private readonly recent = new Set<string>();
  private readonly ring: string[];
  private ringAt = 0;

  constructor(monotonic: boolean, remember = 200_000) {
    this.monotonic = monotonic;
    this.remember = remember;
    this.ring = new Array<string>(monotonic ? 0 : remember);
  }

  /** Where a refill starts: after the newest trade produced. */
  cursor(fallbackTsMs: number): TradeCursor {
    return { id: this.lastId, ts: this.lastTs ?? fallbackTsMs };
  }

  get lastTradeTsMs(): number | undefined {
    return this.lastTs;
  }

  get lastTradeId(): string | undefined {
    return this.lastId;
  }

  /** Continues from a trade produced by an earlier process (its position read back from Kafka). */
  resume(id: string, tsMs: number): void {
    if (this.lastId !== undefined) return;
    this.admit(id, tsMs);
  }

  /** True (and remembered) when the trade was not produced before. */
  admit(id: string, tsMs: number): boolean {
    if (this.monotonic && INT.test(id)) {
      if (this.lastId !== undefined && INT.test(this.lastId) && compareIds(id, this.lastId) <= 0) return false;
      this.lastId = id;
      this.lastTs = tsMs;
      return true;
    }
    if (this.recent.has(id)) return false;
    if (this.ring.length > 0) {
      const evict = this.ring[this.ringAt];
      if (evict !== undefined) this.recent.delete(evict);
      this.ring[this.ringAt] = id;
      this.ringAt = (this.ringAt + 1) % this.ring.length;
    }
    this.recent.add(id);
    this.lastId = id;
    this.lastTs = tsMs;
    return true;
  }

  /** The trades of `batch` not produced yet, normalized; `malformed` counts those without price or amount. */
  take(exchange: string, batch: readonly CcxtTrade[], receivedAtUs: number): { records: Trade[]; malformed: number } {
    const records: Trade[] = [];
    let malformed = 0;
    for (const t of batch) {
      const r = normalizeTrade(exchange, t, receivedAtUs);
      if (!r) {
        malformed++;
        continue;
      }
      if (this.admit(r.id, r.ts / 1000)) records.push(r);
    }
    return { records, malformed };
  }
}

/** Whether `batch` continues right after `lastId` on an exchange with consecutive ids. */
export function idJump(lastId: string | undefined, batch: readonly CcxtTrade[]): boolean {
  if (lastId === undefined || !INT.test(lastId) || batch.length === 0) return false;
  for (const t of batch) {
    const id = tradeId(t);
    if (!INT.test(id)) return false;
    if (compareIds(id, lastId) <= 0) continue;
    return BigInt(id) !== BigInt(lastId) + 1n;
  }
  return false;
}

/**
 * On an exchange with consecutive ids: how many trades lie between `lastId` and the first newer
 * trade of `batch` (0 when the batch continues right after it or brings nothing newer);
 * undefined when the ids are not integers.
 */
export function missingIds(lastId: string | undefined, batch: readonly CcxtTrade[]): number | undefined {
  if (lastId === undefined || !INT.test(lastId)) return undefined;
  for (const t of batch) {
    const id = tradeId(t);
    if (!INT.test(id)) return undefined;
    if (compareIds(id, lastId) <= 0) continue;
    return Number(BigInt(id) - BigInt(lastId) - 1n);
  }
  return 0;
}
