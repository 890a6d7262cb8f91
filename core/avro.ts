import avro from 'avsc';
import { KIND_BY_NAME, RECORD_KINDS, TYPES, schemaJson, topicFor, type RecordKind, type RecordOf } from '../schemas/index.ts';
import { TickflowError, messageOf } from './errors.ts';
import type { Logger } from './log.ts';
import { RETRY, retry } from './retry.ts';

/**
 * The Avro codec of the Kafka values, in the two framings of DESIGN.md:
 * - Confluent wire format (magic 0x00 + 4-byte big-endian schema id) when a Confluent-compatible
 *   schema registry is configured;
 * - Avro single-object encoding (0xC3 0x01 + 8-byte little-endian CRC-64-AVRO fingerprint of
 *   the schema's Parsing Canonical Form) otherwise.
 * Decoding reads both, resolving an older writer schema into the current reader schema.
 *
 * With a registry, the schema registered under `<topic>-value` is the full .avsc (logical types,
 * defaults, docs), so registry consumers see timestamps and the registry's compatibility rules
 * see defaults; the single-object fingerprint is, as the specification says, the one of the
 * Parsing Canonical Form.
 */

// ---- CRC-64-AVRO (the Rabin fingerprint of the Avro specification) ----
const EMPTY = 0xc15d213aa4d7a795n;
const MASK = 0xffffffffffffffffn;
const FP_TABLE: bigint[] = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & (-(fp & 1n) & MASK));
  return fp;
});

export function crc64Avro(data: Uint8Array): bigint {
  let fp = EMPTY;
  for (const b of data) fp = (fp >> 8n) ^ FP_TABLE[Number((fp ^ BigInt(b)) & 0xffn)]!;
  return fp;
}

/** Parsing Canonical Form of a type (avsc's getSchema without attributes is exactly that). */
export function canonicalForm(type: avro.Type): string {
  return JSON.stringify(type.schema({ exportAttrs: false }));
}

/** The 8 fingerprint bytes as they appear in a single-object header (little-endian). */
export function fingerprintBytes(type: avro.Type): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(crc64Avro(Buffer.from(canonicalForm(type), 'utf8')));
  return buf;
}

// ---- schema registry ----
export interface SchemaRegistry {
  /** Registers (or finds) a schema under a subject; returns its global id. */
  register(subject: string, schema: string): Promise<number>;
  /** The schema text of a global id. */
  getById(id: number): Promise<string>;
}

/** The text registered for a schema: the full .avsc (logical types, defaults, docs), compact. */
export function registrySchema(schema: avro.Schema): string {
  return JSON.stringify(schema);
}

/** Why a fetch failed, down to the socket error (ECONNREFUSED, ENOTFOUND...). */
function fetchFailure(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail ? `${messageOf(e)} (${detail})` : messageOf(e);
}

