/**
 * User events end to end, on the real Kafka broker and both databases: POST /v1/events (one and a
 * batch) → Avro records in `<prefix>.events` (the API's producer) → the real sink → the `events`
 * table → GET /v1/events (range, type, instrument, paging, CSV) and /v1/stream (channel events,
 * `since` replay, then live). An idempotency key posted three times, then once more to a
 * restarted API, with `ts` left to default, is one event: one id, one Kafka record, one row. Bad
 * input is a 400 naming the field.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig, type Config } from '../config/schema.ts';
import { sleep } from '../core/retry.ts';
import { migrate } from '../migrations/runner.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { describeEachDb } from './harness/db.ts';
import { isoUs } from './harness/market-data.ts';
import { deleteTopics, readTopics } from './harness/topics.ts';

interface Accepted {
  data: Array<{ id: string; ts: string; received_at: string; idempotency_key: string | null; duplicate: boolean }>;
}
interface EventRow {
  exchange: string | null;
  symbol: string | null;
  ts: string;
  received_at: string;
  id: string;
  type: string;
  data: unknown;
  idempotency_key: string | null;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('user events: POST → Kafka → sink → GET and /v1/stream', () => {
  describeEachDb(['embedded', 'postgres'], (db) => {
    const prefix = `tev${randomBytes(4).toString('hex')}`;
    let config: Config;
    let sink: Sink;
    let api: Api;
    let url: string;
    const T0 = (Math.floor(Date.now() / 1000) - 600) * 1_000_000; // ten minutes ago, whole seconds

    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const get = async (query: string): Promise<{ data: EventRow[]; next: string | null }> => {
      const r = await fetch(`${url}/v1/events?${query}`);
      expect(r.status, await r.clone().text()).toBe(200);
      return (await r.json()) as { data: EventRow[]; next: string | null };
    };
    const rowCount = async (where = 'true', values: unknown[] = []) => Number((await db().pool.query<{ n: string }>(`select count(*) as n from events where ${where}`, values)).rows[0]!.n);

    beforeAll(async () => {
      await migrate(db().pool);
      config = parseConfig({ kafka: { brokers: inject('kafkaBrokers'), topicPrefix: prefix, clientId: prefix, partitions: 3 }, api: { port: 0, events: { maxDataBytes: 1024 } } }, { env: {} });
      sink = buildSink(config, { pool: db().pool, brokers: inject('kafkaBrokers'), listen: false, schedule: false });
      await sink.start();
      api = buildApi(config, { pool: db().pool, brokers: inject('kafkaBrokers') });
      url = await api.start();
    });

    afterAll(async () => {
      await api?.close();
      await sink?.close();
      await deleteTopics(inject('kafkaBrokers'), prefix, ['event']).catch(() => undefined);
    });

    it('one idempotency key posted three times, then to a restarted API, with ts defaulted: one id, one Kafka record, one row', async () => {
      const key = `sig-${randomBytes(6).toString('hex')}`;
      const body = { type: 'signal', exchange: 'binance', symbol: 'BTC/USDT', data: { side: 'buy', price: 60_000.5, reason: 'cross' } };
      const answers: Accepted[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await post(body, { 'idempotency-key': key });
        expect(r.status, await r.clone().text()).toBe(202);
        answers.push((await r.json()) as Accepted);
        await sleep(20); // a defaulted ts would differ between posts
      }
      // The API restarts (a new process: nothing of the first one's memory survives but the database).
      await api.close();
      api = buildApi(config, { pool: db().pool, brokers: inject('kafkaBrokers') });
      url = await api.start();
      const r = await post(body, { 'idempotency-key': key });
      expect(r.status).toBe(202);
      answers.push((await r.json()) as Accepted);

      const first = answers[0]!.data[0]!;
      expect(first.duplicate).toBe(false);
      // Counted as such (the restarted API's registry is the process's: both APIs' posts).
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/tickflow_api_events_posted_total\{outcome="duplicate"[^}]*\} [3-9]/);
      for (const a of answers.slice(1)) expect(a.data).toEqual([{ ...first, duplicate: true }]);
      // The same key with another event is refused, naming it.
      const other = await post({ ...body, data: { side: 'sell' } }, { 'idempotency-key': key });
      expect(other.status).toBe(409);
      expect(((await other.json()) as { parameter: string }).parameter).toBe('idempotency_key');

      await until('the event in the table', async () => ((await rowCount('idempotency_key = $1', [key])) > 0 ? true : undefined));
      await sleep(1_000); // a second copy, had one been produced, would land now
      expect(await rowCount('idempotency_key = $1', [key])).toBe(1);
      const inKafka = (await readTopics(inject('kafkaBrokers'), prefix, ['event'])).event.filter((e) => e.idempotency_key === key);
      expect(inKafka).toHaveLength(1);
      expect(inKafka[0]).toMatchObject({ id: first.id, type: 'signal', exchange: 'binance', symbol: 'BTC/USDT', key: 'binance:BTC/USDT' });
      expect(JSON.parse(inKafka[0]!.data)).toEqual(body.data);
      const { data } = await get(`from=${isoUs(T0)}&type=signal&exchange=binance&symbol=${encodeURIComponent('BTC/USDT')}`);
      expect(data.filter((e) => e.idempotency_key === key)).toEqual([{ exchange: 'binance', symbol: 'BTC/USDT', ts: first.ts, received_at: first.received_at, id: first.id, type: 'signal', data: body.data, idempotency_key: key }]);
    });

    it('a batch is read back by range, type and instrument, paged, as CSV, and replayed on /v1/stream with since, then live', async () => {
      const batch = [
        { type: 'note', exchange: 'binance', symbol: 'ETH/USDT', ts: isoUs(T0 + 1_000_000), data: 'hello, "world"' },
        { type: 'fill', exchange: 'binance', symbol: 'ETH/USDT', ts: isoUs(T0 + 2_000_123), data: { qty: 1.5, px: 3_000 } },
        { type: 'news', ts: isoUs(T0 + 3_000_000), data: { headline: 'rates unchanged' } },
        { type: 'fill', exchange: 'okx', symbol: 'ETH/USDT', ts: isoUs(T0 + 4_000_000), data: [1, 2, 3] },
        { type: 'fill', exchange: 'binance', symbol: 'ETH/USDT', ts: isoUs(T0 + 5_000_000) },
      ];
      const r = await post(batch);
      expect(r.status, await r.clone().text()).toBe(202);
      const ids = ((await r.json()) as Accepted).data.map((d) => d.id);
      expect(new Set(ids).size).toBe(5);
      await until('the batch in the table', async () => ((await rowCount('id = any($1)', [ids])) === 5 ? true : undefined));

      const range = `from=${isoUs(T0)}&to=${isoUs(T0 + 6_000_000)}`;
      const all = await get(range);
      expect(all.data.map((e) => e.id)).toEqual(ids);
      expect(all.data[2]).toMatchObject({ exchange: null, symbol: null, type: 'news', data: { headline: 'rates unchanged' } });
      expect(all.data[0]!.data).toBe('hello, "world"');
      expect(all.data[1]!.ts).toBe(isoUs(T0 + 2_000_123));
      expect(all.data[4]!.data).toBeNull();
      expect((await get(`${range}&type=fill`)).data.map((e) => e.id)).toEqual([ids[1], ids[3], ids[4]]);
      expect((await get(`${range}&exchange=binance&symbol=ETH%2FUSDT`)).data.map((e) => e.id)).toEqual([ids[0], ids[1], ids[4]]);
      expect((await get(`${range}&symbol=ETH%2FUSDT&type=fill`)).data.map((e) => e.id)).toEqual([ids[1], ids[3], ids[4]]);
      expect((await get(`from=${isoUs(T0 + 2_000_124)}&to=${isoUs(T0 + 4_000_001)}`)).data.map((e) => e.id)).toEqual([ids[2], ids[3]]);
      // Paging: two at a time, following next.
      const paged: string[] = [];
      let next: string | null = null;
      do {
        const page = await get(`${range}&limit=2${next ? `&cursor=${next}` : ''}`);
        expect(page.data.length).toBeLessThanOrEqual(2);
        paged.push(...page.data.map((e) => e.id));
        next = page.next;
      } while (next);
      expect(paged).toEqual(ids);
      // CSV: the same columns, data as JSON text.
      const csv = await fetch(`${url}/v1/events?${range}&type=note&format=csv`);
      expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
      expect((await csv.text()).split('\r\n')).toEqual([
        'exchange,symbol,ts,received_at,id,type,data,idempotency_key',
        `binance,ETH/USDT,${all.data[0]!.ts},${all.data[0]!.received_at},${ids[0]},note,"${JSON.stringify('hello, "world"').replace(/"/g, '""')}",`,
        '',
      ]);

      // /v1/stream: replay from since for one instrument, then an event posted now arrives live.
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const got: Array<{ id: string; replay: boolean }> = [];
      const rows = new Map<string, EventRow>();
      let live = false;
      ws.on('message', (m) => {
        const msg = JSON.parse(m.toString()) as { type: string; channel?: string; replay?: boolean; data?: EventRow[] };
        if (msg.type === 'live') live = true;
        if (msg.type === 'data' && msg.channel === 'events') {
          for (const e of msg.data ?? []) {
            got.push({ id: e.id, replay: msg.replay === true });
            rows.set(e.id, e);
          }
        }
      });
      ws.send(JSON.stringify({ op: 'subscribe', channels: ['events'], instruments: [{ exchange: 'binance', symbol: 'ETH/USDT' }], since: isoUs(T0 + 1_500_000) }));
      await until('the replay', async () => (live ? true : undefined));
      const now = await post({ type: 'signal', exchange: 'binance', symbol: 'ETH/USDT', data: { side: 'sell' } });
      const liveId = ((await now.json()) as Accepted).data[0]!.id;
      await post({ type: 'signal', exchange: 'okx', symbol: 'ETH/USDT' }); // another instrument: not sent
      await until('the live event', async () => (got.some((g) => g.id === liveId) ? true : undefined));
      await sleep(300);
      ws.close();
      expect(got).toEqual([
        { id: ids[1], replay: true },
        { id: ids[4], replay: true },
        { id: liveId, replay: false },
      ]);
      // Rows like REST's, replayed or live: data as the posted JSON.
      expect(rows.get(ids[1]!)).toEqual(all.data[1]);
      expect(rows.get(liveId)).toMatchObject({ exchange: 'binance', symbol: 'ETH/USDT', type: 'signal', data: { side: 'sell' }, idempotency_key: null });
    });

    it('with api.token set, posting needs the bearer token and reading stays open', async () => {
      const token = 'events-token-123';
      const guarded = buildApi(parseConfig({ kafka: config.kafka, api: { port: 0, token } }, { env: {} }), { pool: db().pool, brokers: inject('kafkaBrokers') });
      try {
        const body = JSON.stringify({ type: 'note', data: 'with a token' });
        const denied = await guarded.app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/json' }, payload: body });
        expect(denied.statusCode).toBe(401);
        expect(denied.json()).toMatchObject({ parameter: 'authorization' });
        const ok = await guarded.app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, payload: body });
        expect(ok.statusCode, ok.body).toBe(202);
        expect((await guarded.app.inject({ method: 'GET', url: `/v1/events?from=${isoUs(T0)}` })).statusCode).toBe(200);
      } finally {
        await guarded.close();
      }
    });

    it('refuses bad input with a 400 naming the field', async () => {
      const cases: Array<[unknown, string, string?]> = [
        [{ exchange: 'binance', data: {} }, 'type'],
        [{ type: 'x', data: { blob: 'y'.repeat(2_000) } }, 'data'],
        [{ type: 'x', ts: 'yesterday' }, 'ts'],
        [{ type: 'x', ts: '2024-02-31T00:00:00Z' }, 'ts'],
        [{ type: 'has space' }, 'type'],
        [{ type: 'x', symbol: 'BTC/USDT' }, 'exchange'],
        [{ type: 'x', colour: 'red' }, 'colour'],
        [[{ type: 'ok' }, { data: 1 }], '[1].type'],
        [[], 'body'],
        ['{"type": "x", ', 'body'],
        [{ type: 'x' }, 'Idempotency-Key', 'has space'],
      ];
      for (const [body, parameter, key] of cases) {
        const r = await post(body, key ? { 'idempotency-key': key } : {});
        const b = (await r.json()) as { parameter?: string; message: string };
        expect({ status: r.status, parameter: b.parameter }, `${JSON.stringify(body).slice(0, 60)}: ${b.message}`).toEqual({ status: 400, parameter });
        expect(b.message.startsWith(`${parameter}:`) || b.message.includes(parameter), b.message).toBe(true);
      }
      const q = await fetch(`${url}/v1/events?from=nope`);
      expect(q.status).toBe(400);
      expect(((await q.json()) as { parameter: string }).parameter).toBe('from');
    });
  });
});
