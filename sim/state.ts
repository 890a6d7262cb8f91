/**
 * The sim's saved state (`sim.state()`, the state file): what a later sim needs to continue this
 * one, and its reading and writing.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { logger } from '../core/log.ts';
import { MINUTE_COLUMNS, type MinuteColumn } from './candles.ts';
import type { EngineResume } from './engine.ts';


/**
 * What a sim needs to continue where another stopped; plain JSON (`sim.state()`, the state file).
 * After `close()` it is exact; taken while running, each symbol's `nextTradeId` is a lease past
 * every id the sim can hand out before it saves again, so a crash never makes ids repeat.
 */
export interface SimState {
  readonly format: typeof SIM_STATE_FORMAT;
  /** Wall clock when taken, ms. */
  readonly savedAt: number;
  /** The virtual clock when taken, ms. */
  readonly virtualNow: number;
  /** True when taken after close(): ids are exact, not leased. */
  readonly final: boolean;
  readonly symbols: Readonly<Record<string, SimSymbolState>>;
}

export interface SimSymbolState {
  /** The price the tick and step sizes were derived from (kept, so the resumed market is the same). */
  readonly specPrice: number;
  /** The last trade's price, quote units (for people; the engine resumes from `logFair`). */
  readonly lastPrice: number | null;
  readonly generatedUntil: number;
  readonly logFair: number;
  readonly nextTradeId: number;
  readonly bookUpdateId: number;
  /** 1-minute candles over the history window, as little-endian float64 columns in base64. */
  readonly minutes: { readonly baseOpen: number; readonly length: number; readonly columns: Readonly<Record<MinuteColumn, string>> };
}

export const SIM_STATE_FORMAT = 'tickflow-sim-state/1';

export function encodeColumn(a: Float64Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

function decodeColumn(s: string, length: number): Float64Array {
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== length * 8) throw new Error(`a column holds ${b.byteLength} bytes, expected ${length * 8}`);
  const out = new Float64Array(length);
  new Uint8Array(out.buffer).set(b);
  return out;
}

export function engineResume(s: SimSymbolState | undefined): EngineResume | undefined {
  if (!s) return undefined;
  const columns = Object.fromEntries(MINUTE_COLUMNS.map((k) => [k, decodeColumn(s.minutes.columns[k], s.minutes.length)])) as Record<MinuteColumn, Float64Array>;
  return {
    minutes: { baseOpen: s.minutes.baseOpen, length: s.minutes.length, columns },
    generatedUntil: s.generatedUntil,
    logFair: s.logFair,
    nextTradeId: s.nextTradeId,
    bookUpdateId: s.bookUpdateId,
  };
}

/** Checks a parsed state file enough that resuming from it cannot fail half-way. */
function checkSimState(x: unknown): SimState {
  const st = x as SimState;
  if (!st || typeof st !== 'object' || st.format !== SIM_STATE_FORMAT) throw new Error(`not a ${SIM_STATE_FORMAT} document`);
  if (!Number.isFinite(st.virtualNow) || typeof st.symbols !== 'object' || st.symbols === null) throw new Error('virtualNow or symbols missing');
  for (const [symbol, s] of Object.entries(st.symbols)) {
    const nums = [s.specPrice, s.generatedUntil, s.logFair, s.nextTradeId, s.bookUpdateId, s.minutes?.baseOpen, s.minutes?.length];
    if (!nums.every((n) => typeof n === 'number' && Number.isFinite(n)) || !(s.specPrice > 0)) throw new Error(`${symbol}: a number is missing or invalid`);
    engineResume(s); // decodes every column
  }
  return st;
}

/** Reads a state file; undefined when there is none or it cannot be used (logged). */
export function readSimState(file: string, log: ReturnType<typeof logger>): SimState | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err, file }, 'sim: cannot read its saved state; starting afresh');
    return undefined;
  }
  try {
    return checkSimState(JSON.parse(text));
  } catch (err) {
    log.warn({ err, file }, 'sim: its saved state is unusable; starting afresh');
    return undefined;
  }
}

export async function writeSimState(file: string, st: SimState): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(st));
  await rename(tmp, file);
}

export function writeSimStateSync(file: string, st: SimState): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st));
  renameSync(tmp, file);
}
