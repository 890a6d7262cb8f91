/**
 * Broadcasters (where matching records go: an HTTP endpoint or a Kafka topic) and registrations
 * (which records: a record kind, an instrument filter with * and ? wildcards, an optional
 * predicate in the language of predicate.ts). One shape for a config entry and a REST body;
 * parse functions refuse a bad one with a ValidationError naming the field (and, for a predicate,
 * the token and its position). The Matcher indexes many registrations for the runtime's
 * per-record lookup.
 */
import { z } from 'zod';
import { TickflowError } from '../core/errors.ts';
import { CATALOG, STREAM_KINDS, asTuple, type RecordKind } from '../schemas/catalog.ts';
import { PredicateError, compilePredicate, type Predicate } from './predicate.ts';

/** A definition refused: `field` is its path (`config.url`, `predicate`); a predicate's error adds the token and offset. */
export class ValidationError extends TickflowError {
  readonly field: string;
  readonly part: string | undefined;
  readonly position: number | undefined;

  constructor(field: string, message: string, opts: { part?: string; position?: number; cause?: unknown } = {}) {
    super('VALIDATION', message, opts.cause === undefined ? {} : { cause: opts.cause });
    this.field = field;
    this.part = opts.part;
    this.position = opts.position;
  }
}

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const nameSchema = z.string().regex(NAME_PATTERN, 'expected 1-100 characters of letters, digits, ".", "_" or "-", starting with a letter or digit');

/**
 * The record kinds a registration may name: those the catalog streams live (market data, gaps,
 * and any later kind served on /v1/stream, such as user events); not instrument metadata.
 */
export const REGISTRATION_KINDS: readonly RecordKind[] = STREAM_KINDS;

export const BROADCASTER_KINDS = ['http', 'kafka'] as const;
export type BroadcasterKind = (typeof BROADCASTER_KINDS)[number];

/** What every response shows instead of a secret; sent back in a PUT, it keeps the stored one. */
export const REDACTED = '***';

/** Header names an HTTP broadcaster may not set: the delivery's own (see the contract). */
const RESERVED_HEADERS = /^(content-type|content-length|host|x-tickflow-.*)$/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Header values shown redacted: names that usually carry a credential. */
const SENSITIVE_HEADER = /authorization|cookie|token|secret|key|password|signature/i;

export const httpConfigSchema = z.strictObject({
  url: z
    .string()
    .max(2_048)
    .regex(/^https?:\/\/[A-Za-z0-9._~%!$&'()*+,;=:@[\]-]+(?:[/?#][\x21-\x7e]*)?$/i, 'expected an absolute http:// or https:// URL (ASCII, percent-encoded)')
    .describe('Where each matching record is POSTed as JSON')
    .refine((s) => {
      try {
        const u = new URL(s);
        return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
      } catch {
        return false;
      }
    }, 'expected an absolute http:// or https:// URL'),
  headers: z
    .record(
      z.string().regex(HEADER_NAME, 'expected an HTTP header name').refine((h) => !RESERVED_HEADERS.test(h), 'set by the delivery itself (content-type, x-tickflow-*)'),
      z.string().max(8_192).refine((v) => !/[\r\n]/.test(v), 'no line breaks in a header value'),
    )
    .optional(),
  /** Signs each delivery (x-tickflow-signature: sha256=HMAC(secret, "<timestamp>.<body>")). */
  secret: z.string().min(1).max(1_024).optional().describe('HMAC-SHA256 key of the x-tickflow-signature header; shown as "***", and "***" in a PUT keeps it'),
  timeoutMs: z.int().min(100).max(120_000).default(5_000),
  retry: z
    .strictObject({
      maxAttempts: z.int().min(1).max(100).default(5),
      initialMs: z.int().min(1).max(600_000).default(200),
      maxMs: z.int().min(1).max(3_600_000).default(10_000),
    })
    .prefault({})
    .refine((r) => r.maxMs >= r.initialMs, { message: 'maxMs must be at least initialMs', path: ['maxMs'] }),
});
export type HttpConfig = z.infer<typeof httpConfigSchema>;

export const kafkaConfigSchema = z.strictObject({
  /** A topic of the user's, on tickflow's own cluster (kafka.brokers). */
  topic: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name: 1-249 letters, digits, ".", "_" or "-"')
    .refine((t) => t !== '.' && t !== '..', 'expected a Kafka topic name other than "." and ".."'),
  format: z.enum(['json', 'avro']).default('json'),
});
export type KafkaConfig = z.infer<typeof kafkaConfigSchema>;

export const broadcasterSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ name: nameSchema, kind: z.literal('http'), config: httpConfigSchema, paused: z.boolean().optional() }),
    z.strictObject({ name: nameSchema, kind: z.literal('kafka'), config: kafkaConfigSchema, paused: z.boolean().optional() }),
  ],
  { error: () => `expected one of ${BROADCASTER_KINDS.join(', ')}` },
);
export type BroadcasterSpec = z.infer<typeof broadcasterSchema>;

