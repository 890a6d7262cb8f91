/**
 * The predicate language of registrations: a filter over one record's fields, safe to accept from
 * any user. A hand-written tokenizer and recursive-descent parser build an AST checked against
 * the record kind's columns (schemas/catalog.ts), then compiled into closures: nothing the user
 * writes is ever evaluated as code, there are no function calls and no property access.
 *
 *   expr    := or
 *   or      := and ('or' and)*
 *   and     := unary ('and' unary)*
 *   unary   := 'not' unary | '(' expr ')' | 'closed' | field op literal | field 'crosses' ('above'|'below') number
 *   op      := = | != | < | <= | > | >=
 *   literal := number | 'single-quoted string' ('' inside for a quote) | true | false | null
 *
 * Keywords are case-insensitive, fields are the kind's column names. Typing, checked at compile
 * time: numeric columns (float8, int4, int8) take numbers; text columns take strings (an Avro
 * enum column, like a trade's `side`, only its symbols, with = and !=); bool columns true/false
 * with = and !=; time columns (microseconds) a number of µs or an ISO-8601 string; `= null` and
 * `!= null` only on nullable columns. jsonb columns (a book's levels) are not comparable.
 * A comparison with a null value is false, except `!=` against a non-null literal.
 *
 * `f crosses above L` is true on the record where `f` goes from `<= L` (the previous record of the
 * same registration and instrument) to `> L`; `below`: from `>= L` to `< L`. The first record of
 * an instrument only seeds the state; a record whose `f` is null leaves it untouched. Every
 * crosses term sees every record (no short-circuit), so the state follows the instrument, not
 * what the rest of the predicate let through.
 */
import { TickflowError } from '../core/errors.ts';
import { CATALOG, type Column, type RecordKind } from '../schemas/catalog.ts';

/** Per (registration, instrument): the last value of each crosses term's field. JSON-serialisable. */
export type PredicateState = Record<string, number>;

export interface Predicate {
  readonly source: string;
  /** Has a crosses term: the caller keeps `state` per registration and instrument. */
  readonly stateful: boolean;
  /** Evaluate on one record; `state` is the previous state of this registration+instrument (undefined at first). */
  test(record: Readonly<Record<string, unknown>>, state: PredicateState | undefined): { match: boolean; state?: PredicateState };
}

/** A predicate that does not compile: `part` is the offending token or text, `position` its 0-based offset. */
export class PredicateError extends TickflowError {
  readonly part: string;
  readonly position: number;

  constructor(message: string, part: string, position: number) {
    super('BAD_PREDICATE', message);
    this.part = part;
    this.position = position;
  }
}

/** Longest source accepted (a registration's filter, not a program). */
export const PREDICATE_MAX_LENGTH = 4_000;
/** Deepest nesting of not/parentheses (bounds the parser's recursion). */
const MAX_DEPTH = 64;

// ---- tokens --------------------------------------------------------------------------------

type TokenType = 'ident' | 'number' | 'string' | 'op' | 'lparen' | 'rparen' | 'end';
interface Token {
  readonly type: TokenType;
  /** The source text of the token. */
  readonly text: string;
  readonly pos: number;
  /** number: its value; string: the unquoted text. */
  readonly value?: number | string;
}

const OPS = ['=', '!=', '<', '<=', '>', '>='] as const;
type Op = (typeof OPS)[number];
const KEYWORDS = new Set(['and', 'or', 'not', 'closed', 'crosses', 'above', 'below', 'true', 'false', 'null']);

const NUMBER = /-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y;
const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '(' || c === ')') {
      out.push({ type: c === '(' ? 'lparen' : 'rparen', text: c, pos: i });
      i++;
      continue;
    }
    if (c === '=' || c === '<' || c === '>' || c === '!') {
      const two = src.slice(i, i + 2);
      const text = two === '!=' || two === '<=' || two === '>=' ? two : c;
      if (text === '!') throw new PredicateError(`predicate: unexpected "${text}" at ${i} (comparisons: ${OPS.join(' ')})`, text, i);
      out.push({ type: 'op', text, pos: i });
      i += text.length;
      continue;
    }
    if (c === "'") {
      let j = i + 1;
      let s = '';
      for (;;) {
        if (j >= src.length) throw new PredicateError(`predicate: unterminated string at ${i}`, src.slice(i, i + 20), i);
        if (src[j] === "'") {
          if (src[j + 1] === "'") {
            s += "'";
            j += 2;
            continue;
          }
          break;
        }
        s += src[j];
        j++;
      }
      out.push({ type: 'string', text: src.slice(i, j + 1), pos: i, value: s });
      i = j + 1;
      continue;
    }
    NUMBER.lastIndex = i;
    const num = (c === '-' || c === '.' || (c >= '0' && c <= '9')) && NUMBER.exec(src);
    if (num) {
      const after = src[i + num[0].length];
      if (after !== undefined && /[A-Za-z_]/.test(after)) {
        IDENT.lastIndex = i + num[0].length;
        const tail = IDENT.exec(src)?.[0] ?? after;
        throw new PredicateError(`predicate: malformed number "${num[0]}${tail}" at ${i}`, num[0] + tail, i);
      }
      out.push({ type: 'number', text: num[0], pos: i, value: Number(num[0]) });
      i += num[0].length;
      continue;
    }
    IDENT.lastIndex = i;
    const id = IDENT.exec(src);
    if (id) {
      out.push({ type: 'ident', text: id[0], pos: i });
      i += id[0].length;
      continue;
    }
    const what = c === '.' ? 'property access is not part of the language' : c === '"' ? 'strings are single-quoted' : 'not part of the language';
    throw new PredicateError(`predicate: unexpected character "${c}" at ${i} (${what})`, c, i);
  }
  out.push({ type: 'end', text: '', pos: src.length });
  return out;
}

