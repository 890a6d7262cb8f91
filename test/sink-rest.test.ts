/**
 * The sink's REST writes and stored connectors, against the real broker and PostgreSQL server:
 * every create or config update is checked completely (schema, the table in the database's
 * catalog, the topics in Kafka) before anything is stored, answering 400 naming the field and
 * what is allowed; a row stored with a bad config (as an older sink did) is listed FAILED by name
 * and deletable while the other connectors write; such a row never keeps `tickflow sink` from
 * stopping at the first SIGINT.
 */
import { describe, expect, it } from 'vitest';
import type { Pool } from '../core/db.ts';
import { migrate } from '../migrations/runner.ts';
import { createPool } from '../core/db.ts';
import { createProducer, ensureTopics } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { topicFor } from '../schemas/index.ts';
import { connectorSchema, resolveConnector } from '../sink/config.ts';
import { Connector } from '../sink/connector.ts';
import { Decoder } from '../sink/decode.ts';
import { SinkEmitter } from '../sink/events.ts';
import { buildSink } from '../sink/index.ts';
import { createServerDatabase, describeEachDb } from './harness/db.ts';
import { killSink, sinkConfigFile, spawnSink } from './harness/sink-process.ts';
import { codecFor, makeTrades, produce, sinkTestConfig, testKafka, uniquePrefix, waitFor } from './harness/sink.ts';

const kafka = testKafka();

async function storedNames(pool: Pool): Promise<string[]> {
  return (await pool.query<{ name: string }>('select name from sink_connectors order by name')).rows.map((r) => r.name);
}

interface Answer {
  message: string;
  state: string;
  config: Record<string, unknown>;
}
const body = async (r: Response | Promise<Response>): Promise<Answer> => (await (await r).json()) as Answer;

async function tradeCount(pool: Pool, prefix: string): Promise<number> {
  return (await pool.query<{ n: number }>('select count(*)::int as n from trades where id like $1', [`${prefix}-%`])).rows[0]!.n;
}

