/**
 * The outbox alone, with a stand-in encoder (no Publisher, no Kafka): past `maxRecords` the
 * oldest data records go, and the loss is taken first as one `kafka` gap record per symbol.
 */
import { describe, expect, it } from 'vitest';
import type { Gap, RecordKind, Trade } from '../schemas/index.ts';
import { GatewayEvents, type QueuedRecord } from './events.ts';
import { Outbox, type OutboxRecord } from './outbox.ts';

function setup(maxRecords: number) {
  const encoded = new Map<QueuedRecord, unknown>();
  const events = new GatewayEvents();
  const drops: number[] = [];
  events.on('buffer.drop', (e) => drops.push(e.count));
  let wakes = 0;
  const encode = <K extends RecordKind>(kind: K, r: OutboxRecord<K>): QueuedRecord => {
    const q: QueuedRecord = { kind, topic: kind, key: `${r.exchange}:${r.symbol}`, value: Buffer.alloc(0), exchange: r.exchange, symbol: r.symbol, ts: r.ts, receivedAtUs: r.received_at };
    encoded.set(q, r);
    return q;
  };
  const box = new Outbox('x', maxRecords, { encode, added: () => wakes++, events });
  return { box, drops, record: (q: QueuedRecord) => encoded.get(q), wakes: () => wakes };
}

const trade = (i: number): Trade => ({ exchange: 'x', symbol: 'BTC/USDT', ts: 1_000 + i, received_at: 2_000 + i, id: String(i), side: 'buy', price: 1, amount: 1 });

describe('Outbox', () => {
  it('drops the oldest data past maxRecords and hands the loss over first, as a kafka gap record', () => {
    const { box, drops, record, wakes } = setup(3);
    for (let i = 0; i < 5; i++) box.add('trade', trade(i));
    expect(wakes()).toBe(5);
    expect(box.dropped).toBe(2);
    expect(drops).toEqual([1]);
    const taken = box.take(10, 9_000);
    const gap = record(taken[0]!) as Gap;
    expect(gap).toEqual({
      exchange: 'x',
      symbol: 'BTC/USDT',
      ts: 9_000,
      received_at: 9_000,
      channel: 'kafka',
      from_ts: 1_000,
      to_ts: 1_001,
      reason: 'kafka unreachable: buffer full (maxBufferedRecords=3), dropped 2 records (2 trade), oldest first',
      refilled: 0,
    });
    expect(taken.slice(1).map((q) => (record(q) as Trade).id)).toEqual(['2', '3', '4']);
    expect(box.size).toBe(0);
    expect(box.pendingLoss).toBe(false);
  });
});
