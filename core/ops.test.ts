import { describe, expect, it } from 'vitest';
import { serveMetrics } from './metrics-server.ts';
import { counter } from './metrics.ts';

describe('the ops plugin (gateway metrics server)', () => {
  it('answers /healthz with the shared body, /metrics with Prometheus text, anything else with the error envelope', async () => {
    counter('tickflow_ops_test_total', 'ops plugin test').inc();
    const s = await serveMetrics('127.0.0.1', 0);
    try {
      const health = await fetch(`${s.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok', checks: {} });
      const metrics = await fetch(`${s.url}/metrics?x=1`);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await metrics.text()).toMatch(/^tickflow_ops_test_total\{app="tickflow"\} 1$/m);
      const missing = await fetch(`${s.url}/nope`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ statusCode: 404, error: 'Not Found', message: expect.stringContaining('/metrics') });
    } finally {
      await s.close();
    }
  });

  it('a part\'s probe decides the code and adds its own fields beside status and checks', async () => {
    const body = { status: 'degraded' as const, checks: { kafka: { ok: false, error: 'down', at: '2024-01-01T00:00:00.000Z' } }, workers: 2 };
    const s = await serveMetrics('127.0.0.1', 0, { health: async () => ({ code: 503, body }) });
    try {
      const r = await fetch(`${s.url}/healthz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual(body);
    } finally {
      await s.close();
    }
  });
});