describeEachDb(['postgres'], (db) => {
  it('checks every REST write completely before storing it: 400 naming the field and what is allowed, never 500', async () => {
    const prefix = uniquePrefix('val');
    const sink = buildSink(sinkTestConfig(prefix, { sink: { connectors: [{ name: `${prefix}-trades`, table: 'trades', insertMode: 'insert' }] } }), { pool: db().pool, schedule: false });
    await sink.start();
    const post = (name: string, config: Record<string, unknown>) => fetch(`${sink.url}/connectors`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, config }) });
    const x = `${prefix}-x`;
    try {
      // The request: a key field naming no column. 400, nothing stored, the name free.
      const noColumn = await post(x, { table: 'trades', keyFields: ['nope'] });
      expect(noColumn.status).toBe(400);
      expect((await body(noColumn)).message).toMatch(/^config\.keyFields: nope is not a column of trades \(columns: exchange, symbol, ts, id, side, price, amount, received_at\)/);
      expect(await storedNames(db().pool)).toEqual([]);
      expect((await fetch(`${sink.url}/connectors/${x}`)).status).toBe(404);
      expect((await fetch(`${sink.url}/connectors/${x}`, { method: 'DELETE' })).status).toBe(404);

      // Columns, but no unique key: on conflict (…) would fail at the first write.
      const notUnique = await post(x, { table: 'trades', insertMode: 'upsert', keyFields: ['exchange', 'symbol'] });
      expect(notUnique.status).toBe(400);
      expect((await body(notUnique)).message).toMatch(/config\.keyFields: \(exchange, symbol\) is not a unique key of trades.*\(exchange, symbol, ts, id\)/);
      // A topic that does not exist: named, with the topics that do.
      const noTopic = await post(x, { table: 'trades', topics: [`${prefix}.nope`] });
      expect(noTopic.status).toBe(400);
      expect((await body(noTopic)).message).toMatch(new RegExp(`config\\.topics: ${prefix}\\.nope does not exist in Kafka.*${prefix}\\.trades`));
      const badTable = await post(x, { table: 'trade' });
      expect(badTable.status).toBe(400);
      expect((await body(badTable)).message).toMatch(/config\.table/);
      expect(await storedNames(db().pool)).toEqual([]);

      // The same name, valid this time: created (no 409 left behind by the refusals above).
      const ok = await post(x, { table: 'trades', insertMode: 'insert', keyFields: ['id', 'exchange', 'symbol', 'ts'] });
      expect(ok.status).toBe(201);
      expect(await storedNames(db().pool)).toEqual([x]);
      expect((await post(x, { table: 'trades' })).status).toBe(409);

      // A bodiless action with Content-Type: application/json, as curl -H sends it.
      const pause = await fetch(`${sink.url}/connectors/${x}/pause`, { method: 'PUT', headers: { 'content-type': 'application/json' } });
      expect(pause.status).toBe(202);
      const restart = await fetch(`${sink.url}/connectors/${x}/restart`, { method: 'POST', headers: { 'content-type': 'application/json' } });
      expect(restart.status).toBe(204);
      // A bad JSON body is still a 400.
      expect((await fetch(`${sink.url}/connectors`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":' })).status).toBe(400);

      // A config update is checked the same way before it is stored.
      const put = (name: string, config: Record<string, unknown>) => fetch(`${sink.url}/connectors/${name}/config`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) });
      const badUpdate = await put(x, { table: 'trades', keyFields: ['nope'] });
      expect(badUpdate.status).toBe(400);
      expect((await body(badUpdate)).message).toMatch(/^keyFields: nope is not a column of trades/);
      expect((await body(fetch(`${sink.url}/connectors/${x}`))).config.keyFields).toEqual(['id', 'exchange', 'symbol', 'ts']);
      const update = await put(x, { table: 'trades', insertMode: 'insert', batchMaxRows: 300 });
      expect(update.status).toBe(200);
      expect((await body(fetch(`${sink.url}/connectors/${x}`))).config).toMatchObject({ batchMaxRows: 300 });
      const stored = (await db().pool.query<{ config: { batchMaxRows: number; keyFields?: string[] } }>('select config from sink_connectors where name = $1', [x])).rows[0]!.config;
      expect(stored.batchMaxRows).toBe(300);
      expect(stored.keyFields).toBeUndefined();
      // Paused before the update: still paused after it.
      await waitFor('the updated connector to be PAUSED', async () => (await body(fetch(`${sink.url}/connectors/${x}/status`))).state === 'PAUSED');
      expect((await put(`${prefix}-trades`, { table: 'trades' })).status).toBe(409);

      expect((await fetch(`${sink.url}/connectors/${x}`, { method: 'DELETE' })).status).toBe(204);
      expect(await storedNames(db().pool)).toEqual([]);
    } finally {
      await sink.close();
    }
  });

  it('lists a stored connector that cannot start as FAILED by name, skips it, lets the others write, and deletes it', async () => {
    const prefix = uniquePrefix('bad');
    const pool = db().pool;
    await migrate(pool);
    const badKey = `${prefix}-badkey`;
    const badSchema = `${prefix}-badschema`;
    // As the old code stored them: the first passed the schema only; the second predates it.
    await pool.query(`insert into sink_connectors (name, config) values ($1, $2::jsonb), ($3, $4::jsonb)`, [
      badKey,
      JSON.stringify({ name: badKey, table: 'trades', keyFields: ['nope'], insertMode: 'upsert', batchMaxRows: 5000, lingerMs: 100, errorTolerance: 'all', sessionTimeoutMs: 6000 }),
      badSchema,
      JSON.stringify({ name: badSchema, table: 'nope' }),
    ]);
    const sink = buildSink(sinkTestConfig(prefix, { sink: { connectors: [{ name: `${prefix}-trades`, table: 'trades', insertMode: 'insert', batchMaxRows: 500 }] } }), { pool, listen: false, schedule: false });
    await sink.start();
    try {
      const get = (url: string) => sink.api.inject({ method: 'GET', url });
      expect((await get('/connectors')).json()).toEqual([badKey, badSchema, `${prefix}-trades`].sort());
      const s1 = (await get(`/connectors/${badKey}/status`)).json();
      expect(s1).toMatchObject({ name: badKey, state: 'FAILED', table: 'trades', topics: [`${prefix}.trades`], lag: null });
      expect(s1.problem).toMatch(new RegExp(`connector ${badKey} cannot start: keyFields: nope is not a column of trades`));
      const s2 = (await get(`/connectors/${badSchema}/status`)).json();
      expect(s2).toMatchObject({ name: badSchema, state: 'FAILED' });
      expect(s2.problem).toMatch(/table/);
      expect((await get('/healthz')).json().connectors[badKey]).toMatchObject({ state: 'FAILED' });

      // A connector deleted while it starts leaves no consumer behind (it would write on its own).
      const gone = `${prefix}-gone`;
      expect((await sink.api.inject({ method: 'POST', url: '/connectors', payload: { name: gone, config: { table: 'trades', insertMode: 'insert' } } })).statusCode).toBe(201);
      expect((await sink.api.inject({ method: 'DELETE', url: `/connectors/${gone}` })).statusCode).toBe(204);

      // The others write.
      const trades = makeTrades(800, { idPrefix: `${prefix}-` });
      await produce(kafka, codecFor(prefix), topicFor(prefix, 'trade'), 'trade', trades);
      await waitFor('the good connector to write every trade', async () => (await tradeCount(pool, prefix)) === trades.length);
      const admin = kafka.admin();
      await admin.connect();
      try {
        const { groups } = await admin.describeGroups([`${prefix}-sink-${gone}`]);
        expect(groups[0]!.members).toEqual([]);
      } finally {
        await admin.disconnect();
      }
      expect((await pool.query('select 1 from sink_offsets where connector = $1', [gone])).rowCount).toBe(0);

      // Actions on it say why; a restart checks it again; DELETE removes it everywhere.
      expect((await sink.api.inject({ method: 'PUT', url: `/connectors/${badKey}/pause` })).statusCode).toBe(409);
      const restart = await sink.api.inject({ method: 'POST', url: `/connectors/${badKey}/restart` });
      expect(restart.statusCode).toBe(409);
      expect(restart.json().message).toMatch(/nope is not a column/);
      // Fixed in place by a config update, or deleted.
      const fixed = await sink.api.inject({ method: 'PUT', url: `/connectors/${badKey}/config`, headers: { 'content-type': 'application/json' }, payload: { table: 'trades', insertMode: 'insert' } });
      expect(fixed.statusCode).toBe(200);
      await waitFor('the fixed connector to run', async () => (await get(`/connectors/${badKey}/status`)).json().state === 'RUNNING');
      for (const name of [badKey, badSchema]) {
        expect((await sink.api.inject({ method: 'DELETE', url: `/connectors/${name}` })).statusCode).toBe(204);
        expect((await get(`/connectors/${name}`)).statusCode).toBe(404);
      }
      expect(await storedNames(pool)).toEqual([]);

      // A row stored meanwhile by another instance: the 409, GET and DELETE agree that it exists.
      const other = `${prefix}-other`;
      await pool.query(`insert into sink_connectors (name, config) values ($1, $2::jsonb)`, [other, JSON.stringify({ name: other, table: 'trades', insertMode: 'insert' })]);
      const taken = await sink.api.inject({ method: 'POST', url: '/connectors', payload: { name: other, config: { table: 'trades' } } });
      expect(taken.statusCode).toBe(409);
      await waitFor('the other instance\'s connector to be listed', async () => (await get(`/connectors/${other}`)).statusCode === 200);
      expect((await sink.api.inject({ method: 'DELETE', url: `/connectors/${other}` })).statusCode).toBe(204);
      expect(await storedNames(pool)).toEqual([]);
    } finally {
      await sink.close();
    }
  });
});

