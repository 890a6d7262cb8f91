import { describe, expect, it } from 'vitest';
import { TypedEvents } from './events.ts';

interface Map {
  batch: { rows: number };
  retry: { attempt: number };
}

describe('TypedEvents', () => {
  it('delivers each payload to the listeners of its event, in order, until detached', () => {
    const events = new TypedEvents<Map>();
    const seen: string[] = [];
    const off = events.on('batch', (e) => seen.push(`a${e.rows}`));
    events.on('batch', (e) => seen.push(`b${e.rows}`));
    events.on('retry', (e) => seen.push(`r${e.attempt}`));
    events.emit('batch', { rows: 1 });
    off();
    events.emit('batch', { rows: 2 });
    events.emit('retry', { attempt: 3 });
    expect(seen).toEqual(['a1', 'b1', 'b2', 'r3']);
    expect(events.listenerCount('batch')).toBe(1);
  });
});
