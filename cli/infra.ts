/**
 * `tickflow infra up|down|status`: the local Kafka broker (infra/kafka.ts) and the embedded
 * TimescaleDB server (infra/db-server.ts) in the background, for commands run one by one; each
 * is left alone when KAFKA_BROKERS / DATABASE_URL name one to use instead.
 */
import type { Config } from '../config/schema.ts';
import { resolveDir } from '../core/config.ts';
import { TickflowError } from '../core/errors.ts';
import { untilSignal } from '../core/lifecycle.ts';
import { findBrokers, startLocalKafka } from '../infra/brokers.ts';
import { embeddedServerStatus, startEmbeddedOnDataDir } from '../infra/database.ts';
import { spawnDbServer, stopDbServer } from '../infra/db-server.ts';
import { stopKafkaAt } from '../infra/kafka.ts';
import { describeBrokerOwner, describeHolder, embeddedDbHolder } from './running.ts';

/** `tickflow infra up|down|status` (and `serve-db`, the background database server `up` spawns). */
export async function infraCommand(config: Config, action: string | undefined, out: (line: string) => void): Promise<number> {
  const kafkaDir = resolveDir(config.infra.kafkaDataDir);
  const dbDir = resolveDir(config.database.dataDir);
  switch (action) {
    case 'up': {
      const kafka = await findBrokers(config, { probe: false });
      if (kafka.source === 'configured') {
        out(`kafka: using KAFKA_BROKERS=${kafka.brokers.join(',')}; nothing started`);
      } else {
        const st = kafka.status;
        const owner = st.running ? describeBrokerOwner(config, st) : undefined;
        if (st.running) out(`kafka: already running (pid ${st.pid}) at ${st.brokers?.join(',')}${owner ? `, run by ${owner}: it stops with it` : ''}`);
        else {
          out('kafka: resolving the broker jars (first run downloads them through Maven)...');
          const b = await startLocalKafka(config, { detached: true });
          out(`kafka: started (pid ${b.pid}) at ${b.brokers.join(',')}, data in ${kafkaDir}`);
        }
      }
      if (config.database.url) {
        out('database: using DATABASE_URL; nothing started');
      } else {
        const rec = embeddedServerStatus(dbDir);
        const holder = rec ? undefined : embeddedDbHolder(dbDir);
        if (rec) out(`database: embedded TimescaleDB already running (pid ${rec.pid}) at ${rec.url}`);
        else if (holder) {
          throw new TickflowError('INFRA', `database: the embedded TimescaleDB in ${dbDir} is open in ${describeHolder(config, holder)}, which serves only itself; stop it first`);
        } else {
          const started = await spawnDbServer(config);
          out(`database: embedded TimescaleDB started (pid ${started.pid}) at ${started.url} (one client process at a time), data in ${dbDir}`);
        }
      }
      return 0;
    }
    case 'serve-db': {
      const db = await startEmbeddedOnDataDir(config, { record: true });
      out(`embedded TimescaleDB serving ${db.url}`);
      await untilSignal();
      await db.stop();
      return 0;
    }
    case 'down': {
      const stopped = await stopKafkaAt(kafkaDir);
      out(stopped ? 'kafka: stopped' : 'kafka: was not running');
      out((await stopDbServer(dbDir)) ? 'database: embedded TimescaleDB stopped' : 'database: embedded TimescaleDB was not running');
      return 0;
    }
    case 'status': {
      const kafka = await findBrokers(config, { probe: false });
      const st = kafka.source === 'local' ? kafka.status : undefined;
      const owner = st?.running ? describeBrokerOwner(config, st) : undefined;
      out(
        kafka.source === 'configured'
          ? `kafka: KAFKA_BROKERS=${kafka.brokers.join(',')}`
          : st?.running
            ? `kafka: running (pid ${st.pid}) at ${st.brokers?.join(',')}, ${owner ? `run by ${owner}` : 'from `tickflow infra up`'}`
            : 'kafka: not running',
      );
      const rec = embeddedServerStatus(dbDir);
      const holder = rec ? undefined : embeddedDbHolder(dbDir);
      out(
        config.database.url
          ? 'database: DATABASE_URL is set'
          : rec
            ? `database: embedded TimescaleDB running (pid ${rec.pid}) at ${rec.url}, from \`tickflow infra up\``
            : holder
              ? `database: embedded TimescaleDB in ${dbDir} open in ${describeHolder(config, holder)}, serving only that process`
              : 'database: embedded TimescaleDB not running (commands start it in-process)',
      );
      return 0;
    }
    default:
      throw new TickflowError('CONFIG_INVALID', `infra: expected up, down or status, got ${action ?? 'nothing'}`);
  }
}
