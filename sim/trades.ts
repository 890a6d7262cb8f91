/**
 * Bounded, columnar store of every trade one symbol generated. Ids are contiguous, so a trade is
 * found by id in O(1) and by time by binary search; memory grows in 64k-trade chunks and the
 * oldest chunk is dropped once `maxTrades` is exceeded (REST can then no longer refill that far).
 */
/** Chunk sizes: 2^10 (a quiet symbol: 25 KiB before its first thousand trades) to 2^16 (a busy one). */
const MIN_CHUNK_BITS = 10;
const MAX_CHUNK_BITS = 16;

/** Chunk bits for a symbol trading `tradesPerSecond`: about a minute of trades per chunk. */
export function chunkBitsFor(tradesPerSecond: number): number {
  return Math.min(MAX_CHUNK_BITS, Math.max(MIN_CHUNK_BITS, Math.ceil(Math.log2(Math.max(1, tradesPerSecond * 60)))));
}

interface Chunk {
  readonly t: Float64Array; // time, ms
  readonly p: Float64Array; // price, ticks
  readonly q: Float64Array; // quantity, steps
  readonly m: Uint8Array; // 1 = buyer is maker (the taker sold)
}

function newChunk(size: number): Chunk {
  return { t: new Float64Array(size), p: new Float64Array(size), q: new Float64Array(size), m: new Uint8Array(size) };
}

export class TradeStore {
  /** Id of slot 0 of chunks[0]. */
  private baseId: number;
  private readonly chunks: Chunk[] = [];
  /** Next id to assign. */
  nextId: number;
  private readonly maxChunks: number;

  private readonly bits: number;
  private readonly size: number;
  private readonly mask: number;

  constructor(firstId: number, maxTrades: number, chunkBits = MAX_CHUNK_BITS) {
    this.baseId = firstId;
    this.nextId = firstId;
    this.bits = chunkBits;
    this.size = 1 << chunkBits;
    this.mask = this.size - 1;
    this.maxChunks = Math.max(2, Math.ceil(maxTrades / this.size) + 1);
  }

  /** Oldest id still held. */
  get firstId(): number {
    return this.baseId;
  }

  get lastId(): number {
    return this.nextId - 1;
  }

  get count(): number {
    return this.nextId - this.firstId;
  }

  push(time: number, priceTicks: number, qtySteps: number, buyerIsMaker: boolean): number {
    const id = this.nextId;
    const pos = id - this.baseId;
    const ci = pos >>> this.bits;
    if (ci === this.chunks.length) {
      if (this.chunks.length >= this.maxChunks) {
        this.chunks.shift();
        this.baseId += this.size;
        return this.push(time, priceTicks, qtySteps, buyerIsMaker);
      }
      this.chunks.push(newChunk(this.size));
    }
    const c = this.chunks[ci]!;
    const s = pos & this.mask;
    c.t[s] = time;
    c.p[s] = priceTicks;
    c.q[s] = qtySteps;
    c.m[s] = buyerIsMaker ? 1 : 0;
    this.nextId = id + 1;
    return id;
  }

  has(id: number): boolean {
    return id >= this.baseId && id < this.nextId;
  }

  private chunkOf(id: number): Chunk {
    return this.chunks[(id - this.baseId) >>> this.bits]!;
  }

  time(id: number): number {
    return this.chunkOf(id).t[(id - this.baseId) & this.mask]!;
  }

  price(id: number): number {
    return this.chunkOf(id).p[(id - this.baseId) & this.mask]!;
  }

  qty(id: number): number {
    return this.chunkOf(id).q[(id - this.baseId) & this.mask]!;
  }

  buyerIsMaker(id: number): boolean {
    return this.chunkOf(id).m[(id - this.baseId) & this.mask] === 1;
  }

  /** First held id with time >= t (nextId when none). */
  lowerBoundTime(t: number): number {
    let lo = this.baseId;
    let hi = this.nextId;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.time(mid) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First held id with time > t (nextId when none). */
  upperBoundTime(t: number): number {
    let lo = this.baseId;
    let hi = this.nextId;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.time(mid) <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
