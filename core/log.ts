import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * The one logger (pino), on stderr so stdout stays free for command output (CSV, progress, the
 * URLs `tickflow start` prints). Two formats of the same records:
 * - human (the default): one short line per event, `20:06:09 INFO  sink: REST API listening
 *   url=http://127.0.0.1:8083`: time, level, part, message and a few key fields;
 * - json: pino's own lines, for log collectors (`--json` on any command, or LOG_FORMAT=json).
 * LOG_LEVEL picks the level (default info; warn under the test runner).
 */
export type LogFormat = 'human' | 'json';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const complaints: string[] = [];

function levelFromEnv(): string {
  const raw = process.env.LOG_LEVEL?.trim().toLowerCase();
  if (!raw) return process.env.VITEST ? 'warn' : 'info';
  if ((LEVELS as readonly string[]).includes(raw)) return raw;
  complaints.push(`LOG_LEVEL=${process.env.LOG_LEVEL} is not a level (${LEVELS.join(', ')}); using info`);
  return 'info';
}

function formatFromEnv(): LogFormat {
  const raw = process.env.LOG_FORMAT?.trim().toLowerCase();
  if (!raw || raw === 'human' || raw === 'text' || raw === 'pretty') return 'human';
  if (raw === 'json') return 'json';
  complaints.push(`LOG_FORMAT=${process.env.LOG_FORMAT} is not a format (human, json); using human`);
  return 'human';
}

let format: LogFormat = formatFromEnv();

/** Switches every logger's output format (the CLI's `--json`). */
export function setLogFormat(f: LogFormat): void {
  format = f;
}

export function logFormat(): LogFormat {
  return format;
}

// ---------------------------------------------------------------------------------------------
// The human format: a small formatter over pino's JSON line (no pretty-printer dependency).

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Record<number, string> = { 10: '\x1b[2m', 20: '\x1b[2m', 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[1;31m' };
/** Fields the line shows elsewhere (time, level, part, message) or that repeat the message. */
const HIDDEN = new Set(['level', 'time', 'msg', 'app', 'part', 'message', 'severity', 'index', 'stack', 'v', 'timestamp', 'logger']);
const MAX_FIELDS = 6;
const MAX_VALUE = 120;

const color = Boolean(process.stderr.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';

function clock(t: unknown): string {
  const d = typeof t === 'string' || typeof t === 'number' ? new Date(t) : new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') {
    const s = v.length > MAX_VALUE ? `${v.slice(0, MAX_VALUE - 1)}…` : v;
    return s === '' || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
  }
  if (typeof v === 'number') return String(Number.isInteger(v) ? v : Number(v.toFixed(3)));
  if (typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === null) return 'null';
  return undefined;
}

function errorText(v: unknown): string | undefined {
  if (v && typeof v === 'object') {
    const e = v as { message?: unknown; type?: unknown };
    if (typeof e.message === 'string' && e.message) return e.message;
    if (typeof e.type === 'string') return e.type;
    return undefined;
  }
  return typeof v === 'string' ? v : undefined;
}

/** Whether the message already says this value (as a word of its own, or a long substring). */
function said(msg: string, value: string): boolean {
  if (value.length > 3 && msg.includes(value)) return true;
  const esc = value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w.])${esc}($|[^\\w.])`).test(msg);
}

function fieldText(key: string, v: unknown, msg: string): string | undefined {
  if (key === 'err' || key === 'error') {
    const t = errorText(v);
    return t && !msg.includes(t) ? `${key}=${scalar(t)}` : undefined;
  }
  if (Array.isArray(v)) {
    if (v.length === 0 || v.length > 8 || !v.every((x) => scalar(x) !== undefined)) return undefined;
    if (v.every((x) => said(msg, String(x)))) return undefined;
    return `${key}=${scalar(v.map((x) => String(x)).join(','))}`;
  }
  const s = scalar(v);
  if (s === undefined) return undefined; // nested objects: in the JSON format only
  // A value the message already says (e.g. the URL in "listening at <url>") is not repeated.
  if ((typeof v === 'string' || typeof v === 'number') && said(msg, String(v))) return undefined;
  return `${key}=${s}`;
}

/** One JSON log line of pino's -> one human line (ending in a newline). */
export function humanLine(json: string, opts: { color?: boolean; stacks?: boolean } = {}): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = typeof rec.level === 'number' ? rec.level : 30;
  const name = LEVEL_NAMES[level] ?? String(rec.level);
  const tint = opts.color ? LEVEL_COLORS[level] : undefined;
  const msg = typeof rec.msg === 'string' ? rec.msg : '';
  const part = typeof rec.part === 'string' ? rec.part : '';
  const fields: string[] = [];
  for (const [k, v] of Object.entries(rec)) {
    if (HIDDEN.has(k)) continue;
    const t = fieldText(k, v, msg);
    if (t !== undefined) fields.push(t);
    if (fields.length === MAX_FIELDS) break;
  }
  let line = `${clock(rec.time)} ${tint ? `${tint}${name}\x1b[0m` : name} ${part ? `${part}: ` : ''}${msg || '(no message)'}${fields.length ? `  ${fields.join(' ')}` : ''}`;
  const err = rec.err as { stack?: unknown } | undefined;
  if (opts.stacks && err && typeof err.stack === 'string') line += `\n${err.stack.replace(/^/gm, '    ')}`;
  return `${line}\n`;
}

// ---------------------------------------------------------------------------------------------

const level = levelFromEnv();
const stderr = pino.destination({ dest: 2, sync: true });
const stacks = level === 'debug' || level === 'trace';
const stream: DestinationStream = {
  write(line: string) {
    stderr.write(format === 'json' ? line : humanLine(line, { color, stacks }));
  },
};

export const rootLogger: Logger = pino(
  {
    level,
    base: { app: 'tickflow' },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  stream,
);

for (const c of complaints) rootLogger.warn({ part: 'log' }, c);

export function logger(part: string): Logger {
  return rootLogger.child({ part });
}
