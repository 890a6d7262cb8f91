/**
 * User events (record kind `event`, schemas/event.avsc): a strategy's signals, annotations, fills,
 * news, posted beside the market data and read back with it.
 *   POST /v1/events   one event (an object) or a batch (an array); produced as Avro records to
 *                     `<prefix>.events` (the API's producer, plugins/producer.ts), written by the
 *                     sink into `events` (insert mode: the first copy wins). An idempotency key
 *                     (the `Idempotency-Key` header, or the `idempotency_key` field) makes every
 *                     post of it yield one event, across retries and API restarts (event-keys.ts).
 *   GET  /v1/events   a range of events, by type and instrument, paged on (ts, id), JSON or CSV.
 * Events about no instrument are stored with exchange and symbol '' (a key column) and served
 * with null.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Event } from '../../schemas/index.ts';
import type { ApiConfig } from '../config.ts';
import { decodeCursor, encodeCursor, fingerprint } from '../cursor.ts';
import { claimKeys, expireKeys, expiryCutoff, markProduced, type KeyClaim } from '../event-keys.ts';
import { ApiError, PATTERN_HINTS, badRequest } from '../errors.ts';
import { emptyRange, sendPage, wantsCsv } from '../reply.ts';
import { cursorParam, errorRef, exchangeParam, formatParam, limitParam, pageResponses, symbolParam, timeParam } from '../schemas.ts';
import { Params, us } from '../sql.ts';
import { TIME_PATTERN, formatTime, formatTimeParam, nowUs, parseTime } from '../time.ts';
import { parseConfigInterval } from '../../core/time.ts';
import { messageOf } from '../../core/errors.ts';

const TYPE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$';
// RFC 3339 with a `T` between date and time: the shared TIME_PATTERN also lets a space through,
// which JSON Schema's date-time format (and so a client validating against the document) refuses.
// Here no known-instrument 404 comes first to hide the difference, so these routes say it exactly.
const EVENT_TIME_PATTERN = TIME_PATTERN.replace('[Tt ]', '[Tt]');
PATTERN_HINTS.set(EVENT_TIME_PATTERN, PATTERN_HINTS.get(TIME_PATTERN) ?? 'expected an RFC 3339 time with seconds and a zone, like 2024-01-31T00:00:00Z');
const eventTimeParam = (what: string) => ({ ...timeParam(what), pattern: EVENT_TIME_PATTERN });
const KEY_PATTERN = '^[\\x21-\\x7e]{1,200}$';
const TYPE_RE = new RegExp(TYPE_PATTERN);
const EVENT_TIME_RE = new RegExp(EVENT_TIME_PATTERN);
const KEY_RE = new RegExp(KEY_PATTERN);
const EXCHANGE_RE = new RegExp(exchangeParam.pattern);
const SYMBOL_RE = new RegExp(symbolParam.pattern);
const FIELDS = new Set(['type', 'exchange', 'symbol', 'ts', 'data', 'idempotency_key']);

const typeParam = { type: 'string', pattern: TYPE_PATTERN, description: 'the event type, chosen by the poster (e.g. signal, fill, note): 1-64 letters, digits and . _ : / -' } as const;
const keyParam = { type: 'string', pattern: KEY_PATTERN, description: 'an idempotency key: 1-200 printable ASCII characters, no spaces' } as const;

const eventBody = (maxDataBytes: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    dependentRequired: { symbol: ['exchange'] },
    properties: {
      type: typeParam,
      exchange: { ...exchangeParam, description: 'ccxt exchange id the event is about (optional: an event may name no instrument)' },
      symbol: { ...symbolParam, description: 'ccxt unified symbol the event is about (needs exchange)' },
      ts: { type: 'string', format: 'date-time', pattern: EVENT_TIME_PATTERN, description: 'event time, RFC 3339 with seconds and a zone (default: when the API received it)' },
      data: { description: `free JSON payload (object, array or scalar), at most ${maxDataBytes} bytes as JSON text` },
      idempotency_key: { ...keyParam, description: `${keyParam.description}; every post of one key yields one event (overrides the Idempotency-Key header)` },
    },
  }) as const;

interface Parsed {
  readonly type: string;
  readonly exchange: string;
  readonly symbol: string;
  /** µs, when given. */
  readonly ts: number | undefined;
  /** JSON text. */
  readonly data: string;
  readonly key: string | null;
}

