/** What the benches read about a child process from /proc (Linux). */
import { readFileSync } from 'node:fs';

/** Resident set size now and its peak (VmHWM), in bytes. */
export function procMemory(pid: number): { rss: number; hwm: number } {
  const txt = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(txt)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}
