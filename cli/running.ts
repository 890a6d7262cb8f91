/**
 * Who runs here: the record of a running `tickflow start` and the holders of the local broker and
 * the embedded database, so a second `npm start` and `tickflow infra status|up` can say in one
 * line which process has them (instead of a confusing message from whichever part trips first).
 *
 * `tickflow start` owns its state folder (the parent of `database.dataDir`, `.tickflow/` by
 * default: the embedded database, the sim's state, usually the local broker): it writes
 * `<state folder>/start.json` while it runs, and a second start on the same folder stops at once.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { resolveDir } from '../core/config.ts';
import { type Config } from '../config/schema.ts';
import { TickflowError } from '../core/errors.ts';
import { isAlive } from '../infra/process.ts';

export interface StartRecord {
  readonly pid: number;
  readonly startedAt: string;
  readonly config?: string;
  /** The chart URL, once the API listens. */
  readonly chart?: string;
}

export function stateDir(config: Config): string {
  return path.dirname(resolveDir(config.database.dataDir));
}

const recordFile = (config: Config) => path.join(stateDir(config), 'start.json');

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** `tickflow <command> ...` for a tickflow process, else its command line; undefined if unknown. */
export function describeProcess(pid: number): string | undefined {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
  const bin = argv.findIndex((a) => /(^|\/)tickflow(\.js)?$/.test(a));
  if (bin >= 0) {
    const args = argv.slice(bin + 1);
    const cmd = args.filter((a, i) => !a.startsWith('-') && !(args[i - 1] ?? '').startsWith('--config') && args[i - 1] !== '--exchange');
    return `tickflow ${cmd.slice(0, 2).join(' ')}`.trim();
  }
  return argv.join(' ').slice(0, 80) || undefined;
}

/** The `tickflow start` running on this config's state folder, other than this process. */
export function runningStart(config: Config): StartRecord | undefined {
  const rec = readJson<StartRecord>(recordFile(config));
  if (!rec || rec.pid === process.pid || !isAlive(rec.pid)) return undefined;
  // A pid reused by an unrelated process after a kill -9 is not a running start.
  const what = describeProcess(rec.pid);
  if (what !== undefined && !what.startsWith('tickflow start')) return undefined;
  return rec;
}

export function describeStart(rec: StartRecord): string {
  const since = rec.startedAt.slice(11, 19);
  return `\`tickflow start\` (pid ${rec.pid}, since ${since} UTC${rec.chart ? `, chart at ${rec.chart}` : ''})`;
}

/**
 * Claims the state folder for this `tickflow start`; throws one line naming the running one.
 * Returns `update` (adds the chart URL) and `release`.
 */
export function claimStart(config: Config): { update(p: { chart: string }): void; release(): void } {
  const file = recordFile(config);
  const other = runningStart(config);
  if (other) {
    throw new TickflowError(
      'INFRA',
      `tickflow start is already running on ${stateDir(config)}: ${describeStart(other)}; stop it first (Ctrl-C in its terminal, or kill ${other.pid}), or give this one another database.dataDir (TICKFLOW_DB_DIR)`,
    );
  }
  let rec: StartRecord = { pid: process.pid, startedAt: new Date().toISOString(), ...(config.source ? { config: config.source } : {}) };
  const write = () => {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(rec)}\n`);
  };
  write();
  const release = () => {
    process.off('exit', release);
    if (readJson<StartRecord>(file)?.pid === process.pid) rmSync(file, { force: true });
  };
  process.on('exit', release);
  return {
    update(p) {
      rec = { ...rec, ...p };
      write();
    },
    release,
  };
}

/** The process holding the embedded database's data folder (its `<dataDir>.lock`), if alive. */
export function embeddedDbHolder(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(`${dataDir}.lock`, 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}

/** "`tickflow start` (pid N, ...)" when N is the running start, else "`tickflow sink` (pid N)". */
export function describeHolder(config: Config, pid: number): string {
  const start = runningStart(config);
  if (start?.pid === pid) return describeStart(start);
  const what = describeProcess(pid);
  return what ? `\`${what}\` (pid ${pid})` : `process ${pid}`;
}

/** The parent of a process (the tickflow process that started a non-detached broker). */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 1 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/** Who runs the local broker: "`tickflow infra up`" when detached, else the process that started it. */
export function describeBrokerOwner(config: Config, status: { pid?: number; detached?: boolean }): string | undefined {
  if (status.detached !== false || status.pid === undefined) return undefined;
  const owner = parentPid(status.pid);
  return owner ? describeHolder(config, owner) : 'another tickflow process';
}
