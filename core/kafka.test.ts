import { logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { kafkaLogLevel } from './kafka.ts';

// What kafkajs 2.2.4 logs during ordinary consumer-group life, as it logs it (level, message, error).
describe('kafkajs log levels', () => {
  it('keeps routine group membership off error level', () => {
    expect(kafkaLogLevel(logLevel.WARN, 'The group is rebalancing, re-joining', 'The group is rebalancing, so a rejoin is needed')).toBe('info');
    expect(kafkaLogLevel(logLevel.ERROR, 'Response Heartbeat(key: 12, version: 3)', 'The group is rebalancing, so a rejoin is needed')).toBe('debug');
    expect(kafkaLogLevel(logLevel.ERROR, 'Response JoinGroup(key: 11, version: 5)', "The coordinator is loading and hence can't process requests for this group")).toBe('debug');
    expect(kafkaLogLevel(logLevel.ERROR, 'Crash: KafkaJSProtocolError: The coordinator is loading and hence can\'t process requests for this group')).toBe('info');
    expect(kafkaLogLevel(logLevel.ERROR, 'The coordinator is not aware of this member, re-joining the group', 'The coordinator is not aware of this member')).toBe('info');
    expect(kafkaLogLevel(logLevel.ERROR, 'Response Metadata(key: 3, version: 6)', 'This server does not host this topic-partition')).toBe('debug');
    expect(kafkaLogLevel(logLevel.ERROR, 'Restarting the consumer in 300ms')).toBe('warn');
    expect(kafkaLogLevel(logLevel.ERROR, 'Connection error: connect ECONNREFUSED 127.0.0.1:9092')).toBe('debug');
    expect(kafkaLogLevel(logLevel.INFO, 'Starting')).toBe('debug');
  });

  it('keeps what needs a person at error level', () => {
    expect(kafkaLogLevel(logLevel.ERROR, 'Crash: KafkaJSNonRetriableError: Topic authorization failed')).toBe('error');
    expect(kafkaLogLevel(logLevel.ERROR, 'Failed to send messages: The request included message batch larger than the configured segment size on the server')).toBe('error');
    expect(kafkaLogLevel(logLevel.WARN, 'Consumer group received unsubscribed topics')).toBe('warn');
  });
});

// Under Node 24 kafkajs's request queue prints a TimeoutNegativeWarning into every command's
// console; core/kafka.ts drops exactly that one. Run in a child process: warnings print once.
describe('warnings', () => {
  const script = (trigger: string) => `
    await import('./core/kafka.ts');
    const { createRequire } = await import('node:module');
    const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js');
    ${trigger}
    await new Promise((r) => setTimeout(r, 20));
    process.exit(0);`;
  const run = async (trigger: string): Promise<string> => {
    const { execFile } = await import('node:child_process');
    return new Promise((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(trigger)], { cwd: new URL('..', import.meta.url).pathname }, (err, _out, stderr) => (err ? reject(err) : resolve(stderr))),
    );
  };
  const negativeSupported = Number(process.versions.node.split('.')[0]) >= 24;

  it("drops the negative-timeout warning of kafkajs's request queue and keeps everyone else's", async () => {
    const q = "const q = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 't', broker: 'b', logger: { debug() {} } }); q.scheduleCheckPendingRequests(); clearTimeout(q.throttleCheckTimeoutId);";
    expect(await run(q)).not.toContain('TimeoutNegativeWarning');
    const own = await run('setTimeout(() => {}, -5);');
    if (negativeSupported) expect(own).toContain('TimeoutNegativeWarning');
    else expect(own).toBe('');
  });
});
