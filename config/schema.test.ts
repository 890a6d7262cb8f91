import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from './schema.ts';

function file(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickflow-config-'));
  const p = path.join(dir, 'tickflow.yaml');
  writeFileSync(p, text);
  return p;
}

describe('config', () => {
  it('fills defaults and freezes the result', () => {
    const c = parseConfig({}, { env: {} });
    expect(c.kafka.topicPrefix).toBe('tickflow');
    expect(c.kafka.brokers).toEqual([]);
    expect(c.database.url).toBeUndefined();
    expect(Object.isFrozen(c.kafka)).toBe(true);
  });

  it('stops on a wrong type, naming the key and what was expected', () => {
    const p = file('kafka:\n  partitions: three\n');
    expect(() => loadConfig({ path: p, env: {} })).toThrow(/kafka\.partitions: .*expected number/i);
  });

  it('stops on an unknown key, naming it', () => {
    const p = file('kafka:\n  topicPrefx: x\n');
    expect(() => loadConfig({ path: p, env: {} })).toThrow(/kafka\.topicPrefx: unknown key/);
  });

  it('stops on an unknown top-level section', () => {
    expect(() => parseConfig({ kafak: {} }, { env: {} })).toThrow(/kafak: unknown key/);
  });

  it('reports invalid YAML with the file name', () => {
    const p = file('kafka: [\n');
    expect(() => loadConfig({ path: p, env: {} })).toThrow(new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:1: not valid YAML: `));
  });

  it('names a missing explicit config file', () => {
    expect(() => loadConfig({ path: '/nonexistent/tickflow.yaml', env: {} })).toThrow(/config file not found: \/nonexistent\/tickflow.yaml/);
  });

  it('lets environment variables override endpoints', () => {
    const c = parseConfig({ kafka: { brokers: ['a:1'] } }, { env: { KAFKA_BROKERS: 'h1:9092, h2:9093', DATABASE_URL: 'postgres://u:p@db:5432/x' } });
    expect(c.kafka.brokers).toEqual(['h1:9092', 'h2:9093']);
    expect(c.database.url).toBe('postgres://u:p@db:5432/x');
  });

  it('names a malformed KAFKA_BROKERS', () => {
    expect(() => parseConfig({}, { env: { KAFKA_BROKERS: 'not a broker' } })).toThrow(/kafka\.brokers\[0\]: expected host:port/);
  });

  it('keeps good exchange entries and reports bad ones by name and key', () => {
    const c = parseConfig(
      {
        exchanges: [
          { id: 'binance', symbols: ['BTC/USDT'], channels: { trades: { mode: 'ws' } } },
          { id: 'kraken', symbols: 'BTC/USD', channels: { trades: {} } },
          { id: 'okx', symbols: ['BTC/USDT'], channels: { trades: { mode: 'carrier-pigeon' } } },
        ],
      },
      { env: {} },
    );
    expect(c.exchanges.map((e) => e.id)).toEqual(['binance']);
    expect(c.exchangeErrors).toHaveLength(2);
    expect(c.exchangeErrors[0]).toMatchObject({ index: 1, id: 'kraken' });
    expect(c.exchangeErrors[0]!.message).toMatch(/exchanges\[1\]\.symbols: .*expected array/i);
    expect(c.exchangeErrors[1]!.message).toMatch(/exchanges\[2\]\.channels\.trades\.mode/);
  });
});
