/**
 * The publisher with a fake Kafka: while Kafka is unreachable the outbox holds at most
 * `maxBufferedRecords`, drops the oldest past it, and once Kafka is back the loss goes out as a
 * `kafka` gap record naming the symbol, the time range and the counts; gap and instrument
 * records are never dropped; a failed send is sent again, in order.
 */
import { describe, expect, it } from 'vitest';
import { AvroCodec } from '../core/avro.ts';
import type { Gap, Instrument, Trade } from '../schemas/index.ts';
import { GatewayEvents } from './events.ts';
import { Publisher, type TopicBatch, type Transport } from './publisher.ts';

const codec = new AvroCodec({ topicPrefix: 'u' });

class FakeKafka implements Transport {
  up = false;
  failNextSends = 0;
  readonly brokers = ['fake:9092'];
  readonly sent: { topic: string; key: string; value: Record<string, unknown> }[] = [];
  connects = 0;
  async connect(): Promise<void> {
    this.connects++;
    if (!this.up) throw new Error('ECONNREFUSED');
  }
  async send(batch: readonly TopicBatch[]): Promise<void> {
    if (!this.up) throw new Error('broker down');
    if (this.failNextSends > 0) {
      this.failNextSends--;
      throw new Error('NOT_LEADER_FOR_PARTITION');
    }
    for (const b of batch) for (const m of b.messages) this.sent.push({ topic: b.topic, key: m.key, value: codec.decodeSingleObject(m.value).value as unknown as Record<string, unknown> });
  }
  async disconnect(): Promise<void> {}
}

const trade = (symbol: string, i: number): Trade => ({
  exchange: 'x',
  symbol,
  ts: 1_700_000_000_000_000 + i * 1000,
  received_at: 1_700_000_000_000_000 + i * 1000 + 5,
  id: String(i),
  side: 'buy',
  price: 100 + i,
  amount: 1,
});
const instrument: Instrument = { exchange: 'x', symbol: 'BTC/USDT', ts: 1, received_at: 1, base: 'BTC', quote: 'USDT', type: 'spot', active: true, price_increment: 0.01, amount_increment: null, min_amount: null, exchange_symbol: 'BTCUSDT' };
const streamGap: Gap = { exchange: 'x', symbol: 'BTC/USDT', ts: 2, received_at: 2, channel: 'trades', from_ts: 1, to_ts: null, reason: 'dropped', refilled: 0 };

async function until(pred: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function setup(kafka: FakeKafka) {
  const p = new Publisher({ topicPrefix: 'u', codec, transport: kafka, events: new GatewayEvents(), lingerMs: 1, batchMaxRecords: 40, retryInitialMs: 5, retryMaxMs: 20 });
  return { p, box: p.outbox('x', 100) };
}

describe('Publisher while Kafka is unreachable', () => {
  it('bounds the buffer, drops the oldest, and reports the loss as kafka gap records once Kafka is back', async () => {
    const kafka = new FakeKafka();
    const { p, box } = setup(kafka);
    p.start();
    box.add('instrument', instrument);
    // 300 trades: BTC/USDT ids 0..249 and ETH/USDT ids 1000..1049, interleaved at the start.
    for (let i = 0; i < 250; i++) {
      box.add('trade', trade('BTC/USDT', i));
      if (i < 50) box.add('trade', trade('ETH/USDT', 1000 + i));
    }
    box.add('gap', streamGap);
    await until(() => kafka.connects >= 3);
    expect(box.size).toBe(100 + 2); // the newest 100 data records, plus the two never dropped
    expect(box.dropped).toBe(200);
    expect(kafka.sent).toHaveLength(0);

    kafka.up = true;
    await until(() => p.buffered === 0 && kafka.sent.length >= 104);
    await p.close(1_000);

    const gaps = kafka.sent.filter((s) => s.topic === 'u.gaps').map((s) => s.value as unknown as Gap);
    const trades = kafka.sent.filter((s) => s.topic === 'u.trades').map((s) => s.value as unknown as Trade);
    // What survived: the newest 100, in order (all BTC/USDT, ids 150..249).
    expect(trades.map((t) => Number(t.id))).toEqual(Array.from({ length: 100 }, (_, i) => 150 + i));
    const kafkaGaps = gaps.filter((g) => g.channel === 'kafka').sort((a, b) => a.symbol.localeCompare(b.symbol));
    expect(kafkaGaps.map((g) => [g.symbol, g.from_ts, g.to_ts])).toEqual([
      ['BTC/USDT', trade('', 0).ts, trade('', 149).ts],
      ['ETH/USDT', trade('', 1000).ts, trade('', 1049).ts],
    ]);
    expect(kafkaGaps[0]!.reason).toBe('kafka unreachable: buffer full (maxBufferedRecords=100), dropped 150 records (150 trade), oldest first');
    expect(kafkaGaps[1]!.reason).toMatch(/dropped 50 records \(50 trade\)/);
    // Nothing silent: delivered + reported = produced.
    const reported = kafkaGaps.reduce((n, g) => n + Number(/dropped (\d+) records/.exec(g.reason)![1]), 0);
    expect(trades.length + reported).toBe(300);
    expect(gaps.find((g) => g.channel === 'trades')).toMatchObject({ reason: 'dropped' });
    expect(kafka.sent.filter((s) => s.topic === 'u.instruments')).toHaveLength(1);
    expect(kafka.sent.every((s) => s.key === `x:${(s.value as { symbol: string }).symbol}`)).toBe(true);
  });

  it('sends a failed batch again, keeping the order; nothing lost or reordered', async () => {
    const kafka = new FakeKafka();
    kafka.up = true;
    kafka.failNextSends = 3;
    const { p, box } = setup(kafka);
    p.start();
    for (let i = 0; i < 90; i++) box.add('trade', trade('BTC/USDT', i));
    await until(() => kafka.sent.length === 90);
    expect(kafka.sent.map((s) => Number((s.value as unknown as Trade).id))).toEqual(Array.from({ length: 90 }, (_, i) => i));
    expect(box.dropped).toBe(0);
    await p.close(1_000);
  });

  it('close() gives up after its timeout and says how much was not delivered', async () => {
    const kafka = new FakeKafka();
    const { p, box } = setup(kafka);
    p.start();
    for (let i = 0; i < 30; i++) box.add('trade', trade('BTC/USDT', i));
    const t0 = Date.now();
    expect(await p.close(200)).toBe(30);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('waitForRoom holds a backfill until the buffer is half empty', async () => {
    const kafka = new FakeKafka();
    const { p, box } = setup(kafka);
    for (let i = 0; i < 80; i++) box.add('trade', trade('BTC/USDT', i));
    let released = false;
    const w = box.waitForRoom().then(() => (released = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(released).toBe(false);
    kafka.up = true;
    p.start();
    await w;
    expect(box.size).toBeLessThanOrEqual(50);
    await p.close(1_000);
  });
});
