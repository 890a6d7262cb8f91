import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { schemaJson, TYPES, type Trade } from '../schemas/index.ts';
import { MemoryRegistry } from '../test/harness/memory-registry.ts';
import { AvroCodec, crc64Avro, fingerprintBytes, type SchemaRegistry } from './avro.ts';
import { TickflowError } from './errors.ts';

const trade: Trade = {
  exchange: 'binance',
  symbol: 'BTC/USDT',
  ts: 1_700_000_000_123_000,
  received_at: 1_700_000_000_150_456,
  id: '12345',
  side: 'sell',
  price: 37_000.5,
  amount: 0.0125,
};

describe('CRC-64-AVRO fingerprints', () => {
  // Expected values computed independently with fastavro (Python) from the same .avsc files.
  it('matches the reference implementation', () => {
    const le = (v: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(v);
      return b.toString('hex');
    };
    expect(le(crc64Avro(Buffer.from('"int"')))).toBe('8f5c393f1ad57572');
    expect(fingerprintBytes(TYPES.trade).toString('hex')).toBe('0c0a6080c4780a0c');
    expect(fingerprintBytes(TYPES.book).toString('hex')).toBe('6d8f750152f391bb');
    expect(fingerprintBytes(TYPES.gap).toString('hex')).toBe('76402e33f170ef37');
  });
});

describe('AvroCodec', () => {
  it('writes single-object encoding without a registry and reads it back equal', async () => {
    const codec = new AvroCodec({ topicPrefix: 't' });
    const buf = codec.encode('trade', trade);
    expect(buf.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(buf.subarray(2, 10)).toEqual(fingerprintBytes(TYPES.trade));
    const d = await codec.decode(buf);
    expect(d).toMatchObject({ kind: 'trade', framing: 'single-object' });
    expect({ ...d.value }).toEqual(trade);
  });

  it('writes the Confluent wire format with a registry, and another process reads it', async () => {
    const registry = new MemoryRegistry();
    const writer = new AvroCodec({ topicPrefix: 't', registry });
    await writer.prepare();
    const buf = writer.encode('trade', trade);
    expect(buf[0]).toBe(0);
    const id = buf.readUInt32BE(1);
    // The full .avsc is registered: logical types and docs kept (the canonical form drops them).
    const registered = JSON.parse(await registry.getById(id)) as { name: string; namespace: string; doc?: string; fields: { name: string; type: unknown }[] };
    expect([registered.namespace, registered.name]).toEqual(['tickflow.v1', 'Trade']);
    expect(registered.doc).toBeTruthy();
    expect(registered.fields.find((f) => f.name === 'ts')!.type).toEqual({ type: 'long', logicalType: 'timestamp-micros' });
    // A reader that has not registered anything learns the writer schema from the registry.
    const reader = new AvroCodec({ topicPrefix: 't', registry });
    const d = await reader.decode(buf);
    expect(d.framing).toBe('confluent');
    expect({ ...d.value }).toEqual(trade);
  });

  it('waits for a registry that is briefly unreachable when it meets a new id; an unknown id fails at once', async () => {
    const registry = new MemoryRegistry();
    const writer = new AvroCodec({ topicPrefix: 't', registry });
    await writer.prepare();
    let refusals = 2;
    const flaky: SchemaRegistry = {
      register: (s, schema) => registry.register(s, schema),
      getById: async (id) => {
        if (refusals-- > 0) throw new TickflowError('KAFKA_UNREACHABLE', 'registry unreachable', { retriable: true });
        return registry.getById(id);
      },
    };
    const reader = new AvroCodec({ topicPrefix: 't', registry: flaky });
    expect({ ...(await reader.decode(writer.encode('trade', trade))).value }).toEqual(trade);
    expect(refusals).toBe(-1);
    const unknown = Buffer.concat([Buffer.from([0, 0, 0, 0, 99]), TYPES.trade.toBuffer(trade)]);
    await expect(new AvroCodec({ topicPrefix: 't', registry }).decode(unknown)).rejects.toThrow(/no schema with id 99/);
  });

  it('reads records written with an older schema version (Avro resolution)', async () => {
    // v0 of the gap record had no `refilled` field; the current schema gives it a default.
    const current = schemaJson('gap') as { fields: { name: string }[] };
    const v0 = { ...current, fields: current.fields.filter((f) => f.name !== 'refilled') };
    const v0Type = avro.Type.forSchema(v0 as avro.Schema);
    const old = { exchange: 'binance', symbol: 'BTC/USDT', ts: 1, received_at: 2, channel: 'trades', from_ts: 0, to_ts: null, reason: 'closed' };
    const buf = Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprintBytes(v0Type), v0Type.toBuffer(old)]);
    const codec = new AvroCodec({ topicPrefix: 't', writerSchemas: [v0 as avro.Schema] });
    const d = await codec.decode(buf);
    expect({ ...d.value }).toEqual({ ...old, refilled: 0 });
  });

  it('names what is wrong with undecodable values', async () => {
    const codec = new AvroCodec({ topicPrefix: 't' });
    await expect(codec.decode(Buffer.from('{"json":true}'))).rejects.toThrow(/not an Avro record/);
    await expect(codec.decode(Buffer.concat([Buffer.from([0xc3, 1]), Buffer.alloc(8, 7), Buffer.from([1])]))).rejects.toThrow(/unknown writer schema fingerprint 0707070707070707/);
    const truncated = codec.encode('trade', trade).subarray(0, 20);
    await expect(codec.decode(truncated)).rejects.toThrow(/trade record body is corrupt/);
    await expect(codec.decode(Buffer.from([0, 0, 0, 0, 9, 1]))).rejects.toThrow(/no schema registry is configured/);
  });

  it('names the field when a record does not fit its schema', () => {
    const codec = new AvroCodec({ topicPrefix: 't' });
    expect(() => codec.encode('trade', { ...trade, price: 'high' as unknown as number })).toThrow(/trade record does not match its schema at price/);
  });
});