// ---- AST -----------------------------------------------------------------------------------

type Literal = number | string | boolean | null;
type Node =
  | { readonly t: 'or' | 'and'; readonly items: readonly Node[] }
  | { readonly t: 'not'; readonly item: Node }
  | { readonly t: 'closed' }
  | { readonly t: 'cmp'; readonly field: string; readonly op: Op; readonly value: Literal }
  | { readonly t: 'crosses'; readonly field: string; readonly dir: 'above' | 'below'; readonly level: number; readonly index: number };

const NUMERIC = new Set(['float8', 'int4', 'int8']);
const EQUALITY: ReadonlySet<Op> = new Set(['=', '!=']);

class Parser {
  private readonly kind: RecordKind;
  private readonly tokens: readonly Token[];
  private i = 0;
  private depth = 0;
  private crosses = 0;
  private readonly columns: ReadonlyMap<string, Column>;

  constructor(kind: RecordKind, tokens: readonly Token[]) {
    this.kind = kind;
    this.tokens = tokens;
    this.columns = new Map(CATALOG[kind].columns.map((c) => [c.name, c]));
  }

  get crossesCount(): number {
    return this.crosses;
  }

  private peek(): Token {
    return this.tokens[this.i]!;
  }
  private next(): Token {
    return this.tokens[this.i++]!;
  }
  private isKeyword(t: Token, kw: string): boolean {
    return t.type === 'ident' && t.text.toLowerCase() === kw;
  }
  private fail(t: Token, msg: string): never {
    const part = t.type === 'end' ? '(end)' : t.text;
    // The position goes before a closing hint: `unknown field "x" for trade at 0 (fields: ...)`.
    const hint = / \(([^()]*)\)$/.exec(msg);
    const text = hint ? `${msg.slice(0, hint.index)} at ${t.pos}${hint[0]}` : `${msg} at ${t.pos}`;
    throw new PredicateError(`predicate: ${text}`, part, t.pos);
  }
  private describe(t: Token): string {
    return t.type === 'end' ? 'the end of the predicate' : `"${t.text}"`;
  }
  private fieldList(pred: (c: Column) => boolean = () => true): string {
    return [...this.columns.values()]
      .filter(pred)
      .map((c) => c.name)
      .join(', ');
  }

  parse(): Node {
    const node = this.or();
    const t = this.peek();
    if (t.type !== 'end') this.fail(t, `expected "and", "or" or the end, got ${this.describe(t)}`);
    return node;
  }

  private or(): Node {
    const items = [this.and()];
    while (this.isKeyword(this.peek(), 'or')) {
      this.next();
      items.push(this.and());
    }
    return items.length === 1 ? items[0]! : { t: 'or', items };
  }

  private and(): Node {
    const items = [this.unary()];
    while (this.isKeyword(this.peek(), 'and')) {
      this.next();
      items.push(this.unary());
    }
    return items.length === 1 ? items[0]! : { t: 'and', items };
  }

  private unary(): Node {
    const t = this.peek();
    if (++this.depth > MAX_DEPTH) this.fail(t, `nested deeper than ${MAX_DEPTH} levels`);
    try {
      if (this.isKeyword(t, 'not')) {
        this.next();
        return { t: 'not', item: this.unary() };
      }
      if (t.type === 'lparen') {
        this.next();
        const inner = this.or();
        const close = this.peek();
        if (close.type !== 'rparen') this.fail(close, `expected ")" to close the "(" at ${t.pos}, got ${this.describe(close)}`);
        this.next();
        return inner;
      }
      // `closed` alone is the candle's flag; `closed = true` is the same column compared.
      if (this.isKeyword(t, 'closed') && this.tokens[this.i + 1]?.type !== 'op') {
        if (this.kind !== 'candle') this.fail(t, `"closed" applies to candles only, not to ${this.kind}`);
        this.next();
        return { t: 'closed' };
      }
      return this.term();
    } finally {
      this.depth--;
    }
  }