/** Client of the Confluent schema registry REST API (subjects use the TopicNameStrategy). */
export class ConfluentRegistry implements SchemaRegistry {
  readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, timeoutMs = 10_000) {
    this.baseUrl = baseUrl;
    this.timeoutMs = timeoutMs;
  }

  private async call(pathname: string, init: RequestInit = {}): Promise<unknown> {
    const url = new URL(pathname, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`);
    const what = `schema registry SCHEMA_REGISTRY_URL=${this.baseUrl}`;
    let res: Response;
    let body: string;
    try {
      res = await fetch(url, {
        ...init,
        headers: { 'content-type': 'application/vnd.schemaregistry.v1+json', accept: 'application/vnd.schemaregistry.v1+json, application/json' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      body = await res.text();
    } catch (e) {
      throw new TickflowError('KAFKA_UNREACHABLE', `${what} is unreachable: ${fetchFailure(e)}`, { retriable: true, cause: e });
    }
    const excerpt = body.replace(/\s+/g, ' ').trim().slice(0, 300);
    if (!res.ok) {
      // 5xx, 408 and 429 may pass; anything else (a wrong path, auth, an incompatible or
      // invalid schema) will not by retrying.
      const retriable = res.status >= 500 || res.status === 408 || res.status === 429;
      const hint = res.status === 404 && !/error_code/.test(body) ? ' (is it the Confluent-compatible API? Apicurio Registry serves it at /apis/ccompat/v7)' : '';
      throw new TickflowError('AVRO_ENCODE', `${what}: ${init.method ?? 'GET'} ${url.pathname} answered ${res.status}${hint}: ${excerpt || '(empty)'}`, { retriable });
    }
    try {
      return JSON.parse(body);
    } catch (e) {
      throw new TickflowError('AVRO_ENCODE', `${what}: ${url.pathname} answered something that is not JSON (not a schema registry?): ${excerpt.slice(0, 100)}`, { cause: e });
    }
  }

  async register(subject: string, schema: string): Promise<number> {
    const r = (await this.call(`subjects/${encodeURIComponent(subject)}/versions`, { method: 'POST', body: JSON.stringify({ schema }) })) as { id?: unknown };
    if (typeof r.id !== 'number') throw new TickflowError('AVRO_ENCODE', `schema registry SCHEMA_REGISTRY_URL=${this.baseUrl}: registering ${subject} gave no id: ${JSON.stringify(r).slice(0, 200)}`);
    return r.id;
  }

  async getById(id: number): Promise<string> {
    const r = (await this.call(`schemas/ids/${id}`)) as { schema?: unknown };
    if (typeof r.schema !== 'string') throw new TickflowError('AVRO_DECODE', `schema registry SCHEMA_REGISTRY_URL=${this.baseUrl}: schema id ${id} came without a schema`);
    return r.schema;
  }
}

// ---- codec ----
/** How long decoding waits, by default, for an unreachable registry to answer for a schema id. */
const ID_WAIT_MS = 60_000;

export const SINGLE_OBJECT_MAGIC = Buffer.from([0xc3, 0x01]);
export const CONFLUENT_MAGIC = 0x00;

export interface Decoded<K extends RecordKind = RecordKind> {
  readonly kind: K;
  readonly value: RecordOf[K];
  readonly framing: 'single-object' | 'confluent';
}

interface WriterEntry {
  readonly kind: RecordKind;
  readonly resolver: avro.Resolver | undefined; // undefined: writer == reader
}

export interface CodecOptions {
  readonly topicPrefix: string;
  /** When set, values are written in the Confluent wire format with ids from this registry. */
  readonly registry?: SchemaRegistry;
  /** Older schema versions this process should still read in single-object encoding. */
  readonly writerSchemas?: readonly avro.Schema[];
  /**
   * How long decode() waits for an unreachable (or 5xx) registry when it meets a schema id it has
   * not fetched yet, before it throws a retriable AVRO_DECODE error; default 60 s. The sink uses
   * a few seconds and retries the whole batch itself (sink/connector.ts).
   */
  readonly idWaitMs?: number;
}

export interface PrepareOptions {
  /** Logs each wait for the registry (warn), naming its URL. */
  readonly log?: Logger;
  /** Gives up (throws the last error) once the registry has been unreachable this long; default never. */
  readonly deadlineMs?: number;
  /** Stops waiting (throws the signal's reason). */
  readonly signal?: AbortSignal;
  /** Who waits, for the log line (e.g. "the gateway"). */
  readonly who?: string;
}

export class AvroCodec {
  private readonly opts: CodecOptions;
  private readonly byFingerprint = new Map<string, WriterEntry>();
  private readonly byId = new Map<number, Promise<WriterEntry>>();
  private readonly idOfKind = new Map<RecordKind, number>();
  private readonly headerOfKind = new Map<RecordKind, Buffer>();
  private prepared: Promise<void> | undefined;

  constructor(opts: CodecOptions) {
    this.opts = opts;
    for (const kind of RECORD_KINDS) {
      const fp = fingerprintBytes(TYPES[kind]);
      this.byFingerprint.set(fp.toString('hex'), { kind, resolver: undefined });
      if (!opts.registry) this.headerOfKind.set(kind, Buffer.concat([SINGLE_OBJECT_MAGIC, fp]));
    }
    for (const schema of opts.writerSchemas ?? []) {
      const writer = avro.Type.forSchema(schema);
      this.byFingerprint.set(fingerprintBytes(writer).toString('hex'), this.entryForWriter(writer));
    }
  }

  get framing(): 'single-object' | 'confluent' {
    return this.opts.registry ? 'confluent' : 'single-object';
  }

  /** The registry's id of a kind's schema, once prepare() is done. */
  schemaId(kind: RecordKind): number | undefined {
    return this.idOfKind.get(kind);
  }

  /** The registry's URL, when it is the HTTP client. */
  get registryUrl(): string | undefined {
    const r = this.opts.registry;
    return r instanceof ConfluentRegistry ? r.baseUrl : undefined;
  }

  /**
   * Registers the full schemas with the registry (Confluent framing), once: later calls return
   * the same promise (a failed attempt is forgotten, so a retry registers again). A no-op
   * without a registry. encode() needs it done first.
   */
  prepare(): Promise<void> {
    if (!this.opts.registry) return Promise.resolve();
    this.prepared ??= this.register().catch((e: unknown) => {
      this.prepared = undefined;
      throw e;
    });
    return this.prepared;
  }

  /**
   * prepare(), waiting while the registry is unreachable (or answers 5xx): each wait is logged
   * with the registry's URL and the next delay. A refusal (a wrong path, an incompatible or
   * invalid schema) throws at once; so does the deadline, with the last error.
   */
  async prepareWaiting(o: PrepareOptions = {}): Promise<void> {
    if (!this.opts.registry) return;
    await retry(() => this.prepare(), {
      ...RETRY.schemaRegistry,
      ...(o.deadlineMs !== undefined ? { deadlineMs: o.deadlineMs } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onRetry: (e, attempt, delayMs) =>
        o.log?.warn({ registry: this.registryUrl, attempt, delayMs }, `${messageOf(e)}; ${o.who ?? 'tickflow'} waits for it before producing (next try in ${(delayMs / 1000).toFixed(1)} s)`),
    });
  }

  private async register(): Promise<void> {
    const registry = this.opts.registry!;
    for (const kind of RECORD_KINDS) {
      const id = await registry.register(`${topicFor(this.opts.topicPrefix, kind)}-value`, registrySchema(schemaJson(kind)));
      this.idOfKind.set(kind, id);
      this.byId.set(id, Promise.resolve({ kind, resolver: undefined }));
      const header = Buffer.alloc(5);
      header.writeUInt8(CONFLUENT_MAGIC, 0);
      header.writeUInt32BE(id, 1);
      this.headerOfKind.set(kind, header);
    }
  }

  encode<K extends RecordKind>(kind: K, record: RecordOf[K]): Buffer {
    const header = this.headerOfKind.get(kind);
    if (!header) throw new TickflowError('AVRO_ENCODE', `AvroCodec.prepare() must run before encode() when a schema registry is configured (${this.registryUrl ?? 'SCHEMA_REGISTRY_URL'})`);
    let body: Buffer;
    try {
      body = TYPES[kind].toBuffer(record);
    } catch (e) {
      const errors: string[] = [];
      TYPES[kind].isValid(record, { errorHook: (p) => errors.push(p.join('.') || '(root)') });
      throw new TickflowError('AVRO_ENCODE', `${kind} record does not match its schema at ${errors.join(', ') || '?'}: ${messageOf(e)}`, { cause: e });
    }
    return Buffer.concat([header, body], header.length + body.length);
  }

  /** Decodes either framing; async only when a Confluent id must be fetched from the registry. */
  async decode(buf: Buffer): Promise<Decoded> {
    if (buf.length >= 5 && buf[0] === CONFLUENT_MAGIC) {
      const id = buf.readUInt32BE(1);
      let entry = this.byId.get(id);
      if (!entry) {
        entry = this.writerOfId(id);
        this.byId.set(id, entry);
        // A failed fetch is not remembered: the next record with this id asks again.
        entry.catch(() => {
          if (this.byId.get(id) === entry) this.byId.delete(id);
        });
      }
      return { ...this.read(await entry, buf, 5), framing: 'confluent' };
    }
    return this.decodeSingleObject(buf);
  }

  /**
   * The writer schema of a Confluent id, from the registry. An unreachable registry is waited for
   * up to idWaitMs (default a minute), then the error is thrown with retriable=true (the caller
   * retries: a sink must not dead-letter good records because its registry is down); an unknown
   * id (404) fails at once, not retriable.
   */
  private async writerOfId(id: number): Promise<WriterEntry> {
    const registry = this.opts.registry;
    if (!registry) throw new TickflowError('AVRO_DECODE', `Confluent-framed record with schema id ${id}, but no schema registry is configured (SCHEMA_REGISTRY_URL)`);
    let text: string;
    try {
      text = await retry(() => registry.getById(id), { ...RETRY.schemaRegistryId, maxDelayMs: Math.min(RETRY.schemaRegistryId.maxDelayMs, this.opts.idWaitMs ?? ID_WAIT_MS), deadlineMs: this.opts.idWaitMs ?? ID_WAIT_MS });
    } catch (e) {
      // retriable survives: an unreachable registry is an outage to wait out, not a bad record.
      throw new TickflowError('AVRO_DECODE', `schema id ${id}: ${messageOf(e)}`, { retriable: e instanceof TickflowError && e.retriable, cause: e });
    }
    let writer: avro.Type;
    try {
      writer = avro.Type.forSchema(JSON.parse(text) as avro.Schema);
    } catch (e) {
      throw new TickflowError('AVRO_DECODE', `schema id ${id} from the registry is not an Avro schema: ${messageOf(e)}`, { cause: e });
    }
    // A schema this process knows (docs and attributes aside): its entry, no new resolver.
    return this.byFingerprint.get(fingerprintBytes(writer).toString('hex')) ?? this.entryForWriter(writer);
  }

  decodeSingleObject(buf: Buffer): Decoded {
    if (buf.length < 10 || buf[0] !== 0xc3 || buf[1] !== 0x01) {
      throw new TickflowError('AVRO_DECODE', `not an Avro record: expected a single-object header (C3 01) or Confluent magic byte 0, got ${buf.subarray(0, 2).toString('hex') || 'an empty value'}`);
    }
    const fp = buf.subarray(2, 10).toString('hex');
    const entry = this.byFingerprint.get(fp);
    if (!entry) throw new TickflowError('AVRO_DECODE', `unknown writer schema fingerprint ${fp}`);
    return { ...this.read(entry, buf, 10), framing: 'single-object' };
  }

  private entryForWriter(writer: avro.Type): WriterEntry {
    const kind = KIND_BY_NAME.get(writer.name ?? '');
    if (!kind) throw new TickflowError('AVRO_DECODE', `writer schema ${writer.name ?? '(anonymous)'} is not a tickflow record`);
    return { kind, resolver: TYPES[kind].createResolver(writer) };
  }

  private read(entry: WriterEntry, buf: Buffer, offset: number): { kind: RecordKind; value: RecordOf[RecordKind] } {
    try {
      const body = buf.subarray(offset);
      const value = entry.resolver ? TYPES[entry.kind].fromBuffer(body, entry.resolver) : TYPES[entry.kind].fromBuffer(body);
      return { kind: entry.kind, value: value as RecordOf[RecordKind] };
    } catch (e) {
      throw new TickflowError('AVRO_DECODE', `${entry.kind} record body is corrupt: ${messageOf(e)}`, { cause: e });
    }
  }
}

export function createCodec(kafka: { topicPrefix: string; schemaRegistryUrl?: string | undefined }, o: { idWaitMs?: number | undefined } = {}): AvroCodec {
  return new AvroCodec({
    topicPrefix: kafka.topicPrefix,
    ...(o.idWaitMs !== undefined ? { idWaitMs: o.idWaitMs } : {}),
    ...(kafka.schemaRegistryUrl ? { registry: new ConfluentRegistry(kafka.schemaRegistryUrl) } : {}),
  });
}