/** `*` (any run of characters) and `?` (one character); everything else literal. */
const patternSchema = (what: string) => z.string().min(1).max(200).default('*').describe(`${what}, with * (any run of characters) and ? (one character) as wildcards`);

export const registrationSchema = z
  .strictObject({
    name: nameSchema,
    broadcaster: nameSchema,
    kind: z.enum(asTuple(REGISTRATION_KINDS as RecordKind[]), { error: () => `expected one of ${REGISTRATION_KINDS.join(', ')}` }),
    exchange: patternSchema('ccxt exchange id (or the config entry name)'),
    symbol: patternSchema('ccxt unified symbol, e.g. BTC/USDT or */USDT'),
    predicate: z
      .string()
      .max(4_000)
      .nullable()
      .default(null)
      .describe("A filter over the record's fields, e.g. `price crosses above 100000` or `side = 'buy' and amount > 5` (README: the predicate language); null: every record"),
    paused: z.boolean().optional(),
  })
  .superRefine((r, ctx) => {
    if (r.predicate === null || r.predicate.trim() === '') return;
    try {
      compilePredicate(r.kind, r.predicate);
    } catch (e) {
      if (!(e instanceof PredicateError)) throw e;
      ctx.addIssue({ code: 'custom', path: ['predicate'], message: e.message.replace(/^predicate: /, ''), params: { part: e.part, position: e.position } });
    }
  });
export type RegistrationSpec = z.infer<typeof registrationSchema>;

function pathOf(p: readonly PropertyKey[]): string {
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

/** The first issue of a failed parse as a ValidationError naming its field. */
function refusal(what: string, error: z.ZodError): ValidationError {
  const i = error.issues[0]!;
  let field = pathOf(i.path);
  let msg = i.message;
  if (i.code === 'unrecognized_keys') {
    field = pathOf([...i.path, i.keys[0]!]);
    msg = `unknown field (${i.keys.map((k) => pathOf([...i.path, k])).join(', ')})`;
  } else if (i.code === 'invalid_key' || i.code === 'invalid_element') msg = i.issues[0]?.message ?? msg;
  else if (i.code === 'invalid_type' && msg.includes('received undefined')) msg = 'required';
  const params = (i as { params?: { part?: string; position?: number } }).params;
  const where = field || 'body';
  return new ValidationError(where, `${what}: ${where}: ${msg}`, params ? { part: params.part!, position: params.position!, cause: error } : { cause: error });
}

/** Validates a broadcaster (config entry or REST body); throws ValidationError naming the field. */
export function parseBroadcaster(body: unknown): BroadcasterSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('body', 'broadcaster: expected an object with name, kind and config');
  const r = broadcasterSchema.safeParse(body);
  if (!r.success) throw refusal('broadcaster', r.error);
  return r.data;
}

/** Validates a registration and compiles its predicate; throws ValidationError naming the field (for the predicate: the token and its offset). */
export function parseRegistration(body: unknown): RegistrationSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('body', 'registration: expected an object with name, broadcaster and kind');
  const r = registrationSchema.safeParse(body);
  if (!r.success) throw refusal('registration', r.error);
  return r.data;
}

