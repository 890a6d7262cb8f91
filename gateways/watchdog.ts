/**
 * Notices streams that stopped talking: ccxt only notices a dead socket through its keep-alive,
 * and a subscription can go quiet on a live one. The worker ticks it every second; what a silent
 * stream means is the stream's own business (`onSilence`: watch.ts).
 */
import type { Logger } from '../core/log.ts';
import type { StreamRef } from './events.ts';

/** A stream the watchdog checks for silence. */
export interface Watched {
  readonly ref: StreamRef;
  readonly silenceMs: number;
  lastMessageAt: number;
  /** Waiting inside a watch call on a connection believed healthy. */
  active: boolean;
  checking: boolean;
  onSilence(): Promise<void>;
}

export class Watchdog {
  private readonly log: Logger;
  private readonly streams = new Set<Watched>();

  constructor(log: Logger) {
    this.log = log;
  }

  add(w: Watched): void {
    this.streams.add(w);
  }

  remove(w: Watched): void {
    this.streams.delete(w);
  }

  tick(now: number): void {
    for (const w of this.streams) {
      if (!w.active || w.checking || now - w.lastMessageAt < w.silenceMs) continue;
      w.checking = true;
      w.onSilence()
        .catch((e: unknown) => this.log.warn({ err: e, ...w.ref }, 'silence check failed'))
        .finally(() => {
          w.checking = false;
        });
    }
  }
}
