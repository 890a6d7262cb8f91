/**
 * Pages out: the JSON envelope `{ data, next }` by default, CSV (header row, the same columns)
 * on `Accept: text/csv` or `format=csv` — for spreadsheets and pandas, which cannot always set
 * headers. The CSV's next cursor travels in the `X-Next-Cursor` header.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ROWS, columnsOf, type RowName } from './schemas.ts';

/** q-weighted choice between JSON and CSV; JSON wins ties and wildcards. */
export function wantsCsv(req: FastifyRequest): boolean {
  const format = (req.query as { format?: unknown } | undefined)?.format;
  if (format === 'csv') return true;
  if (format === 'json') return false;
  const accept = req.headers.accept;
  if (!accept || !accept.includes('csv')) return false;
  let json = -1;
  let csv = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.trim().toLowerCase().split(';');
    const qp = params.map((s) => s.trim()).find((s) => s.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    const weight = Number.isFinite(q) ? q : 0;
    if (type === 'text/csv') csv = Math.max(csv, weight);
    else if (type === 'application/json' || type === '*/*' || type === 'application/*') json = Math.max(json, weight);
  }
  return csv > 0 && csv > json;
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(columns: readonly string[], rows: readonly Record<string, unknown>[]): string {
  const lines = [columns.join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(r[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

type Kind = 'string' | 'time' | 'number' | 'other';

/** Per row type: each column's JSON key (with its separator) and how its values are written. */
const PLANS = Object.fromEntries(
  (Object.keys(ROWS) as RowName[]).map((name) => [
    name,
    Object.entries(ROWS[name].properties).map(([col, schema], i) => {
      const sch = schema as { type: string | readonly string[]; format?: string };
      const types = Array.isArray(sch.type) ? sch.type : [sch.type];
      const kind: Kind = sch.format === 'date-time' ? 'time' : types.includes('string') ? 'string' : types.includes('number') || types.includes('integer') ? 'number' : 'other';
      return { col, prefix: `${i ? ',' : '{'}${JSON.stringify(col)}:`, kind };
    }),
  ]),
) as unknown as Record<RowName, ReadonlyArray<{ col: string; prefix: string; kind: Kind }>>;

/**
 * The page as JSON text, written column by column from the row schema: the rows of a page
 * repeat a few strings (exchange, symbol), times are ISO strings that need no escaping, and the
 * rest are numbers — several times cheaper than a generic serializer on the hot routes.
 */
export function pageJson(row: RowName, data: readonly Record<string, unknown>[], next: string | null): string {
  const plan = PLANS[row];
  const memo = new Map<string, string>();
  let out = '{"data":[';
  for (let i = 0; i < data.length; i++) {
    const r = data[i]!;
    if (i) out += ',';
    for (const c of plan) {
      const v = r[c.col];
      out += c.prefix;
      if (v === null || v === undefined) out += 'null';
      else if (c.kind === 'number') out += typeof v === 'number' && Number.isFinite(v) ? String(v) : 'null';
      else if (c.kind === 'time') out += `"${v as string}"`;
      else if (c.kind === 'string' && typeof v === 'string') {
        let j = memo.get(v);
        if (j === undefined) {
          j = JSON.stringify(v);
          if (memo.size < 1_000) memo.set(v, j);
        }
        out += j;
      } else out += JSON.stringify(v);
    }
    out += '}';
  }
  return `${out}],"next":${next === null ? 'null' : JSON.stringify(next)}}`;
}

/** A page whose rows the database already wrote as JSON (comma-joined objects). */
export function sendJsonText(reply: FastifyReply, rowsJson: string, next: string | null): FastifyReply {
  // One buffer written in place: no concatenated string to flatten, measure, then encode again.
  const head = '{"data":[';
  const tail = `],"next":${next === null ? 'null' : JSON.stringify(next)}}`;
  const body = Buffer.allocUnsafe(head.length + Buffer.byteLength(rowsJson) + Buffer.byteLength(tail));
  let at = body.write(head, 0, 'latin1');
  at += body.write(rowsJson, at, 'utf8');
  body.write(tail, at, 'utf8');
  return reply.type('application/json; charset=utf-8').send(body);
}

export function sendPage(req: FastifyRequest, reply: FastifyReply, row: RowName, data: readonly Record<string, unknown>[], next: string | null): FastifyReply {
  if (wantsCsv(req)) {
    if (next) reply.header('x-next-cursor', next);
    return reply.type('text/csv; charset=utf-8').send(toCsv(columnsOf(row), data));
  }
  return reply.type('application/json; charset=utf-8').send(pageJson(row, data, next));
}

/**
 * The answer to a range holding nothing (from >= to, or from after now when `to` is left out): an
 * empty last page, like the same bounds in SQL. Not a 400: the OpenAPI document cannot say
 * "from before to", and a request it calls valid is answered, not refused.
 */
export function emptyRange(req: FastifyRequest, reply: FastifyReply, row: RowName): FastifyReply {
  return sendPage(req, reply, row, [], null);
}
