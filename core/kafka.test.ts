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
