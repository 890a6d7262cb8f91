/**
 * The sink end to end, against the real broker and databases: duplicates and replays leave
 * exactly the distinct records; poison records go to the dead-letter topic with their reason
 * while the good ones are written; errorTolerance none stops the connector; the REST API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../core/db.ts';
import { topicFor, type Candle, type Trade } from '../schemas/index.ts';
import { DLQ_HEADERS } from '../sink/dead-letter.ts';
import { buildSink, type Sink } from '../sink/index.ts';
import { describeEachDb, openTestDb, type TestDb } from './harness/db.ts';
import { BASE_US, codecFor, makeTrades, produce, produceRaw, readTopic, sinkTestConfig, testKafka, uniquePrefix, waitFor } from './harness/sink.ts';

const kafka = testKafka();

async function tradesIn(pool: Pool): Promise<Trade[]> {
  const r = await pool.query<Trade>(
    `select exchange, symbol, (extract(epoch from ts) * 1000000)::int8 as ts, (extract(epoch from received_at) * 1000000)::int8 as received_at, id, side, price, amount
     from trades`,
  );
  return r.rows.sort(byKey);
}

function byKey(a: Trade, b: Trade): number {
  return (a.exchange + a.symbol).localeCompare(b.exchange + b.symbol) || a.ts - b.ts || a.id.localeCompare(b.id);
}

async function caughtUp(sink: Sink, name: string): Promise<boolean> {
  const res = await sink.api.inject({ method: 'GET', url: `/connectors/${name}/status` });
  const s = res.json() as { lag: number | null; partitions: { nextOffset: number | null; highWatermark: number }[] };
  return s.lag === 0 && s.partitions.every((p) => p.highWatermark === 0 || p.nextOffset === p.highWatermark);
}

describeEachDb(['embedded', 'postgres'], (db) => {
  it('writes exactly the distinct records through duplicates and replays', async () => {
    const prefix = uniquePrefix('dup');
    const codec = codecFor(prefix);
    const config = sinkTestConfig(prefix, {
      sink: {
        connectors: [
          { name: `${prefix}-trades`, table: 'trades', insertMode: 'insert', batchMaxRows: 700 },
          { name: `${prefix}-candles`, table: 'candles', insertMode: 'upsert', batchMaxRows: 700 },
        ],
      },
    });
    // A few ids that array literals must escape.
    const tricky = ['a"b', 'c\\d', '{x,y}', 'NULL', ' sp ', 'é€😀'];
    const trades = makeTrades(3000).map((t, i) => (i < tricky.length ? { ...t, id: tricky[i]! } : t));
    // Duplicates: a gateway re-sending after a reconnect, within and across batches.
    const dups = [...trades.slice(100, 400), ...trades.slice(2500, 2600), ...trades.slice(0, 50)];
    // A forming candle updated in place: the last version of each key must win.
    const candles: Candle[] = [];
    for (let m = 0; m < 20; m++) {
      for (let v = 0; v < 5; v++) {
        candles.push({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: BASE_US + m * 60_000_000, received_at: BASE_US + m * 60_000_000 + v, open: 100 + m, high: 110 + m + v, low: 90 + m, close: 100 + m + v, volume: 1 + v, closed: v === 4 });
      }
    }
    const lastCandles = candles.filter((c) => c.closed);

    const sink = buildSink(config, { pool: db().pool, listen: false, schedule: false });
    await sink.start();
    try {
      await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(0, 1500));
      await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', [...dups, ...trades.slice(1500)]);
      await produce(kafka, codec, topicFor(prefix, 'candle'), 'candle', candles);
      await waitFor('the trades connector to catch up', () => caughtUp(sink, `${prefix}-trades`));
      await waitFor('the candles connector to catch up', () => caughtUp(sink, `${prefix}-candles`));
      expect(await tradesIn(db().pool)).toEqual([...trades].sort(byKey));
      const c = await db().pool.query(`select (extract(epoch from ts) * 1000000)::int8 as ts, close, high, volume, closed from candles order by ts`);
      expect(c.rows).toEqual(lastCandles.map((x) => ({ ts: x.ts, close: x.close, high: x.high, volume: x.volume, closed: true })));

      // Replay 1: the same records produced again (new offsets): keys dedupe them.
      await produce(kafka, codec, topicFor(prefix, 'trade'), 'trade', trades.slice(1000, 2000));
      await waitFor('the replayed records to be consumed', () => caughtUp(sink, `${prefix}-trades`));
      expect(await tradesIn(db().pool)).toEqual([...trades].sort(byKey));
    } finally {
      await sink.close();
    }

    // Replay 2: every offset forgotten, in the database and in Kafka: the whole topic is read
    // again from offset 0 and writes nothing new.
    await db().pool.query('delete from sink_offsets where connector = $1', [`${prefix}-trades`]);
    const admin = kafka.admin();
    await admin.connect();
    await admin.resetOffsets({ groupId: `${prefix}-sink-${prefix}-trades`, topic: topicFor(prefix, 'trade'), earliest: true });
    await admin.disconnect();
    const again = buildSink(config, { pool: db().pool, listen: false, schedule: false });
    await again.start();
    try {
      await waitFor('the full replay', () => caughtUp(again, `${prefix}-trades`));
      const status = again.connectors.get(`${prefix}-trades`).status();
      expect(status.messagesProcessed).toBe(trades.length + dups.length + 1000);
      expect(status.rowsWritten).toBe(0);
      expect(await tradesIn(db().pool)).toEqual([...trades].sort(byKey));
    } finally {
      await again.close();
    }
  });
});

describe('the sink on the PostgreSQL server', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await openTestDb('postgres');
  });
  afterAll(async () => {
    await db?.close();
  });

  it('writes the good records and dead-letters the poison ones with their reason', async () => {
    const prefix = uniquePrefix('poison');
    const codec = codecFor(prefix);
    const name = `${prefix}-trades`;
    const dlq = `${prefix}.dead`;
    const config = sinkTestConfig(prefix, { sink: { connectors: [{ name, table: 'trades', deadLetterTopic: dlq, batchMaxRows: 300 }] } });
    const sink = buildSink(config, { pool: db.pool, listen: false, schedule: false });
    await sink.start();
    // A rule only the database knows: the writer finds the row by bisecting the batch.
    await db.pool.query('alter table trades add constraint test_price_positive check (price > 0)');
    try {
      const good = makeTrades(1000, { idPrefix: 'g' });
      const topic = topicFor(prefix, 'trade');
      const nan: Trade = { ...makeTrades(1, { idPrefix: 'nan' })[0]!, price: Number.NaN };
      const nul: Trade = { ...makeTrades(1, { idPrefix: 'nul' })[0]!, symbol: 'BTC/US\u0000DT' };
      const negative: Trade = { ...makeTrades(1, { idPrefix: 'neg' })[0]!, price: -5 };
      const candle: Candle = { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: BASE_US, received_at: BASE_US, open: 1, high: 1, low: 1, close: 1, volume: 1, closed: true };
      const messages = good.map((t) => ({ key: `${t.exchange}:${t.symbol}`, value: codec.encode('trade', t), partition: 0 }));
      const poison = [
        { key: 'junk', value: Buffer.from('definitely not avro'), partition: 0, reason: /single-object header|not an Avro record/, stage: 'decode' },
        { key: 'nan', value: codec.encode('trade', nan), partition: 0, reason: /price is not a finite number/, stage: 'validate' },
        { key: 'nul', value: codec.encode('trade', nul), partition: 0, reason: /symbol contains a NUL/, stage: 'validate' },
        { key: 'neg', value: codec.encode('trade', negative), partition: 0, reason: /test_price_positive/, stage: 'write' },
        { key: 'candle', value: codec.encode('candle', candle), partition: 0, reason: /a candle record, but connector/, stage: 'decode' },
      ];
      // Poison spread among the good ones: 1 at the start, others in the middle and the end.
      const all = [poison[0]!, ...messages.slice(0, 400), poison[1]!, poison[2]!, ...messages.slice(400, 700), poison[3]!, ...messages.slice(700), poison[4]!];
      await produceRaw(kafka, topic, all);
      await waitFor('the connector to catch up', () => caughtUp(sink, name));

      expect(await tradesIn(db.pool)).toEqual([...good].sort(byKey));
      const dead = await readTopic(kafka, dlq, poison.length);
      expect(dead).toHaveLength(poison.length);
      const offsetOf = (p: (typeof poison)[number]) => String(all.indexOf(p));
      for (const p of poison) {
        const d = dead.find((x) => x.key === p.key);
        expect(d, p.key).toBeDefined();
        expect(d!.value?.equals(p.value)).toBe(true);
        expect(d!.headers[DLQ_HEADERS.reason]).toMatch(p.reason);
        expect(d!.headers[DLQ_HEADERS.stage]).toBe(p.stage);
        expect(d!.headers[DLQ_HEADERS.topic]).toBe(topic);
        expect(d!.headers[DLQ_HEADERS.partition]).toBe('0');
        expect(d!.headers[DLQ_HEADERS.offset]).toBe(offsetOf(p));
        expect(d!.headers[DLQ_HEADERS.connector]).toBe(name);
      }
      const status = sink.connectors.get(name).status();
      expect(status.deadLettered).toBe(poison.length);
      expect(status.state).toBe('RUNNING');
    } finally {
      await sink.close();
      await db.pool.query('alter table trades drop constraint test_price_positive');
    }
  });

  it('stops the connector (FAILED, with the reason) on a bad record when errorTolerance is none', async () => {
    const prefix = uniquePrefix('strict');
    const codec = codecFor(prefix);
    const name = `${prefix}-trades`;
    const config = sinkTestConfig(prefix, { sink: { connectors: [{ name, table: 'trades', errorTolerance: 'none', batchMaxRows: 100 }] } });
    const sink = buildSink(config, { pool: db.pool, listen: false, schedule: false });
    await sink.start();
    try {
      const good = makeTrades(300, { idPrefix: `${prefix}-` });
      const topic = topicFor(prefix, 'trade');
      const msg = (t: Trade) => ({ key: `${t.exchange}:${t.symbol}`, value: codec.encode('trade', t), partition: 0 });
      await produceRaw(kafka, topic, [...good.slice(0, 250).map(msg), { key: 'junk', value: Buffer.from([1, 2, 3]), partition: 0 }, ...good.slice(250).map(msg)]);
      await waitFor('the connector to fail', () => sink.connectors.get(name).currentState === 'FAILED');
      const res = await sink.api.inject({ method: 'GET', url: `/connectors/${name}/status` });
      const s = res.json() as { state: string; lastError: string; partitions: { nextOffset: number | null; highWatermark: number }[] };
      expect(s.state).toBe('FAILED');
      expect(s.lastError).toMatch(/bad record at .*@250 \(decode\).*errorTolerance is none/);
      // Nothing past the bad record is stored as done.
      const r = await db.pool.query<{ n: number }>(`select count(*)::int as n from trades where id like $1`, [`${prefix}-%`]);
      expect(r.rows[0]!.n).toBeLessThanOrEqual(250);
      expect(Math.max(...s.partitions.map((p) => p.nextOffset ?? 0))).toBeLessThanOrEqual(250);
    } finally {
      await sink.close();
    }
  });

  it('manages connectors over the REST API, with a bearer token, and keeps created ones across restarts', async () => {
    const prefix = uniquePrefix('rest');
    const token = 'test-token-123456';
    const config = sinkTestConfig(prefix, { sink: { apiToken: token, connectors: [{ name: `${prefix}-trades`, table: 'trades' }] } });
    const auth = { authorization: `Bearer ${token}` };
    const sink = buildSink(config, { pool: db.pool, schedule: false });
    await sink.start();
    let second: Sink | undefined;
    try {
      expect(sink.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // Over the network, to see the listener and the token check.
      expect((await fetch(`${sink.url}/connectors`)).status).toBe(401);
      expect((await fetch(`${sink.url}/connectors`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      expect(await (await fetch(`${sink.url}/connectors`, { headers: auth })).json()).toEqual([`${prefix}-trades`]);

      const bad = await sink.api.inject({ method: 'POST', url: '/connectors', headers: auth, payload: { name: `${prefix}-c`, config: { table: 'nope' } } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ statusCode: 400, error: 'Bad Request', message: expect.stringMatching(/config\.table/) }); // the query API's envelope
      const badKey = await sink.api.inject({ method: 'POST', url: '/connectors', headers: auth, payload: { name: `${prefix}-c`, config: { table: 'candles', batchMaxRows: 'lots' } } });
      expect(badKey.statusCode).toBe(400);
      expect(badKey.json().message).toMatch(/config\.batchMaxRows/);
      const noConfig = await sink.api.inject({ method: 'POST', url: '/connectors', headers: auth, payload: { name: 'x' } });
      expect(noConfig.statusCode).toBe(400);
      expect(noConfig.json().message).toMatch(/config/);

      const created = await sink.api.inject({ method: 'POST', url: '/connectors', headers: auth, payload: { name: `${prefix}-c`, config: { table: 'candles', batchMaxRows: 200 } } });
      expect(created.statusCode).toBe(201);
      expect(created.json()).toMatchObject({ name: `${prefix}-c`, source: 'api', config: { table: 'candles', topics: [`${prefix}.candles`], batchMaxRows: 200, insertMode: 'upsert' } });
      expect((await sink.api.inject({ method: 'POST', url: '/connectors', headers: auth, payload: { name: `${prefix}-c`, config: { table: 'candles' } } })).statusCode).toBe(409);
      expect((await sink.api.inject({ method: 'GET', url: `/connectors/${prefix}-c`, headers: auth })).json().config.table).toBe('candles');
      expect((await sink.api.inject({ method: 'GET', url: '/connectors/nope/status', headers: auth })).statusCode).toBe(404);

      const state = async () => (await sink.api.inject({ method: 'GET', url: `/connectors/${prefix}-c/status`, headers: auth })).json() as { state: string; partitions: unknown[] };
      await waitFor('RUNNING', async () => (await state()).state === 'RUNNING');
      expect((await state()).partitions).toHaveLength(3);
      expect((await sink.api.inject({ method: 'PUT', url: `/connectors/${prefix}-c/pause`, headers: auth })).statusCode).toBe(202);
      expect((await state()).state).toBe('PAUSED');

      // Created connectors (and their pause) survive a restart: a second sink on the same database.
      second = buildSink(sinkTestConfig(prefix, { sink: { apiToken: token, connectors: [] } }), { pool: db.pool, listen: false, schedule: false });
      await second.start();
      expect(second.connectors.names()).toEqual([`${prefix}-c`]);
      expect(second.connectors.get(`${prefix}-c`).currentState).toBe('PAUSED');
      await second.close();
      second = undefined;

      expect((await sink.api.inject({ method: 'PUT', url: `/connectors/${prefix}-c/resume`, headers: auth })).statusCode).toBe(202);
      expect((await state()).state).toBe('RUNNING');
      expect((await sink.api.inject({ method: 'POST', url: `/connectors/${prefix}-c/restart`, headers: auth })).statusCode).toBe(204);
      expect((await state()).state).toBe('RUNNING');
      expect((await sink.api.inject({ method: 'DELETE', url: `/connectors/${prefix}-trades`, headers: auth })).statusCode).toBe(409);
      expect((await sink.api.inject({ method: 'DELETE', url: `/connectors/${prefix}-c`, headers: auth })).statusCode).toBe(204);
      expect((await sink.api.inject({ method: 'GET', url: '/connectors', headers: auth })).json()).toEqual([`${prefix}-trades`]);
      const gone = await db.pool.query('select 1 from sink_connectors where name = $1', [`${prefix}-c`]);
      expect(gone.rowCount).toBe(0);
    } finally {
      await second?.close();
      await sink.close();
    }
  });
});
