/**
 * Reading back where a gateway stopped (gateways/positions.ts) from a real broker: the last
 * trade, candle per timeframe and ticker of each wanted stream, found in the tail of its
 * partition even behind many records of other instruments (windows grow backwards), bounded by
 * the scan limit; a stream never produced has no position.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AvroCodec } from '../core/avro.ts';
import type { KafkaSettings } from '../core/kafka.ts';
import { partitionOfKey } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { GatewayEvents } from '../gateways/events.ts';
import { readPositions } from '../gateways/positions.ts';
import { kafkaTransport, Publisher } from '../gateways/publisher.ts';
import { RECORD_KINDS, type Candle, type Ticker, type Trade } from '../schemas/index.ts';
import { uniquePrefix } from './harness/gateway.ts';
import { deleteTopics } from './harness/topics.ts';

const T0 = 1_700_000_000_000_000;
const PARTITIONS = 3;
const FILLER = 30_000;

const trade = (symbol: string, id: number): Trade => ({ exchange: 'x', symbol, ts: T0 + id * 1000, received_at: T0 + id * 1000 + 5, id: String(id), side: 'buy', price: 1, amount: 1 });
const candle = (symbol: string, timeframe: string, open: number, closed: boolean): Candle => ({ exchange: 'x', symbol, ts: open, received_at: open, timeframe, open: 1, high: 1, low: 1, close: 1, volume: 1, closed });
const ticker = (symbol: string, ts: number): Ticker => ({
  exchange: 'x', symbol, ts, received_at: ts, bid: 1, bid_size: 1, ask: 2, ask_size: 1, last: 1, open_24h: null, high_24h: null, low_24h: null, base_volume_24h: null, quote_volume_24h: null,
});

describe('positions read back from the tail of the topics', () => {
  const brokers = inject('kafkaBrokers');
  const prefix = uniquePrefix('gwpos');
  const settings: KafkaSettings = { brokers, clientId: 'gwpos', topicPrefix: prefix, partitions: PARTITIONS, replicationFactor: 1, retentionMs: 3_600_000, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000 };
  const codec = new AvroCodec({ topicPrefix: prefix });
  const log = logger('test');
  // Symbols that share A/B's partition, so its last trade sits behind FILLER records of theirs.
  const neighbours: string[] = [];

  beforeAll(async () => {
    const home = partitionOfKey('x:A/B', PARTITIONS);
    for (let i = 0; neighbours.length < 3; i++) if (partitionOfKey(`x:N${i}/USDT`, PARTITIONS) === home) neighbours.push(`N${i}/USDT`);
    const publisher = new Publisher({ topicPrefix: prefix, codec, transport: kafkaTransport(settings, codec), events: new GatewayEvents() });
    const box = publisher.outbox('x', 1_000_000);
    publisher.start();
    for (let id = 1; id <= 5; id++) box.add('trade', trade('A/B', id));
    box.add('candle', candle('A/B', '5m', T0, true));
    box.add('candle', candle('A/B', '5m', T0 + 300e6, false));
    box.add('candle', candle('A/B', '1m', T0 + 60e6, true));
    box.add('candle', candle('A/B', '1m', T0 + 120e6, false));
    box.add('ticker', ticker('A/B', T0 + 7e6));
    box.add('ticker', ticker('A/B', T0 + 8e6));
    for (let i = 0; i < FILLER; i++) box.add('trade', trade(neighbours[i % neighbours.length]!, 100 + i));
    box.add('candle', candle('A/B', '1m', T0 + 180e6, false));
    expect(await publisher.close(60_000)).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await deleteTopics(brokers, prefix, RECORD_KINDS).catch(() => undefined);
  });

  const wanted = [{ exchange: 'x', symbols: ['A/B', 'Z/Z'], channels: ['trades', 'ohlcv', 'ticker', 'book'] as const, timeframes: ['1m', '5m'] }];

  it('finds the last record of each stream, behind other instruments, and nothing for a stream never produced', async () => {
    const p = await readPositions(settings, codec, wanted.map((w) => ({ ...w, channels: [...w.channels] })), { log, firstWindow: 100 });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'trades' })).toEqual({ tsUs: T0 + 5000, id: '5' });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'ohlcv', timeframe: '1m' })).toEqual({ tsUs: T0 + 180e6, closed: false });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'ohlcv', timeframe: '5m' })).toEqual({ tsUs: T0 + 300e6, closed: false });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'ticker' })).toEqual({ tsUs: T0 + 8e6 });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'book' })).toBeUndefined();
    expect(p.get({ exchange: 'x', symbol: 'Z/Z', channel: 'trades' })).toBeUndefined();
    expect(p.size).toBe(4);
  }, 60_000);

  it('stops at maxRecordsPerPartition: a stream further back starts as new', async () => {
    const p = await readPositions(settings, codec, [{ exchange: 'x', symbols: ['A/B'], channels: ['trades'], timeframes: [] }], { log, firstWindow: 100, maxRecordsPerPartition: 5_000 });
    expect(p.get({ exchange: 'x', symbol: 'A/B', channel: 'trades' })).toBeUndefined();
  }, 60_000);
});
