import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.ts';
import { deadLetterTopicOf } from './config.ts';

describe('broadcast config section', () => {
  it('has defaults, and takes broadcasters and registrations in the REST shape', () => {
    const c = parseConfig({}, { env: {} });
    expect(c.broadcast).toEqual({ groupId: 'tickflow-broadcast', reloadMs: 1000, metricsHost: '127.0.0.1', metricsPort: 9465, httpConcurrency: 16, batchMaxRecords: 2000, broadcasters: [], registrations: [] });
    expect(deadLetterTopicOf(c)).toBe('tickflow.broadcast-dlq');
    const d = parseConfig(
      {
        kafka: { topicPrefix: 'p' },
        broadcast: {
          broadcasters: [{ name: 'alerts', kind: 'http', config: { url: 'http://127.0.0.1:9000/hook' } }],
          registrations: [{ name: 'btc', broadcaster: 'alerts', kind: 'trade', symbol: 'BTC/*', predicate: 'price crosses above 100000' }],
        },
      },
      { env: {} },
    );
    expect(d.broadcast.broadcasters[0]).toMatchObject({ config: { timeoutMs: 5000, retry: { maxAttempts: 5 } } });
    expect(d.broadcast.registrations[0]).toMatchObject({ exchange: '*', symbol: 'BTC/*' });
    expect(deadLetterTopicOf(d)).toBe('p.broadcast-dlq');
  });

  it('refuses a bad entry naming its key path, and a predicate by token and position', () => {
    const bad = (broadcast: unknown) => () => parseConfig({ broadcast }, { env: {} });
    expect(bad({ registrations: [{ name: 'r', broadcaster: 'b', kind: 'trade', predicate: 'price > 1 and sise = 2' }] })).toThrow(/broadcast\.registrations\[0\]\.predicate: unknown field "sise" for trade at 14 \(fields: /);
    expect(bad({ broadcasters: [{ name: 'b', kind: 'http', config: { url: 'file:///etc/passwd' } }] })).toThrow(/broadcast\.broadcasters\[0\]\.config\.url: expected an absolute http/);
    expect(bad({ registrations: [{ name: 'r', broadcaster: 'b', kind: 'instrument' }] })).toThrow(/broadcast\.registrations\[0\]\.kind: expected one of trade/);
    const twice = { name: 'b', kind: 'kafka', config: { topic: 't' } };
    expect(bad({ broadcasters: [twice, twice] })).toThrow(/broadcast\.broadcasters\[1\]\.name: "b" is declared twice/);
  });

  it('takes the API token from TICKFLOW_API_TOKEN', () => {
    expect(parseConfig({}, { env: {} }).api.token).toBeNull();
    expect(parseConfig({}, { env: { TICKFLOW_API_TOKEN: 'sekrit-token' } }).api.token).toBe('sekrit-token');
    expect(() => parseConfig({ api: { token: 'short' } }, { env: {} })).toThrow(/api\.token: expected at least 8 characters/);
  });
});