/** A broadcaster as shown to users: the secret and credential-like header values replaced by "***". */
export function redactBroadcaster<B extends { kind: string; config: unknown }>(b: B): B {
  if (b.kind !== 'http') return b;
  const c = b.config as HttpConfig;
  const headers = c.headers && Object.fromEntries(Object.entries(c.headers).map(([k, v]) => [k, SENSITIVE_HEADER.test(k) ? REDACTED : v]));
  return { ...b, config: { ...c, ...(c.secret !== undefined ? { secret: REDACTED } : {}), ...(headers ? { headers } : {}) } };
}

/**
 * A replacement that sends back "***" (what a GET showed) keeps the stored secret or header
 * value, so a GET-edit-PUT round trip does not overwrite credentials with the mask.
 */
export function keepRedacted(next: BroadcasterSpec, stored: { kind: string; config: unknown } | undefined): BroadcasterSpec {
  if (next.kind !== 'http') return next;
  const old = stored?.kind === 'http' ? (stored.config as HttpConfig) : undefined;
  const c = { ...next.config };
  if (c.secret === REDACTED) {
    if (old?.secret === undefined) throw new ValidationError('config.secret', `broadcaster: config.secret: "${REDACTED}" keeps the stored secret, and none is stored`);
    c.secret = old.secret;
  }
  if (c.headers) {
    c.headers = Object.fromEntries(
      Object.entries(c.headers).map(([k, v]) => {
        if (v !== REDACTED || !SENSITIVE_HEADER.test(k)) return [k, v];
        const was = old?.headers?.[k];
        if (was === undefined) throw new ValidationError(`config.headers.${k}`, `broadcaster: config.headers.${k}: "${REDACTED}" keeps the stored value, and none is stored`);
        return [k, was];
      }),
    );
  }
  return { ...next, config: c };
}

// ---- instrument filter -----------------------------------------------------------------------

export const hasWildcard = (pattern: string): boolean => pattern.includes('*') || pattern.includes('?');

