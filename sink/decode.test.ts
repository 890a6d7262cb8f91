import { describe, expect, it } from 'vitest';
import { AvroCodec } from '../core/avro.ts';
import type { Candle, Trade } from '../schemas/index.ts';
import { Decoder, decodeValues, packValues, rowsSlice, type DecodedBlock, type DecodeTarget } from './decode.ts';
import { rowCodec } from './tables.ts';

const codec = new AvroCodec({ topicPrefix: 'dec' });
const trade = (i: number): Trade => ({ exchange: i % 2 ? 'okx' : 'bin"ance', symbol: 'BTC/USDT', ts: 1_700_000_000_000_000 + i, received_at: 1_700_000_000_500_000 + i, id: String(i), side: 'buy', price: 40_000 + i / 8, amount: 1e-7 * (i + 1) });
const candle: Candle = { exchange: 'x', symbol: 'A/B', timeframe: '1m', ts: 60_000_000, received_at: 61_000_000, open: 1, high: 2, low: 0.5, close: 1.5, volume: 3, closed: true };
const TRADES: DecodeTarget = { connector: 'c', table: 'trades', keys: true };

/** Messages 0..n-1: trades, except the poison ones at the given indexes. */
function batch(n: number, poison: Record<number, Buffer | null> = {}): { values: (Buffer | null)[]; trades: (Trade | undefined)[] } {
  const trades = Array.from({ length: n }, (_, i) => (i in poison ? undefined : trade(i)));
  return { values: trades.map((t, i) => (t ? codec.encode('trade', t) : poison[i]!)), trades };
}

/** The block's columns for rows [from, to), as the writer sends them. */
const columns = (b: DecodedBlock, from: number, to: number) => rowCodec('trades').spec.columns.map((_, j) => `{${rowsSlice(b, j, from, to)}}`);

describe('decoding a batch', () => {
  it('renders the valid records as the statement takes them, and names what is wrong with the others', async () => {
    const nan = codec.encode('trade', { ...trade(3), price: Number.NaN });
    const { values, trades } = batch(8, { 1: null, 3: nan, 5: Buffer.from('junk!junk!junk'), 6: codec.encode('candle', candle) });
    const b = await decodeValues(codec, TRADES, packValues(values));
    const good = trades.filter((t): t is Trade => t !== undefined);
    expect(b.rows).toBe(good.length);
    expect(Array.from(b.rowOf)).toEqual([0, -1, 1, -1, 2, -1, -1, 3]);
    expect(columns(b, 0, b.rows)).toEqual(rowCodec('trades').columns(good));
    expect(b.errors.map((e) => [e.index, e.stage])).toEqual([[1, 'decode'], [3, 'validate'], [5, 'decode'], [6, 'decode']]);
    expect(b.errors[0]!.reason).toBe('the message has no value');
    expect(b.errors[1]!.reason).toMatch(/^price is not a finite number/);
    expect(b.errors[2]!.reason).toMatch(/not an Avro record/);
    expect(b.errors[3]!.reason).toBe('a candle record, but connector c writes trade records into trades');
    expect(Array.from(b.times.subarray(0, b.rows))).toEqual(good.map((t) => t.ts));
    expect(b.keys).toEqual(good.map((t) => rowCodec('trades').key(t)));
  });

  it('gives any run of rows as a slice equal to rendering those records alone', async () => {
    const { values, trades } = batch(50);
    const b = await decodeValues(codec, TRADES, packValues(values));
    for (const [from, to] of [[0, 50], [0, 1], [49, 50], [10, 37], [25, 26]] as const) {
      expect(columns(b, from, to)).toEqual(rowCodec('trades').columns(trades.slice(from, to) as Trade[]));
    }
  });

  it('decodes the same in the worker thread as in the calling thread, and in order under load', async () => {
    const threaded = new Decoder({ topicPrefix: 'dec' });
    const local = new Decoder({ topicPrefix: 'dec' }, false);
    try {
      const batches = Array.from({ length: 6 }, (_, k) => batch(300 + k, { [k]: Buffer.alloc(0) }).values);
      const a = await Promise.all(batches.map((v) => threaded.decode(TRADES, v)));
      const b = await Promise.all(batches.map((v) => local.decode(TRADES, v)));
      expect(a).toEqual(b);
      expect(a.map((x) => x.rows)).toEqual([299, 300, 301, 302, 303, 304]);
    } finally {
      await threaded.close();
      await local.close();
    }
  });

  it('loses no batch when its worker thread dies: what it had is decoded in the calling thread', async () => {
    const d = new Decoder({ topicPrefix: 'dec' });
    try {
      const { values } = batch(2_000);
      const expected = await d.decode(TRADES, values);
      const pending = [d.decode(TRADES, values), d.decode(TRADES, values)];
      await (d as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      for (const b of await Promise.all(pending)) expect(b).toEqual(expected);
      // And the next batch gets a new worker.
      expect(await d.decode(TRADES, values)).toEqual(expected);
      expect((d as unknown as { worker: unknown }).worker).toBeDefined();
    } finally {
      await d.close();
    }
  });

  it('settles a batch still decoding when it is closed', async () => {
    const d = new Decoder({ topicPrefix: 'dec' });
    const pending = expect(d.decode(TRADES, batch(5_000).values)).rejects.toThrow(/closing/);
    await d.close();
    await pending;
  });
});
