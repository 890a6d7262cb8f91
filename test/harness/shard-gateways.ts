/**
 * `tickflow gateway --shard-group` as separate processes, for the tests of sharded gateways
 * (test/gateway-shard*.test.ts): each process's output kept and its `shard ... serves` log lines
 * read into when it served which instruments, so a test can lay the processes side by side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import type { Sim } from '../../sim/index.ts';
import { sleep } from './gateway.ts';
import type { Decoded } from './topics.ts';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'tickflow.js');

export interface ShardGateway {
  readonly name: string;
  readonly child: ChildProcess;
  output: string;
  /** When it started serving which symbols (from its `shard ... serves` log lines). */
  readonly serves: Array<{ t: number; symbols: string[] }>;
  endedAt?: number;
  readonly exited: Promise<unknown>;
}

/** A JSON log line of the process. */
export interface LogRecord {
  time: string;
  msg: string;
  symbols?: string[];
}

export interface ShardGatewayOptions {
  configFile: string;
  group: string;
  /** KAFKA_BROKERS, comma-separated. */
  brokers: string;
  /** Keep only the last this many characters of the output. */
  outputChars?: number;
  /** A folder where the output is appended to `<name>.log` as well. */
  logDir?: string;
  /** Log records whose message matches `pattern`, handed to `each` as they come. */
  watch?: { pattern: RegExp; each: (rec: LogRecord) => void };
}

/** Spawns one process (LOG_FORMAT json); `untilStarted` waits for it. */
export function spawnShardGateway(name: string, o: ShardGatewayOptions): ShardGateway {
  const child = spawn(process.execPath, [BIN, 'gateway', '--config', o.configFile, '--shard-group', o.group], {
    env: { ...process.env, KAFKA_BROKERS: o.brokers, LOG_LEVEL: 'info', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p: ShardGateway = { name, child, output: '', serves: [], exited: new Promise((r) => child.on('exit', r)) };
  const servesLine = /^shard .*serves/;
  const wanted = /serves/;
  let partial = '';
  const onData = (d: Buffer) => {
    const text = d.toString();
    p.output = o.outputChars === undefined ? p.output + text : (p.output + text).slice(-o.outputChars);
    if (o.logDir) appendFileSync(path.join(o.logDir, `${name}.log`), text);
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{') || !(wanted.test(line) || o.watch?.pattern.test(line))) continue;
      const rec = JSON.parse(line) as LogRecord;
      if (servesLine.test(rec.msg)) p.serves.push({ t: Date.parse(rec.time), symbols: rec.symbols ?? [] });
      if (o.watch?.pattern.test(rec.msg)) o.watch.each(rec);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  void p.exited.then(() => (p.endedAt ??= Date.now()));
  return p;
}

/** Waits (90 s at most) until the process says it runs; throws with its output if it exits first. */
export async function untilStarted(p: ShardGateway): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (!p.output.includes('Ctrl-C to stop')) {
    if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway ${p.name} did not start:\n${p.output.slice(-3000)}`);
    await sleep(50);
  }
}

/** What the process serves now (its last `serves` line). */
export const serving = (p: ShardGateway): string[] => p.serves.at(-1)?.symbols ?? [];

/** SIGKILLs every process still running (for afterAll). */
export function killAll(procs: readonly ShardGateway[]): void {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}

/**
 * Where two processes served one instrument at once, their `serves` lines laid side by side (a
 * process serves until its next line, its end, or now): the longest such stretch (ms, 0 if none)
 * and where, and every instrument where it happened.
 */
export function servedAtOnce(procs: readonly ShardGateway[], symbols: Iterable<string>): { worstMs: number; where: string; symbols: string[] } {
  let worstMs = 0;
  let where = '';
  const both = new Set<string>();
  for (const symbol of symbols) {
    const spans = procs.flatMap((p) =>
      p.serves.flatMap((s, i) => (s.symbols.includes(symbol) ? [{ who: p.name, from: s.t, to: p.serves[i + 1]?.t ?? p.endedAt ?? Date.now() }] : [])),
    );
    for (const a of spans)
      for (const b of spans) {
        const o = Math.min(a.to, b.to) - Math.max(a.from, b.from);
        if (a.who === b.who || o <= 0) continue;
        both.add(symbol);
        if (o > worstMs) [worstMs, where] = [o, `${symbol}: ${a.who} and ${b.who}`];
      }
  }
  return { worstMs, where, symbols: [...both] };
}

/** The trades (`symbol#id`) in Kafka more than once. */
export function tradesTwice(trades: Decoded['trade']): string[] {
  const seen = new Map<string, number>();
  for (const t of trades) seen.set(`${t.symbol}#${t.id}`, (seen.get(`${t.symbol}#${t.id}`) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([k]) => k);
}

/**
 * The trades of `symbol` the sim emitted from the first one in Kafka to the last that are not in
 * Kafka (ids), less those `stated` (by a gap record) at their time (µs); and how many are in Kafka.
 */
export function missingTrades(sim: Sim, trades: Decoded['trade'], symbol: string, stated: (tsUs: number) => boolean = () => false): { inKafka: number; missing: number[] } {
  const ids = new Set(trades.filter((t) => t.symbol === symbol).map((t) => Number(t.id)));
  const first = Math.min(...ids);
  const last = Math.max(...ids);
  const missing = sim.emitted
    .trades(symbol, { fromId: first })
    .filter((t) => t.id <= last && !ids.has(t.id) && !stated(t.timestamp * 1000))
    .map((t) => t.id);
  return { inKafka: ids.size, missing };
}