  private term(): Node {
    const f = this.next();
    if (f.type !== 'ident') this.fail(f, `expected a field of ${this.kind}, got ${this.describe(f)} (fields: ${this.fieldList()})`);
    const column = this.columns.get(f.text);
    if (!column) {
      const kw = KEYWORDS.has(f.text.toLowerCase()) && f.text.toLowerCase() !== 'closed';
      this.fail(f, kw ? `expected a field of ${this.kind}, got the keyword "${f.text}" (fields: ${this.fieldList()})` : `unknown field "${f.text}" for ${this.kind} (fields: ${this.fieldList()})`);
    }
    if (column.type === 'jsonb') this.fail(f, `field "${f.text}" of ${this.kind} holds a list and cannot be compared (fields: ${this.fieldList((c) => c.type !== 'jsonb')})`);
    const o = this.next();
    if (this.isKeyword(o, 'crosses')) return this.crossesTerm(f, column);
    if (o.type !== 'op') this.fail(o, `expected a comparison (${OPS.join(' ')}) or "crosses" after "${f.text}", got ${this.describe(o)}`);
    const op = o.text as Op;
    const lit = this.next();
    return { t: 'cmp', field: column.name, op, value: this.literal(lit, column, op) };
  }

  private crossesTerm(f: Token, column: Column): Node {
    if (!NUMERIC.has(column.type)) this.fail(f, `"crosses" needs a numeric field; "${f.text}" of ${this.kind} is ${column.type} (numeric fields: ${this.fieldList((c) => NUMERIC.has(c.type)) || 'none'})`);
    const d = this.next();
    const dir = d.type === 'ident' ? d.text.toLowerCase() : '';
    if (dir !== 'above' && dir !== 'below') this.fail(d, `expected "above" or "below" after "crosses", got ${this.describe(d)}`);
    const l = this.next();
    if (l.type !== 'number') this.fail(l, `expected a number after "crosses ${dir}", got ${this.describe(l)}`);
    const level = l.value as number;
    if (!Number.isFinite(level)) this.fail(l, `the level ${l.text} is not a finite number`);
    return { t: 'crosses', field: column.name, dir, level, index: this.crosses++ };
  }

  private literal(t: Token, column: Column, op: Op): Literal {
    const name = column.name;
    const bad = (want: string): never => this.fail(t, `"${name}" is ${column.type}: expected ${want}, got ${this.describe(t)}`);
    if (t.type === 'ident') {
      const kw = t.text.toLowerCase();
      if (kw === 'null') {
        if (!column.nullable) this.fail(t, `"${name}" of ${this.kind} is never null`);
        if (!EQUALITY.has(op)) this.fail(t, `null compares with = or != only, not ${op}`);
        return null;
      }
      if (kw === 'true' || kw === 'false') {
        if (column.type !== 'bool') bad(this.want(column));
        return kw === 'true';
      }
      return bad(this.want(column));
    }
    switch (column.type) {
      case 'float8':
      case 'int4':
      case 'int8':
        if (t.type !== 'number') bad(this.want(column));
        if (!Number.isFinite(t.value)) this.fail(t, `${t.text} is not a finite number`);
        return t.value as number;
      case 'bool':
        bad(this.want(column));
        break;
      case 'text':
        if (t.type !== 'string') bad(this.want(column));
        if (column.enum) {
          if (!EQUALITY.has(op)) this.fail(t, `"${name}" is one of ${column.enum.join(', ')}: compare it with = or !=, not ${op}`);
          if (!column.enum.includes(t.value as string)) this.fail(t, `"${name}" is one of ${column.enum.join(', ')}, got ${t.text}`);
        }
        return t.value as string;
      case 'timestamptz': {
        if (t.type === 'number') return t.value as number;
        if (t.type !== 'string') bad(this.want(column));
        const ms = Date.parse(t.value as string);
        if (!/^\d{4}-\d\d-\d\d/.test(t.value as string) || Number.isNaN(ms)) this.fail(t, `"${name}" is a time: expected an ISO-8601 time like '2024-01-31T00:00:00Z' or microseconds since the epoch, got ${t.text}`);
        return ms * 1000;
      }
      case 'jsonb':
        break;
    }
    return bad(this.want(column));
  }

