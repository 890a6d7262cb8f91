/**
 * Idempotency keys of POST /v1/events expire with the events retention
 * (`sink.policies.retention.events`), on both flavours (the embedded TimescaleDB, the plain
 * PostgreSQL server): a key is expired once both its event's ts and its first post are older than
 * the retention. A post of an expired key makes a new event (a new id, another body allowed); a
 * key within the retention still answers its event, even when the event's own ts is old; expired
 * keys are deleted when the API starts (and hourly); without a retention keys never expire.
 * Time passing is simulated by moving a key's times back in `event_keys`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { sleep } from '../core/retry.ts';
import { migrate } from '../migrations/runner.ts';
import { describeEachDb } from './harness/db.ts';
import { deleteTopics } from './harness/topics.ts';

interface Accepted {
  data: Array<{ id: string; ts: string; idempotency_key: string | null; duplicate: boolean }>;
}

describe('idempotency keys expire with the events retention', () => {
  describeEachDb(['embedded', 'postgres'], (db) => {
    const prefix = `tek${randomBytes(4).toString('hex')}`;
    const config = (retention: string | null) =>
      parseConfig(
        { kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 1 }, api: { port: 0 }, sink: { policies: { retention: { events: retention } } } },
        { env: {} },
      );
    let api: Api | undefined;
    let url = '';
    const start = async (retention: string | null) => {
      await api?.close();
      api = buildApi(config(retention), { pool: db().pool, brokers: inject('kafkaBrokers') });
      url = await api.start();
    };
    const post = async (body: unknown, key: string): Promise<{ status: number; body: Accepted }> => {
      const r = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) });
      return { status: r.status, body: (await r.json()) as Accepted };
    };
    /** Moves a key's claim (its event's ts and its first post) `days` back, as if that much time had passed. */
    const age = (key: string, days: number, what: 'both' | 'received_at' = 'both') =>
      db().pool.query(
        what === 'both'
          ? `update event_keys set ts = ts - make_interval(days => $2), received_at = received_at - make_interval(days => $2) where key = $1`
          : `update event_keys set received_at = received_at - make_interval(days => $2) where key = $1`,
        [key, days],
      );
    const keyRow = async (key: string) => (await db().pool.query<{ id: string }>('select id from event_keys where key = $1', [key])).rows[0];
    const k = (name: string) => `${prefix}-${name}`;
    const signal = { type: 'signal', exchange: 'binance', symbol: 'BTC/USDT', data: { side: 'buy' } };

    beforeAll(async () => {
      await migrate(db().pool);
      await start('7d');
    });
    afterAll(async () => {
      await api?.close();
      await deleteTopics(inject('kafkaBrokers'), prefix, ['event']).catch(() => undefined);
    });

    it('a key within the retention answers its event; once expired, a post of it makes a new event', async () => {
      const first = await post(signal, k('a'));
      expect(first.status).toBe(202);
      const again = await post(signal, k('a'));
      expect(again.body.data[0]).toMatchObject({ id: first.body.data[0]!.id, duplicate: true });
      // Six days later: still within 7 days, the same event.
      await age(k('a'), 6);
      expect((await post(signal, k('a'))).body.data[0]).toMatchObject({ id: first.body.data[0]!.id, duplicate: true });
      // Eight days later: expired; the same post is a new event, and the key now holds it.
      await age(k('a'), 2);
      const later = await post(signal, k('a'));
      expect(later.status).toBe(202);
      expect(later.body.data[0]!.duplicate).toBe(false);
      expect(later.body.data[0]!.id).not.toBe(first.body.data[0]!.id);
      expect((await keyRow(k('a')))!.id).toBe(later.body.data[0]!.id);
      expect((await post(signal, k('a'))).body.data[0]).toMatchObject({ id: later.body.data[0]!.id, duplicate: true });
    });

    it('an expired key may name another event (no 409); a held one may not', async () => {
      expect((await post(signal, k('b'))).status).toBe(202);
      expect((await post({ ...signal, data: { side: 'sell' } }, k('b'))).status).toBe(409);
      await age(k('b'), 8);
      const other = await post({ ...signal, data: { side: 'sell' } }, k('b'));
      expect(other.status).toBe(202);
      expect(other.body.data[0]!.duplicate).toBe(false);
    });

    it("a key whose event's ts is past the retention is kept for the retention after its post", async () => {
      const old = { ...signal, ts: new Date(Date.now() - 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z') };
      const first = await post(old, k('c'));
      expect(first.status).toBe(202);
      await age(k('c'), 6, 'received_at');
      expect((await post(old, k('c'))).body.data[0]).toMatchObject({ id: first.body.data[0]!.id, duplicate: true });
    });

    it('expired keys are deleted when the API starts; without a retention keys never expire', async () => {
      expect((await post(signal, k('d'))).status).toBe(202);
      expect((await post(signal, k('e'))).status).toBe(202);
      await age(k('d'), 8);
      await age(k('e'), 3);
      await start('7d');
      for (let i = 0; i < 50 && (await keyRow(k('d'))); i++) await sleep(100);
      expect(await keyRow(k('d'))).toBeUndefined();
      expect(await keyRow(k('e'))).toBeDefined();

      // No retention (the default): an old key still answers its event.
      await start(null);
      const first = await post(signal, k('f'));
      await age(k('f'), 3_650);
      expect((await post(signal, k('f'))).body.data[0]).toMatchObject({ id: first.body.data[0]!.id, duplicate: true });
    });
  });
});