describeEachDb(['postgres'], (db) => {
  it('accepts a unique key of the table other than the primary key, and names the connector FAILED once the table lost it', async () => {
    const prefix = uniquePrefix('tbl');
    const pool = db().pool;
    await migrate(pool);
    const index = `${prefix}_uq`;
    await pool.query(`create unique index ${index} on trades (exchange, symbol, ts, id, side)`);
    const name = `${prefix}-byside`;
    const config = sinkTestConfig(prefix, { sink: { connectors: [] } });
    const first = buildSink(config, { pool, listen: false, schedule: false });
    await first.start();
    try {
      const created = await first.api.inject({ method: 'POST', url: '/connectors', payload: { name, config: { table: 'trades', keyFields: ['side', 'id', 'ts', 'symbol', 'exchange'] } } });
      expect(created.statusCode).toBe(201);
    } finally {
      await first.close();
    }
    await pool.query(`drop index ${index}`);
    const second = buildSink(config, { pool, listen: false, schedule: false });
    await second.start();
    try {
      const s = (await second.api.inject({ method: 'GET', url: `/connectors/${name}/status` })).json();
      expect(s.state).toBe('FAILED');
      expect(s.problem).toMatch(new RegExp(`connector ${name} cannot start: keyFields: \\(side, id, ts, symbol, exchange\\) is not a unique key of trades.*\\(exchange, symbol, ts, id\\)`));
      expect((await second.api.inject({ method: 'DELETE', url: `/connectors/${name}` })).statusCode).toBe(204);
    } finally {
      await second.close();
    }
  });

  it('a connector stopped while it starts (a signal at start-up, a DELETE) leaves no consumer running', async () => {
    const prefix = uniquePrefix('cls');
    const pool = db().pool;
    const config = sinkTestConfig(prefix);
    await migrate(pool);
    await ensureTopics(kafka, config.kafka);
    const decoder = new Decoder(config.kafka);
    decoder.start();
    const producer = createProducer(kafka);
    const admin = kafka.admin();
    await Promise.all([producer.connect(), admin.connect()]);
    const name = `${prefix}-trades`;
    try {
      const connector = new Connector(resolveConnector(connectorSchema.parse({ name, table: 'trades', insertMode: 'insert' }), prefix), { kafka, pool, decoder, producer, admin, events: new SinkEmitter(), clientId: prefix }, 'api');
      const started = connector.start();
      await connector.stop();
      await started;
      expect(connector.currentState).toBe('STOPPED');
      // A consumer left behind would join the group and write what arrives.
      await produce(kafka, codecFor(prefix), topicFor(prefix, 'trade'), 'trade', makeTrades(100, { idPrefix: `${prefix}-` }));
      await sleep(8_000);
      expect(await tradeCount(pool, prefix)).toBe(0);
      const { groups } = await admin.describeGroups([`${prefix}-sink-${name}`]);
      expect(groups[0]!.members).toEqual([]);
    } finally {
      await Promise.all([producer.disconnect(), admin.disconnect(), decoder.close()]);
    }
  });
});