  private want(column: Column): string {
    switch (column.type) {
      case 'float8':
      case 'int4':
      case 'int8':
        return `a number${column.nullable ? ' or null' : ''}`;
      case 'bool':
        return 'true or false';
      case 'text':
        return column.enum ? `one of ${column.enum.map((s) => `'${s}'`).join(', ')}` : `a 'single-quoted string'${column.nullable ? ' or null' : ''}`;
      case 'timestamptz':
        return `an ISO-8601 time in quotes or microseconds since the epoch${column.nullable ? ', or null' : ''}`;
      case 'jsonb':
        return 'nothing (not comparable)';
    }
  }
}

// ---- evaluation ----------------------------------------------------------------------------

type Eval = (r: Readonly<Record<string, unknown>>, crossed: readonly boolean[]) => boolean;

function compare(v: unknown, op: Op, lit: Literal): boolean {
  if (lit === null) return op === '=' ? v === null || v === undefined : v !== null && v !== undefined;
  if (v === null || v === undefined) return op === '!=';
  const x = typeof v === 'bigint' ? Number(v) : v;
  switch (op) {
    case '=':
      return x === lit;
    case '!=':
      return x !== lit;
    case '<':
      return (x as number | string) < (lit as number | string);
    case '<=':
      return (x as number | string) <= (lit as number | string);
    case '>':
      return (x as number | string) > (lit as number | string);
    case '>=':
      return (x as number | string) >= (lit as number | string);
  }
}

function build(n: Node): Eval {
  switch (n.t) {
    case 'or': {
      const fs = n.items.map(build);
      return (r, c) => fs.some((f) => f(r, c));
    }
    case 'and': {
      const fs = n.items.map(build);
      return (r, c) => fs.every((f) => f(r, c));
    }
    case 'not': {
      const f = build(n.item);
      return (r, c) => !f(r, c);
    }
    case 'closed':
      return (r) => r.closed === true;
    case 'cmp': {
      const { field, op, value } = n;
      return (r) => compare(r[field], op, value);
    }
    case 'crosses': {
      const i = n.index;
      return (_r, c) => c[i] === true;
    }
  }
}

interface CrossesTerm {
  readonly key: string;
  readonly field: string;
  readonly dir: 'above' | 'below';
  readonly level: number;
}

function collectCrosses(n: Node, out: CrossesTerm[]): CrossesTerm[] {
  if (n.t === 'or' || n.t === 'and') for (const i of n.items) collectCrosses(i, out);
  else if (n.t === 'not') collectCrosses(n.item, out);
  else if (n.t === 'crosses') out[n.index] = { key: `${n.index}:${n.field}`, field: n.field, dir: n.dir, level: n.level };
  return out;
}

const NO_CROSSINGS: readonly boolean[] = [];
// A stateless predicate's answers are shared constants: no allocation per record.
const MATCH = Object.freeze({ match: true });
const NO_MATCH = Object.freeze({ match: false });
const EVERY: Predicate = Object.freeze({ source: '', stateful: false, test: () => MATCH });

/** Compiles `source` for records of `kind`; throws PredicateError naming the offending part. An empty source matches every record. */
export function compilePredicate(kind: RecordKind, source: string): Predicate {
  if (typeof source !== 'string') throw new PredicateError('predicate: expected a string', String(source), 0);
  if (!(kind in CATALOG)) throw new PredicateError(`predicate: unknown record kind "${String(kind)}"`, String(kind), 0);
  if (source.length > PREDICATE_MAX_LENGTH) throw new PredicateError(`predicate: longer than ${PREDICATE_MAX_LENGTH} characters`, source.slice(PREDICATE_MAX_LENGTH, PREDICATE_MAX_LENGTH + 20), PREDICATE_MAX_LENGTH);
  if (source.trim() === '') return { ...EVERY, source };
  const parser = new Parser(kind, tokenize(source));
  const ast = parser.parse();
  const evaluate = build(ast);
  const terms = collectCrosses(ast, []);
  if (terms.length === 0) {
    return Object.freeze({ source, stateful: false, test: (r: Readonly<Record<string, unknown>>) => (evaluate(r, NO_CROSSINGS) ? MATCH : NO_MATCH) });
  }
  return Object.freeze({
    source,
    stateful: true,
    test(r: Readonly<Record<string, unknown>>, prev: PredicateState | undefined) {
      const state: PredicateState = {};
      const crossed: boolean[] = [];
      for (const t of terms) {
        const raw = r[t.field];
        const v = typeof raw === 'bigint' ? Number(raw) : raw;
        const before = prev?.[t.key];
        if (typeof v !== 'number' || !Number.isFinite(v)) {
          // No value on this record: no crossing, the last known value stays.
          crossed.push(false);
          if (before !== undefined) state[t.key] = before;
          continue;
        }
        crossed.push(before !== undefined && (t.dir === 'above' ? before <= t.level && v > t.level : before >= t.level && v < t.level));
        state[t.key] = v;
      }
      return { match: evaluate(r, crossed), state };
    },
  });
}
