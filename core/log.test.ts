/**
 * The human log format: what a person sees on the console for a few real records (the JSON
 * lines pino writes for them).
 */
import { describe, expect, it } from 'vitest';
import { humanLine } from './log.ts';

const at = '2026-11-28T20:06:09.428Z';
const local = (iso: string) => {
  const d = new Date(iso);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
};

describe('human log lines', () => {
  it('time, level, part, message and the key fields, on one line', () => {
    const line = humanLine(JSON.stringify({ level: 30, time: at, app: 'tickflow', part: 'infra.kafka', brokers: ['127.0.0.1:19392'], pid: 15484, detached: false, seconds: 32.427, dataDir: '/tmp/x y/kafka', msg: 'Kafka ready' }));
    expect(line).toBe(`${local(at)} INFO  infra.kafka: Kafka ready  brokers=127.0.0.1:19392 pid=15484 detached=false seconds=32.427 dataDir="/tmp/x y/kafka"\n`);
  });

  it('does not repeat what the message says, nor nested objects', () => {
    const line = humanLine(JSON.stringify({ level: 50, time: at, part: 'gateway', exchange: 'binanse', index: 0, severity: 'error', code: 'EXCHANGE_UNKNOWN', message: 'exchanges[0] (binanse): unknown exchange id', msg: 'exchanges[0] (binanse): unknown exchange id', partitions: [{ topic: 't', partition: 0 }] }));
    expect(line).toBe(`${local(at)} ERROR gateway: exchanges[0] (binanse): unknown exchange id  code=EXCHANGE_UNKNOWN\n`);
  });

  it("shows an error's message, and its stack only when asked", () => {
    const rec = JSON.stringify({ level: 40, time: at, part: 'sink', err: { type: 'Error', message: 'connection refused', stack: 'Error: connection refused\n    at x (y.ts:1:1)' }, msg: 'retrying' });
    expect(humanLine(rec)).toBe(`${local(at)} WARN  sink: retrying  err="connection refused"\n`);
    expect(humanLine(rec, { stacks: true }).split('\n')).toHaveLength(4);
  });

  it('passes a line that is not JSON through', () => {
    expect(humanLine('plain text')).toBe('plain text\n');
  });
});

describe('human log lines, values the message says', () => {
  it('are not repeated, numbers are rounded', () => {
    const line = humanLine(JSON.stringify({ level: 30, time: at, part: 'gateway', exchange: 'sim', symbols: ['BTC/USDT', 'ETH/USDT'], channels: ['trades:ws'], candles: 1000, fraction: 0.6937594675925925, msg: 'sim: running BTC/USDT, ETH/USDT (trades:ws), 1000 candles' }));
    expect(line).toBe(`${local(at)} INFO  gateway: sim: running BTC/USDT, ETH/USDT (trades:ws), 1000 candles  fraction=0.694\n`);
    const kept = humanLine(JSON.stringify({ level: 30, time: at, part: 'sink', connector: 'trades', state: 'RUNNING', msg: 'connector state' }));
    expect(kept).toBe(`${local(at)} INFO  sink: connector state  connector=trades state=RUNNING\n`);
  });
});
