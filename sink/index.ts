import type { FastifyInstance } from 'fastify';
import type { Config } from '../core/config.ts';
import type { Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { createKafka, createProducer, ensureTopics, type Admin, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { openDatabase, type OpenDatabase } from '../infra/database.ts';
import { migrate } from '../migrations/runner.ts';
import { Aggregates, detectDatabase } from './aggregates.ts';
import { buildApi } from './api.ts';
import { defaultConnectors, type ConnectorSpec } from './config.ts';
import { Decoder } from './decode.ts';
import { SinkEmitter, instrument } from './events.ts';
import { ConnectorManager } from './manager.ts';
import { startScheduler, type Scheduler } from './scheduler.ts';
import { loadConnectors } from './store.ts';

/**
 * The sink: Kafka → database, Kafka Connect-like. `buildSink(config)` returns the part;
 * `start()` opens the database (migrating it), applies the TimescaleDB policies, starts every
 * connector (config file + those created over REST), the refresh/retention scheduler and the
 * REST API; `close()` undoes it in reverse. See connector.ts and writer.ts for the write path.
 */

export interface SinkDeps {
  /** Use this database instead of opening config.database (the sink does not close it). */
  readonly pool?: Pool;
  /** Brokers to use instead of config.kafka.brokers (e.g. the local broker of `infra up`). */
  readonly brokers?: readonly string[];
  /** Start the REST API on sink.apiHost:apiPort (default true); tests may use `api.inject()`. */
  readonly listen?: boolean;
  /** Run the refresh/retention scheduler (default true); tests call refreshAggregates(). */
  readonly schedule?: boolean;
}

export interface Sink {
  readonly events: SinkEmitter;
  /** The REST API (Kafka Connect-like); listening after start() unless deps.listen is false. */
  readonly api: FastifyInstance;
  /** http://host:port of the REST API once listening. */
  readonly url: string | undefined;
  readonly connectors: ConnectorManager;
  start(): Promise<void>;
  close(): Promise<void>;
  /** One aggregate refresh now (what the scheduler runs). */
  refreshAggregates(now?: Date): Promise<void>;
  /** Plain PostgreSQL retention now (what the scheduler runs). */
  applyRetention(now?: Date): Promise<void>;
}

export function buildSink(config: Config, deps: SinkDeps = {}): Sink {
  const log = logger('sink');
  const events = new SinkEmitter();
  instrument(events);
  const closers: Array<() => Promise<void>> = [];
  let manager: ConnectorManager | undefined;
  let aggregates: Aggregates | undefined;
  let url: string | undefined;
  const manage = (): ConnectorManager => {
    if (!manager) throw new TickflowError('INTERNAL', 'the sink is not started');
    return manager;
  };
  // The API is built up front (tests inject requests); its routes reach the manager once started.
  const api = buildApi({ token: config.sink.apiToken, manager: manage });

  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch((e) => log.warn({ err: messageOf(e) }, 'sink close step failed'));
  };

  return {
    events,
    api,
    get url() {
      return url;
    },
    get connectors() {
      return manage();
    },
    async start() {
      try {
        let pool: Pool;
        if (deps.pool) pool = deps.pool;
        else {
          const db: OpenDatabase = await openDatabase(config, { applicationName: 'tickflow-sink' });
          closers.push(() => db.close());
          pool = db.pool;
        }
        const m = await migrate(pool);
        const dbInfo = await detectDatabase(pool, m.flavour);
        log.info({ flavour: dbInfo.flavour, backgroundWorkers: dbInfo.backgroundWorkers, migrations: m.applied }, 'sink database ready');
        aggregates = new Aggregates(pool, dbInfo, config.sink.policies, events);
        await aggregates.applyPolicies().catch((e) => log.error({ err: messageOf(e) }, 'applying the TimescaleDB policies failed'));

        const decoder = new Decoder(config.kafka);
        decoder.start();
        closers.push(() => decoder.close());
        const brokers = deps.brokers ?? config.kafka.brokers;
        const kafka = createKafka({ ...config.kafka, brokers });
        await ensureTopics(kafka, config.kafka);
        const producer: Producer = createProducer(kafka);
        await producer.connect();
        closers.push(() => producer.disconnect());
        const admin: Admin = kafka.admin();
        await admin.connect();
        closers.push(() => admin.disconnect());

        const aggs = aggregates;
        manager = new ConnectorManager(
          pool,
          { kafka, pool, decoder, producer, admin, events, clientId: config.kafka.clientId, onWritten: (table, t) => aggs.noteWrite(table, t) },
          config.kafka,
        );
        const mgr = manager;
        closers.push(() => mgr.stopAll());

        const declared: ConnectorSpec[] = config.sink.connectors ?? defaultConnectors();
        const { stored, invalid } = await loadConnectors(pool);
        for (const bad of invalid) log.error(bad, 'a stored connector is invalid; skipped');
        const names = new Set(declared.map((c) => c.name));
        await Promise.all([
          ...declared.map((spec) => mgr.add(spec, 'config')),
          ...stored.filter((s) => {
            if (!names.has(s.spec.name)) return true;
            log.warn({ connector: s.spec.name }, 'a connector created over REST has the name of one in the config file; the config file wins');
            return false;
          }).map((s) => mgr.add(s.spec, 'api', s.paused)),
        ]);

        if (deps.schedule !== false) {
          const scheduler: Scheduler = startScheduler(aggs, config.sink);
          closers.push(() => scheduler.stop());
        }
        if (deps.listen !== false) {
          url = await api.listen({ host: config.sink.apiHost, port: config.sink.apiPort });
          log.info({ url, auth: config.sink.apiToken ? 'bearer' : 'none' }, 'sink REST API listening');
          if (!config.sink.apiToken && !['127.0.0.1', '::1', 'localhost'].includes(config.sink.apiHost)) {
            log.warn({ apiHost: config.sink.apiHost }, 'the sink REST API listens beyond localhost without a token: set sink.apiToken (SINK_API_TOKEN)');
          }
        }
        closers.push(() => api.close());
      } catch (e) {
        await close();
        throw e;
      }
    },
    close,
    async refreshAggregates(now) {
      if (!aggregates) throw new TickflowError('INTERNAL', 'the sink is not started');
      await aggregates.refresh(now);
    },
    async applyRetention(now) {
      if (!aggregates) throw new TickflowError('INTERNAL', 'the sink is not started');
      await aggregates.applyRetention(now);
    },
  };
}