describe('tickflow sink with a stored connector that cannot start', () => {
  it('starts, names it, and stops at the first SIGINT (also during start-up)', async () => {
    const prefix = uniquePrefix('sig');
    const url = await createServerDatabase('sinksig');
    const pool = createPool(url, { max: 2 });
    try {
      await migrate(pool);
      await pool.query(`insert into sink_connectors (name, config) values ('x', $1::jsonb)`, [JSON.stringify({ name: 'x', table: 'trades', keyFields: ['nope'], insertMode: 'upsert', batchMaxRows: 5000, lingerMs: 100, errorTolerance: 'all', sessionTimeoutMs: 6000 })]);
      const { file, name } = sinkConfigFile(prefix);

      // Once started: it runs, the good connector writes, the bad one is named; one SIGINT stops it.
      const p = spawnSink(file, url);
      try {
        await waitFor('the sink to start', () => /sink: \d+ connector\(s\)/.test(p.output()) || !p.alive(), 90_000);
        expect(p.output()).toMatch(/connector x cannot start: keyFields: nope is not a column of trades/);
        expect(p.output()).toContain(name);
        await produce(kafka, codecFor(prefix), topicFor(prefix, 'trade'), 'trade', makeTrades(200, { idPrefix: `${prefix}-` }));
        await waitFor('the good connector to write', async () => (await tradeCount(pool, prefix)) === 200);
        p.child.kill('SIGINT');
        await waitFor('the sink to exit after one SIGINT', () => !p.alive(), 30_000);
        expect(p.child.exitCode).toBe(0);
        expect(p.output()).not.toMatch(/RangeError/);
      } finally {
        await killSink(p);
      }

      // A SIGINT while it starts (the REST API listens, the connectors are not all up yet).
      const q = spawnSink(file, url, { LOG_LEVEL: 'info' });
      try {
        await waitFor('the REST API to listen', () => /REST API listening/.test(q.output()), 90_000);
        q.child.kill('SIGINT');
        await waitFor('the sink to exit after one SIGINT during start-up', () => !q.alive(), 30_000);
        expect(q.child.exitCode).toBe(0);
      } finally {
        await killSink(q);
      }
    } finally {
      await pool.end();
    }
  });
});
