import { describe, expect, it } from 'vitest';
import { STREAM_RETRY, StreamAttempts } from './watch.ts';

describe('StreamAttempts (the watch loops\' reconnect policy)', () => {
  it('starts over after a stream that delivered for a while, however often it drops', () => {
    const a = new StreamAttempts();
    let t = 0;
    const attempts: number[] = [];
    for (let i = 0; i < 6; i++) {
      a.ok(t);
      t += 5_000; // healthy 5 s, then dropped
      attempts.push(a.failed(t));
      t += 200;
    }
    expect(attempts).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('backs off a stream that keeps failing: dials refused, or connections dropping as they open', () => {
    const refused = new StreamAttempts();
    expect([1, 2, 3, 4].map((i) => refused.failed(i * 1_000))).toEqual([1, 2, 3, 4]);
    const flapping = new StreamAttempts();
    let t = 0;
    const attempts: number[] = [];
    for (let i = 0; i < 5; i++) {
      flapping.ok(t);
      t += STREAM_RETRY.healthyAfterMs - 1; // one message, dropped before it counts as healthy
      attempts.push(flapping.failed(t));
    }
    expect(attempts).toEqual([1, 2, 3, 4, 5]);
  });
});
