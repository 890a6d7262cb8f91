/**
 * One member of a shard group as its own process (test/gateway-shard-membership.test.ts): joins
 * with gateways/shard.ts's GroupShard and prints a line per change of the slots it serves,
 * `SERVING <ms since epoch> <json slots>`, so the test can lay every member's intervals side by
 * side. SIGTERM leaves the group.
 */
import { logger } from '../../core/log.ts';
import { GroupShard } from '../../gateways/shard.ts';

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} not set`);
  return v;
};

const shard = new GroupShard({
  kafka: { brokers: env('KAFKA_BROKERS').split(','), clientId: `shard-member-${process.pid}`, connectionTimeoutMs: 5_000, requestTimeoutMs: 30_000, topicPrefix: env('SHARD_PREFIX'), replicationFactor: 1, retentionMs: 3_600_000 },
  group: env('SHARD_GROUP'),
  slots: Number(process.env.SHARD_SLOTS ?? 64),
  sessionTimeoutMs: Number(process.env.SHARD_SESSION_MS ?? 6_000),
  heartbeatIntervalMs: 500,
  handoverMs: Number(process.env.SHARD_HANDOVER_MS ?? 1_000),
  log: logger('shard-member'),
});
const print = () => process.stdout.write(`SERVING ${Date.now()} ${JSON.stringify(shard.serving())}\n`);
shard.events.on('change', print);
process.on('SIGTERM', () => {
  void shard.close().then(() => {
    print();
    process.exit(0);
  });
});
await shard.start();
process.stdout.write(`JOINED ${Date.now()} ${shard.member}\n`);
print();