function parseEvent(x: unknown, at: string, key: string | null, maxDataBytes: number): Parsed {
  const name = (f: string) => `${at}${f}`;
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw badRequest(at ? at.slice(0, -1) : 'body', `${at ? at.slice(0, -1) : 'body'}: expected an event object {type, exchange?, symbol?, ts?, data?, idempotency_key?}`);
  const o = x as Record<string, unknown>;
  for (const f of Object.keys(o)) if (!FIELDS.has(f)) throw badRequest(name(f), `${name(f)}: unknown field (fields: ${[...FIELDS].join(', ')})`);
  if (o.type === undefined) throw badRequest(name('type'), `${name('type')}: required`);
  if (typeof o.type !== 'string' || !TYPE_RE.test(o.type)) throw badRequest(name('type'), `${name('type')}: expected 1-64 letters, digits and . _ : / - (starting with a letter or digit), like signal or fill`);
  const opt = (f: 'exchange' | 'symbol', re: RegExp, max: number, what: string): string => {
    const v = o[f];
    if (v === undefined) return '';
    if (typeof v !== 'string' || v.length > max || !re.test(v)) throw badRequest(name(f), `${name(f)}: expected ${what}`);
    return v;
  };
  const exchange = opt('exchange', EXCHANGE_RE, 64, 'a ccxt exchange id (lower-case letters, digits, _ and -), like binance');
  const symbol = opt('symbol', SYMBOL_RE, symbolParam.maxLength, `a ccxt unified symbol of at most ${symbolParam.maxLength} characters, like BTC/USDT`);
  if (symbol && !exchange) throw badRequest(name('exchange'), `${name('exchange')}: required with symbol`);
  let ts: number | undefined;
  if (o.ts !== undefined) {
    if (typeof o.ts !== 'string') throw badRequest(name('ts'), `${name('ts')}: expected an RFC 3339 time with seconds and a zone, like 2024-01-31T00:00:00Z`);
    if (!EVENT_TIME_RE.test(o.ts)) throw badRequest(name('ts'), `${name('ts')}: expected an RFC 3339 time with seconds and a zone, like 2024-01-31T00:00:00Z, years 1970–2199`);
    ts = parseTime(o.ts, name('ts'));
  }
  const data = JSON.stringify(o.data === undefined ? null : o.data);
  const bytes = Buffer.byteLength(data);
  if (bytes > maxDataBytes) throw badRequest(name('data'), `${name('data')}: ${bytes} bytes of JSON, at most ${maxDataBytes} (api.events.maxDataBytes)`);
  let k = key;
  if (o.idempotency_key !== undefined) {
    if (typeof o.idempotency_key !== 'string' || !KEY_RE.test(o.idempotency_key)) throw badRequest(name('idempotency_key'), `${name('idempotency_key')}: expected 1-200 printable ASCII characters without spaces`);
    k = o.idempotency_key;
  }
  return { type: o.type, exchange, symbol, ts, data, key: k };
}

function headerKey(req: FastifyRequest): string | null {
  const h = req.headers['idempotency-key'];
  if (h === undefined) return null;
  const v = Array.isArray(h) ? h[0] : h;
  if (v === undefined || !KEY_RE.test(v)) throw badRequest('Idempotency-Key', 'Idempotency-Key: expected 1-200 printable ASCII characters without spaces');
  return v;
}

const fingerprintOf = (p: Parsed) => createHash('sha256').update(JSON.stringify([p.type, p.exchange, p.symbol, p.ts ?? null, p.data])).digest('base64url').slice(0, 22);

interface EventsQuery {
  from: string;
  to?: string;
  type?: string;
  exchange?: string;
  symbol?: string;
  limit?: number;
  cursor?: string;
  format?: 'json' | 'csv';
}

interface EventRow {
  exchange: string;
  symbol: string;
  ts: number;
  received_at: number;
  id: string;
  type: string;
  data: string;
  idempotency_key: string | null;
}

const acceptedSchema = {
  type: 'object',
  description: 'The events accepted, in the order posted: their ids and times (the same for every post of one idempotency key).',
  properties: {
    data: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          ts: { type: 'string', format: 'date-time' },
          received_at: { type: 'string', format: 'date-time' },
          idempotency_key: { type: ['string', 'null'] },
          duplicate: { type: 'boolean', description: 'true when an earlier post of this idempotency key made the event' },
        },
        required: ['id', 'ts', 'received_at', 'idempotency_key', 'duplicate'],
      },
    },
  },
  required: ['data'],
} as const;

/** How often expired idempotency keys are deleted (a post of an expired key treats it as new meanwhile). */
const EXPIRE_EVERY_MS = 3_600_000;

