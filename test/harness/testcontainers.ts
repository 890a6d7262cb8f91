/**
 * Where a user has a Docker engine, the tests can run Kafka and TimescaleDB as containers
 * (TICKFLOW_TESTCONTAINERS=1). No engine runs on the development machines, so this path is
 * opt-in and the default is the Maven-resolved broker and Debian's PostgreSQL.
 */
export async function startWithTestcontainers(): Promise<{ brokers: string[]; postgresUrl: string; stop: () => Promise<void> }> {
  const tc = await import('testcontainers');
  const kafka = await new tc.GenericContainer('apache/kafka:3.9.1')
    .withExposedPorts(9092)
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: 'PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093',
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
    })
    // The advertised port must be the mapped one, known only after start: use a fixed host port.
    .withExposedPorts({ container: 9092, host: 29092 })
    .withEnvironment({ KAFKA_ADVERTISED_LISTENERS: 'PLAINTEXT://localhost:29092' })
    .withWaitStrategy(tc.Wait.forLogMessage(/Kafka Server started/))
    .start();
  const pg = await new tc.GenericContainer('timescale/timescaledb:latest-pg17')
    .withExposedPorts(5432)
    .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
    .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    brokers: ['localhost:29092'],
    postgresUrl: `postgres://postgres:postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`,
    stop: async () => {
      await kafka.stop();
      await pg.stop();
    },
  };
}