function globTest(pattern: string): (s: string) => boolean {
  if (pattern === '*') return () => true;
  if (!hasWildcard(pattern)) return (s) => s === pattern;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\/]/g, '\\$&').replace(/\*+/g, '.*').replace(/\?/g, '.')}$`, 's');
  return (s) => re.test(s);
}

/** A test of (exchange, symbol) against two patterns with * and ? wildcards (case-sensitive, like ccxt ids and symbols). */
export function instrumentFilter(exchange: string, symbol: string): (ex: string, sym: string) => boolean {
  const e = globTest(exchange);
  const s = globTest(symbol);
  return (ex, sym) => e(ex) && s(sym);
}

// ---- matcher ---------------------------------------------------------------------------------

/** A registration as stored (broadcast/store.ts), with its broadcaster's kind and pause. */
export interface RegistrationRow {
  readonly name: string;
  readonly broadcaster: string;
  readonly kind: string;
  readonly exchange: string;
  readonly symbol: string;
  readonly predicate: string | null;
  readonly paused: boolean;
  /** The broadcaster's pause (absent: not paused). */
  readonly broadcasterPaused?: boolean;
}

export interface CompiledRegistration {
  readonly name: string;
  /** The row it was compiled from. */
  readonly spec: RegistrationRow;
  readonly broadcaster: string;
  readonly kind: RecordKind;
  readonly exchange: string;
  readonly symbol: string;
  readonly predicate: Predicate;
  readonly matchesInstrument: (ex: string, sym: string) => boolean;
}

/** A stored registration that no longer compiles (the catalog changed under it): left out of matching. */
export interface RejectedRegistration {
  readonly name: string;
  readonly error: ValidationError | PredicateError;
}

interface KindIndex {
  /** `exchange\u0000symbol` → registrations naming exactly that instrument. */
  readonly exact: Map<string, CompiledRegistration[]>;
  /** exchange → registrations with that exact exchange and a symbol pattern. */
  readonly byExchange: Map<string, CompiledRegistration[]>;
  /** Registrations with an exchange pattern. */
  readonly wild: CompiledRegistration[];
  /** The answers so far, per instrument (few instruments, many records each). */
  readonly cache: Map<string, readonly CompiledRegistration[]>;
}

const CACHE_MAX = 50_000;
const EMPTY: readonly CompiledRegistration[] = Object.freeze([]);

/**
 * Registrations indexed for "which may want this record": by kind, then exact exchange+symbol,
 * exact exchange with a symbol pattern, or an exchange pattern (a fallback list). The answer per
 * (kind, instrument) is cached, so a stream of 20k records/s over a few hundred instruments costs
 * a map lookup per record whatever the number of registrations. Paused registrations, and those
 * of a paused broadcaster, are left out (their records are skipped, not queued). The predicate
 * is the caller's to test, with the state it keeps per registration and instrument.
 */
export class Matcher {
  readonly registrations: readonly CompiledRegistration[];
  readonly rejected: readonly RejectedRegistration[];
  private readonly kinds = new Map<string, KindIndex>();

  constructor(regs: readonly RegistrationRow[]) {
    const ok: CompiledRegistration[] = [];
    const rejected: RejectedRegistration[] = [];
    for (const r of regs) {
      if (r.paused || r.broadcasterPaused) continue;
      const c = compileRow(r);
      if ('error' in c) rejected.push(c);
      else ok.push(c);
    }
    this.registrations = Object.freeze(ok);
    this.rejected = Object.freeze(rejected);
    for (const c of ok) {
      let k = this.kinds.get(c.kind);
      if (!k) this.kinds.set(c.kind, (k = { exact: new Map(), byExchange: new Map(), wild: [], cache: new Map() }));
      if (hasWildcard(c.exchange)) k.wild.push(c);
      else if (hasWildcard(c.symbol)) push(k.byExchange, c.exchange, c);
      else push(k.exact, `${c.exchange}\u0000${c.symbol}`, c);
    }
  }

  /** The kinds some active registration names (the runtime consumes their topics). */
  kindsNamed(): RecordKind[] {
    return [...this.kinds.keys()] as RecordKind[];
  }

  /** Active registrations of this kind whose instrument filter takes (exchange, symbol), in name order. */
  candidates(kind: RecordKind, exchange: string, symbol: string): readonly CompiledRegistration[] {
    const k = this.kinds.get(kind);
    if (!k) return EMPTY;
    const key = `${exchange}\u0000${symbol}`;
    const hit = k.cache.get(key);
    if (hit) return hit;
    const out = [...(k.exact.get(key) ?? []), ...(k.byExchange.get(exchange) ?? []).filter((c) => c.matchesInstrument(exchange, symbol)), ...k.wild.filter((c) => c.matchesInstrument(exchange, symbol))];
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const frozen = out.length === 0 ? EMPTY : Object.freeze(out);
    if (k.cache.size >= CACHE_MAX) k.cache.clear();
    k.cache.set(key, frozen);
    return frozen;
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}

function compileRow(r: RegistrationRow): CompiledRegistration | RejectedRegistration {
  if (!(REGISTRATION_KINDS as readonly string[]).includes(r.kind) || !(r.kind in CATALOG)) {
    return { name: r.name, error: new ValidationError('kind', `registration ${r.name}: kind "${r.kind}" is not a record kind (${REGISTRATION_KINDS.join(', ')})`) };
  }
  const kind = r.kind as RecordKind;
  try {
    const predicate = compilePredicate(kind, r.predicate ?? '');
    return { name: r.name, spec: r, broadcaster: r.broadcaster, kind, exchange: r.exchange, symbol: r.symbol, predicate, matchesInstrument: instrumentFilter(r.exchange, r.symbol) };
  } catch (e) {
    if (e instanceof PredicateError) return { name: r.name, error: e };
    throw e;
  }
}