export const eventsRoutes: FastifyPluginAsync<{ config: ApiConfig; eventsRetention?: string | null }> = async (app, { config, eventsRetention = null }) => {
  const cfg = config.events;
  // Idempotency keys expire with the events retention (sink.policies.retention.events): see event-keys.ts.
  const keyRetentionMs = eventsRetention === null ? undefined : parseConfigInterval(eventsRetention)?.ms;
  if (keyRetentionMs !== undefined) {
    const expire = () =>
      void expireKeys(app.db, expiryCutoff(keyRetentionMs)!)
        .then((n) => n > 0 && app.log.info({ deleted: n }, 'expired idempotency keys deleted'))
        .catch((e) => app.log.warn({ err: messageOf(e) }, 'deleting expired idempotency keys failed; the next run retries'));
    let timer: NodeJS.Timeout | undefined;
    app.addHook('onReady', async () => {
      expire();
      timer = setInterval(expire, EXPIRE_EVERY_MS).unref();
    });
    app.addHook('onClose', async () => clearInterval(timer));
  }

  app.post(
    '/v1/events',
    {
      // Bearer auth (api.token): api/plugins/auth.ts guards every route but GET/HEAD/OPTIONS, this one included.
      bodyLimit: cfg.maxBodyBytes,
      // The body is checked by parseEvent (each refusal names the field, `[i].field` in a batch);
      // the schema below is the OpenAPI document's, not run by ajv (whose coercion would turn a
      // numeric type into a string).
      validatorCompiler: () => () => true,
      schema: {
        summary: 'Post user events (one or a batch)',
        description: `One event (an object) or a batch (an array of up to ${cfg.maxBatch}): \`type\` required; \`exchange\` and \`symbol\` optional (an event may name no instrument); \`ts\` defaults to now; \`data\` free JSON up to ${cfg.maxDataBytes} bytes. An idempotency key (the \`Idempotency-Key\` header, or \`idempotency_key\` per event; with a batch the header's key is suffixed \`#<index>\`) makes every post of it yield the one event first made, even after an API restart; the same key with another event is a 409. Produced to Kafka, written by the sink into \`events\`, streamed on /v1/stream (channel \`events\`). Answers 202 with the ids.`,
        tags: ['events'],
        headers: { type: 'object', properties: { 'idempotency-key': keyParam } },
        body: { oneOf: [eventBody(cfg.maxDataBytes), { type: 'array', minItems: 1, maxItems: cfg.maxBatch, items: eventBody(cfg.maxDataBytes) }] },
        response: {
          202: acceptedSchema,
          400: errorRef,
          409: { description: 'An idempotency key already used for another event', ...errorRef },
          413: errorRef,
          503: { description: 'Kafka or the database unavailable: retry (with the same idempotency key, nothing is written twice)', ...errorRef },
        },
      },
    },
    async (req, reply) => {
      const body = req.body;
      const hKey = headerKey(req);
      const batch = Array.isArray(body);
      const items: unknown[] = batch ? body : [body];
      if (items.length === 0) throw badRequest('body', 'body: an empty batch (post an event object or a non-empty array)');
      if (items.length > cfg.maxBatch) throw badRequest('body', `body: ${items.length} events, at most ${cfg.maxBatch} per post (api.events.maxBatch)`);
      const parsed = items.map((x, i) => parseEvent(x, batch ? `[${i}].` : '', hKey === null ? null : batch ? `${hKey}#${i}` : hKey, cfg.maxDataBytes));
      if (!app.publisher) throw new ApiError(503, 'this API runs without Kafka: user events cannot be published');

      const receivedAt = nowUs();
      const fresh = parsed.map((p) => ({ id: randomUUID(), ts: p.ts ?? receivedAt, received_at: receivedAt, fingerprint: fingerprintOf(p) }));
      // One claim per distinct key; a key twice in one batch is the same event twice.
      const claims = new Map<string, KeyClaim>();
      parsed.forEach((p, i) => {
        if (p.key === null) return;
        const c = claims.get(p.key);
        if (c && c.fingerprint !== fresh[i]!.fingerprint) throw new ApiError(409, `${batch ? `[${i}].` : ''}idempotency_key: ${p.key} names two different events in this batch`, { parameter: `${batch ? `[${i}].` : ''}idempotency_key` });
        if (!c) claims.set(p.key, { key: p.key, ...fresh[i]! });
      });
      const holders = await claimKeys(app.db, [...claims.values()], expiryCutoff(keyRetentionMs));

      const records: Event[] = [];
      const toMark: string[] = [];
      const sent = new Set<string>();
      const answer = parsed.map((p, i) => {
        const h = p.key === null ? undefined : holders.get(p.key);
        if (p.key !== null && !h) throw new ApiError(503, 'the idempotency key could not be claimed; retry');
        if (h && h.fingerprint !== fresh[i]!.fingerprint) {
          const param = `${batch ? `[${i}].` : ''}idempotency_key`;
          throw new ApiError(409, `${param}: ${p.key} was used for another event (id ${h.id}); use a new key for a new event`, { parameter: param });
        }
        const e = h ?? { ...fresh[i]!, fresh: true, produced: false };
        // Produce what is not in Kafka yet: new events, and a key's event whose first post failed
        // before Kafka took it (the sink keeps the first copy of a key, so a rare double is harmless).
        if (!e.produced && !sent.has(e.id)) {
          sent.add(e.id);
          records.push({ exchange: p.exchange, symbol: p.symbol, ts: e.ts, received_at: e.received_at, id: e.id, type: p.type, data: p.data, idempotency_key: p.key });
          if (p.key !== null) toMark.push(p.key);
        }
        // A duplicate: an earlier post made it, or an earlier event of this batch with the same key.
        return { id: e.id, ts: formatTime(e.ts), received_at: formatTime(e.received_at), idempotency_key: p.key, duplicate: h ? !h.fresh || h.id !== fresh[i]!.id : false };
      });
      if (records.length > 0) await app.publisher.send('event', records);
      await markProduced(app.db, toMark);
      const duplicates = answer.filter((a) => a.duplicate).length;
      app.events.emit('events.posted', { created: answer.length - duplicates, duplicates });
      return reply.code(202).send({ data: answer });
    },
  );

  app.get<{ Querystring: EventsQuery }>(
    '/v1/events',
    {
      schema: {
        summary: 'User events over a time range',
        description:
          'Events with from <= ts < to, ordered by (ts, id), optionally of one type, exchange and symbol. Events that name no instrument have exchange and symbol null; they are left out when exchange or symbol is given. `data` is the posted JSON (in CSV: its JSON text). Follow `next` for the following page.',
        tags: ['events'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['from'],
          properties: {
            from: eventTimeParam('start of the range, inclusive'),
            to: eventTimeParam('end of the range, exclusive (default: now)'),
            type: typeParam,
            exchange: { ...exchangeParam, description: 'only events about this exchange' },
            symbol: { ...symbolParam, description: 'only events about this symbol (on every exchange unless exchange is given)' },
            limit: limitParam(config.maxRows),
            cursor: cursorParam,
            format: formatParam,
          },
        },
        response: pageResponses('Event'),
      },
    },
    async (req, reply) => {
      const q = req.query;
      const from = parseTime(q.from, 'from');
      const toGiven = q.to === undefined ? undefined : parseTime(q.to, 'to');
      const fp = fingerprint('events', { from, to: toGiven, type: q.type, exchange: q.exchange, symbol: q.symbol });
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, fp);
      if (cursor && cursor.i === undefined) throw badRequest('cursor', 'cursor: not an events cursor');
      const to = toGiven ?? cursor?.t ?? nowUs();
      if (from >= to) return emptyRange(req, reply, 'Event');
      const limit = q.limit ?? config.maxRows;

      const p = new Params();
      const where = [`ts >= ${p.ref('from', formatTimeParam(cursor ? Math.max(from, cursor.p) : from), 'timestamptz')}`, `ts < ${p.ref('to', formatTimeParam(to), 'timestamptz')}`];
      if (q.exchange !== undefined) where.push(`exchange = ${p.ref('exchange', q.exchange)}`);
      if (q.symbol !== undefined) where.push(`symbol = ${p.ref('symbol', q.symbol)}`);
      if (q.type !== undefined) where.push(`type = ${p.ref('type', q.type)}`);
      if (cursor) where.push(`(ts, id) > (${p.ref('cts', formatTimeParam(cursor.p), 'timestamptz')}, ${p.ref('cid', cursor.i, 'text')})`);
      const text =
        `select exchange, symbol, ${us('ts')} as ts, ${us('received_at')} as received_at, id, type, data, idempotency_key from events ` +
        `where ${where.join(' and ')} order by ts, id limit ${p.ref('limit', limit + 1)}`;
      const rows = await app.db.query<EventRow>('events', text, p.values);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const next = rows.length > limit && last ? encodeCursor({ p: last.ts, i: last.id, ...(toGiven === undefined ? { t: to } : {}) }, fp) : null;
      const csv = wantsCsv(req);
      const data = page.map((r) => ({
        exchange: r.exchange || null,
        symbol: r.symbol || null,
        ts: formatTime(r.ts),
        received_at: formatTime(r.received_at),
        id: r.id,
        type: r.type,
        data: csv ? r.data : (JSON.parse(r.data) as unknown),
        idempotency_key: r.idempotency_key,
      }));
      return sendPage(req, reply, 'Event', data, next);
    },
  );
};
