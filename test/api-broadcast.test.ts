/**
 * /v1/broadcasters and /v1/registrations on both databases: create, list, get, replace, delete,
 * pause, resume, status; definitions that outlive the API (a new API process on the same
 * database); 409s; bad definitions refused with the part named (`parameter`, and for a predicate
 * the token and its offset); secrets never returned; the bearer token on and off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi, type Api } from '../api/index.ts';
import { parseConfig } from '../config/schema.ts';
import { migrate } from '../migrations/runner.ts';
import { describeEachDb } from './harness/db.ts';

const TOKEN = 'test-token-1234';
const hook = { name: 'alerts', kind: 'http', config: { url: 'http://127.0.0.1:9000/hook', secret: 'hush-hush', headers: { Authorization: 'Bearer downstream', 'X-Team': 'quant' } } };
const btcCross = { name: 'btc-cross', broadcaster: 'alerts', kind: 'trade', symbol: 'BTC/*', predicate: 'price crosses above 100000' };

describeEachDb(['embedded', 'postgres'], (db) => {
  let api: Api;
  const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, app = api) => app.app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });

  beforeAll(async () => {
    await migrate(db().pool);
    api = buildApi(parseConfig({}, { env: {} }), { pool: db().pool, brokers: false });
    await api.app.ready();
  });
  afterAll(async () => {
    await api?.close();
  });

  it('creates, lists, gets and replaces broadcasters, never showing a secret', async () => {
    const created = await call('POST', '/v1/broadcasters', hook);
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ name: 'alerts', kind: 'http', paused: false, source: 'api', config: { url: hook.config.url, secret: '***', headers: { Authorization: '***', 'X-Team': 'quant' }, timeoutMs: 5000, retry: { maxAttempts: 5 } } });
    expect(created.body).not.toMatch(/hush-hush|downstream/);

    const again = await call('POST', '/v1/broadcasters', hook);
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ statusCode: 409, error: 'Conflict', parameter: 'name', message: expect.stringMatching(/"alerts" exists/) });

    expect((await call('POST', '/v1/broadcasters', { name: 'topic', kind: 'kafka', config: { topic: 'my-alerts', format: 'avro' } })).statusCode).toBe(201);
    const listed = await call('GET', '/v1/broadcasters');
    expect(listed.json().data.map((b: { name: string }) => b.name)).toEqual(['alerts', 'topic']);
    expect(listed.body).not.toMatch(/hush-hush/);
    expect((await call('GET', '/v1/broadcasters/topic')).json()).toMatchObject({ kind: 'kafka', config: { topic: 'my-alerts', format: 'avro' } });
    expect((await call('GET', '/v1/broadcasters/nope')).statusCode).toBe(404);

    // GET, edit, PUT back: the masked secret and header keep their stored values.
    const shown = (await call('GET', '/v1/broadcasters/alerts')).json();
    const replaced = await call('PUT', '/v1/broadcasters/alerts', { kind: shown.kind, config: { ...shown.config, timeoutMs: 2000 } });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json().config).toMatchObject({ timeoutMs: 2000, secret: '***' });
    const stored = (await db().pool.query<{ config: { secret: string; headers: Record<string, string> } }>("select config from broadcasters where name = 'alerts'")).rows[0]!.config;
    expect(stored).toMatchObject({ secret: 'hush-hush', headers: { Authorization: 'Bearer downstream' } });

    const put = await call('PUT', '/v1/broadcasters/spare', { kind: 'kafka', config: { topic: 'spare' } });
    expect(put.statusCode).toBe(201);
    expect((await call('PUT', '/v1/broadcasters/spare', { name: 'other', kind: 'kafka', config: { topic: 'spare' } })).json()).toMatchObject({ statusCode: 409, parameter: 'name' });
    expect((await call('DELETE', '/v1/broadcasters/spare')).statusCode).toBe(204);
    expect((await call('DELETE', '/v1/broadcasters/spare')).statusCode).toBe(404);
  });

  it('refuses bad definitions naming the part', async () => {
    const bad = async (url: string, body: unknown) => {
      const r = await call('POST', url, body);
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json()).toMatchObject({ statusCode: 400, error: 'Bad Request' });
      return r.json() as { parameter: string; message: string };
    };
    const reg = (o: Record<string, unknown>) => bad('/v1/registrations', { ...btcCross, name: 'bad', ...o });

    expect(await reg({ predicate: 'prcie > 5' })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/unknown field "prcie" for trade at 0 \(fields: .*price, amount/) }));
    expect(await reg({ predicate: 'price >> 5' })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/expected a number, got ">" at 7/) }));
    expect(await reg({ predicate: 'price ~ 5' })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/unexpected character "~" at 6/) }));
    expect(await reg({ predicate: "side = 'buy' and closed" })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/"closed" applies to candles only, not to trade at 17/) }));
    expect(await reg({ predicate: 'side crosses above 3' })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/"crosses" needs a numeric field; "side" of trade is text at 0/) }));
    expect(await reg({ predicate: "price > 'high'" })).toEqual(expect.objectContaining({ parameter: 'predicate', message: expect.stringMatching(/"price" is float8: expected a number/) }));
    expect(await reg({ kind: 'trades' })).toEqual(expect.objectContaining({ parameter: 'kind', message: expect.stringMatching(/expected one of trade, ticker, candle, book, gap/) }));
    expect(await reg({ kind: 'instrument' })).toEqual(expect.objectContaining({ parameter: 'kind' }));
    expect(await reg({ broadcaster: 'ghost' })).toEqual(expect.objectContaining({ parameter: 'broadcaster', message: expect.stringMatching(/no broadcaster named "ghost"/) }));
    expect(await reg({ colour: 'red' })).toEqual(expect.objectContaining({ parameter: 'colour', message: expect.stringMatching(/unknown field/) }));
    expect(await reg({ name: 'a b' })).toEqual(expect.objectContaining({ parameter: 'name' }));
    expect(await bad('/v1/broadcasters', { name: 'x', kind: 'http', config: { url: 'ftp://example.test/x' } })).toEqual(expect.objectContaining({ parameter: 'config.url', message: expect.stringMatching(/http:\/\/ or https:\/\//) }));
    expect(await bad('/v1/broadcasters', { name: 'x', kind: 'smtp', config: {} })).toEqual(expect.objectContaining({ parameter: 'kind' }));
    expect(await bad('/v1/broadcasters', { name: 'x', kind: 'kafka', config: { topic: 'a/b' } })).toEqual(expect.objectContaining({ parameter: 'config.topic' }));
    expect(await bad('/v1/broadcasters', { name: 'x', kind: 'http', config: { url: 'http://x/', secret: '***' } })).toEqual(expect.objectContaining({ parameter: 'config.secret' }));
    expect((await bad('/v1/broadcasters', [])).parameter).toBe('body');
    expect((await call('GET', '/v1/registrations')).json().data).toEqual([]);
  });

  it('creates registrations, pauses and resumes them, reports status, and refuses deleting a used broadcaster', async () => {
    const created = await call('POST', '/v1/registrations', btcCross);
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ ...btcCross, exchange: '*', paused: false, broadcasterPaused: false, source: 'api' });
    expect((await call('POST', '/v1/registrations', btcCross)).statusCode).toBe(409);
    const closed = await call('PUT', '/v1/registrations/hourly', { broadcaster: 'topic', kind: 'candle', predicate: "closed and timeframe = '1h'" });
    expect(closed.statusCode).toBe(201);
    expect((await call('PUT', '/v1/registrations/hourly', { broadcaster: 'topic', kind: 'candle', predicate: "closed and timeframe = '1d'" })).statusCode).toBe(200);
    expect((await call('GET', '/v1/registrations/hourly')).json().predicate).toBe("closed and timeframe = '1d'");
    expect((await call('GET', '/v1/registrations?broadcaster=topic')).json().data.map((r: { name: string }) => r.name)).toEqual(['hourly']);

    const paused = await call('POST', '/v1/registrations/btc-cross/pause');
    expect(paused.statusCode).toBe(200);
    expect(paused.json()).toMatchObject({ name: 'btc-cross', paused: true });
    expect((await call('POST', '/v1/broadcasters/alerts/pause')).json()).toMatchObject({ paused: true, config: { secret: '***' } });
    expect((await call('GET', '/v1/registrations/btc-cross')).json()).toMatchObject({ paused: true, broadcasterPaused: true });
    expect((await call('POST', '/v1/broadcasters/alerts/resume')).json()).toMatchObject({ paused: false });
    expect((await call('POST', '/v1/registrations/btc-cross/resume')).json()).toMatchObject({ paused: false });
    expect((await call('POST', '/v1/registrations/nope/pause')).statusCode).toBe(404);
    // A bodiless POST that still says it is JSON (curl -H 'content-type: application/json').
    const bodiless = await api.app.inject({ method: 'POST', url: '/v1/registrations/btc-cross/pause', headers: { 'content-type': 'application/json' } });
    expect(bodiless.statusCode).toBe(200);
    expect((await call('POST', '/v1/registrations/btc-cross/resume')).json()).toMatchObject({ paused: false });
    const empty = await api.app.inject({ method: 'POST', url: '/v1/broadcasters', headers: { 'content-type': 'application/json' } });
    expect(empty.json()).toMatchObject({ statusCode: 400, parameter: 'body' });

    expect((await call('GET', '/v1/registrations/btc-cross/status')).json()).toEqual({ name: 'btc-cross', paused: false, delivered: 0, failed: 0, lastError: null, lastErrorAt: null, lastDeliveredAt: null });
    // What the runtime writes shows up in both statuses.
    await db().pool.query(`insert into broadcast_stats (registration, delivered, failed, last_error, last_error_at, last_delivered_at) values ('btc-cross', 3, 1, 'HTTP 500', '2024-05-06T00:00:00Z', '2024-05-06T00:01:00Z')`);
    expect((await call('GET', '/v1/broadcasters/alerts/status')).json()).toEqual({ name: 'alerts', paused: false, delivered: 3, failed: 1, lastError: 'HTTP 500', lastErrorAt: '2024-05-06T00:00:00.000Z', lastDeliveredAt: '2024-05-06T00:01:00.000Z' });
    expect((await call('GET', '/v1/broadcasters/nope/status')).statusCode).toBe(404);

    const refused = await call('DELETE', '/v1/broadcasters/alerts');
    expect(refused.statusCode).toBe(409);
    expect(refused.json().message).toMatch(/used by registrations btc-cross/);
  });

  it('keeps every definition across an API restart', async () => {
    const before = { b: (await call('GET', '/v1/broadcasters')).json(), r: (await call('GET', '/v1/registrations')).json() };
    await api.close();
    // A new API: on the server, over connections of its own (it opens and migrates the database itself).
    const fresh = db().kind === 'postgres' ? buildApi(parseConfig({ database: { url: db().url } }, { env: {} }), { brokers: false }) : buildApi(parseConfig({}, { env: {} }), { pool: db().pool, brokers: false });
    api = fresh;
    await api.app.ready();
    expect((await call('GET', '/v1/broadcasters')).json()).toEqual(before.b);
    expect((await call('GET', '/v1/registrations')).json()).toEqual(before.r);
    expect(before.r.data.map((r: { name: string }) => r.name)).toEqual(['btc-cross', 'hourly']);
    expect((await call('DELETE', '/v1/registrations/btc-cross')).statusCode).toBe(204);
    expect((await call('DELETE', '/v1/registrations/btc-cross')).statusCode).toBe(404);
    expect((await call('DELETE', '/v1/broadcasters/alerts')).statusCode).toBe(204);
  });

  describe('with api.token set', () => {
    let secured: Api;
    beforeAll(async () => {
      secured = buildApi(parseConfig({}, { env: { TICKFLOW_API_TOKEN: TOKEN } }), { pool: db().pool, brokers: false });
      await secured.app.ready();
    });
    afterAll(async () => {
      await secured?.close();
    });

    it('needs the bearer token on the broadcast routes and on every write, not on reading market data', async () => {
      const as = (method: 'GET' | 'POST', url: string, authorization?: string, payload?: object) => secured.app.inject({ method, url, headers: authorization ? { authorization } : {}, ...(payload ? { payload } : {}) });
      const denied = await as('GET', '/v1/broadcasters');
      expect(denied.statusCode).toBe(401);
      expect(denied.headers['www-authenticate']).toBe('Bearer');
      expect(denied.json()).toEqual({ statusCode: 401, error: 'Unauthorized', message: expect.stringMatching(/bearer token/), parameter: 'authorization' });
      expect((await as('GET', '/v1/registrations/hourly/status', 'Bearer wrong-token-123')).statusCode).toBe(401);
      expect((await as('POST', '/v1/broadcasters', undefined, { name: 'x', kind: 'kafka', config: { topic: 'x' } })).statusCode).toBe(401);
      expect((await as('GET', '/v1/broadcasters', `Bearer ${TOKEN}`)).statusCode).toBe(200);
      const ok = await as('POST', '/v1/broadcasters', `Bearer ${TOKEN}`, { name: 'with-token', kind: 'kafka', config: { topic: 'x' } });
      expect(ok.statusCode).toBe(201);
      // Market data stays open; an unknown path is still a 404.
      expect((await as('GET', '/v1/instruments')).statusCode).toBe(200);
      expect((await as('POST', '/v1/nothing-here')).statusCode).toBe(404);
      // Without a token (the other API), the same routes are open.
      expect((await call('GET', '/v1/broadcasters/with-token')).statusCode).toBe(200);
    });
  });

  it('lists the routes in the OpenAPI document', async () => {
    const doc = (await call('GET', '/docs/json')).json() as { paths: Record<string, Record<string, { tags?: string[]; requestBody?: unknown }>> };
    for (const p of ['/v1/broadcasters', '/v1/broadcasters/{name}', '/v1/broadcasters/{name}/pause', '/v1/broadcasters/{name}/resume', '/v1/broadcasters/{name}/status', '/v1/registrations', '/v1/registrations/{name}', '/v1/registrations/{name}/status']) {
      expect(doc.paths[p], p).toBeDefined();
    }
    expect(doc.paths['/v1/registrations']!.post!.requestBody).toMatchObject({ content: { 'application/json': { schema: { required: ['name', 'broadcaster', 'kind'] } } } });
  });
});
