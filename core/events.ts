import { EventEmitter } from 'node:events';

/**
 * The one typed event emitter of tickflow (kafkajs-style instrumentation): each part declares
 * its event map (`<part>/events.ts`: event name → payload), emits what happens, and one
 * subscriber (`<part>/telemetry.ts`) turns the events into metrics and log lines; tests and
 * benchmarks listen to the same events. One payload object per event; `on` returns the function
 * that detaches the listener.
 */
export class TypedEvents<M extends { [K in keyof M]: object }> {
  private readonly ee = new EventEmitter();

  on<K extends keyof M & string>(event: K, fn: (e: M[K]) => void): () => void {
    this.ee.on(event, fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof M & string>(event: K, fn: (e: M[K]) => void): void {
    this.ee.off(event, fn);
  }

  /** Listeners run synchronously, in the order they were added (as EventEmitter's). */
  emit<K extends keyof M & string>(event: K, e: M[K]): void {
    this.ee.emit(event, e);
  }

  listenerCount<K extends keyof M & string>(event: K): number {
    return this.ee.listenerCount(event);
  }
}
