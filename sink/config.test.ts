import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.ts';
import { connectorSchema, defaultConnectors, intervalSql, resolveConnector } from './config.ts';

describe('sink config', () => {
  it('runs one connector per record table with no sink section at all', () => {
    const config = parseConfig({}, { env: {} });
    expect(config.sink.connectors).toBeUndefined();
    const resolved = defaultConnectors().map((c) => resolveConnector(c, config.kafka.topicPrefix));
    // The kinds of the original contract (a kind added to the catalog adds its own connector).
    const original = ['trades', 'tickers', 'candles', 'books', 'gaps', 'instruments'];
    expect(resolved.filter((c) => original.includes(c.name)).map((c) => [c.name, c.topics, c.insertMode])).toEqual([
      ['trades', ['tickflow.trades'], 'insert'],
      ['tickers', ['tickflow.tickers'], 'insert'],
      ['candles', ['tickflow.candles'], 'upsert'],
      ['books', ['tickflow.books'], 'insert'],
      ['gaps', ['tickflow.gaps'], 'upsert'],
      ['instruments', ['tickflow.instruments'], 'upsert'],
    ]);
    expect(resolved.every((c) => c.deadLetterTopic === 'tickflow.dlq')).toBe(true);
    expect(config.sink.apiHost).toBe('127.0.0.1');
  });

  it('names the bad key', () => {
    expect(() => parseConfig({ sink: { connectors: [{ name: 'a', table: 'trade' }] } }, { env: {} })).toThrow(/sink\.connectors\[0\]\.table/);
    expect(() => parseConfig({ sink: { policies: { compressAfter: '7 days' } } }, { env: {} })).toThrow(/sink\.policies\.compressAfter: expected an interval/);
    expect(() => parseConfig({ sink: { refreshSchedule: 'often' } }, { env: {} })).toThrow(/sink\.refreshSchedule: expected a cron expression/);
    expect(() => parseConfig({ sink: { connectors: [{ name: 'a', table: 'trades' }, { name: 'a', table: 'candles' }] } }, { env: {} })).toThrow(/sink\.connectors\[1\]\.name: duplicate connector name a/);
  });

  it('takes the API token from SINK_API_TOKEN', () => {
    expect(parseConfig({}, { env: { SINK_API_TOKEN: 'sekrit-token' } }).sink.apiToken).toBe('sekrit-token');
  });

  it('fills connector defaults', () => {
    expect(connectorSchema.parse({ name: 'x', table: 'trades' })).toMatchObject({ insertMode: 'upsert', batchMaxRows: 5000, errorTolerance: 'all', sessionTimeoutMs: 6_000 });
    expect(intervalSql('90d')).toBe('90 days');
  });
});
