import type { FastifyInstance } from 'fastify';
import type { ConfigForSink } from './config.ts';
import { maskUrl, type Pool } from '../core/db.ts';
import { TickflowError, messageOf } from '../core/errors.ts';
import { createKafka, createProducer, ensureTopics, type Admin, type Producer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { dbError, translatePgError } from '../core/pg-errors.ts';
import { RETRY, retry } from '../core/retry.ts';
import { openDatabase, type OpenDatabase } from '../infra/database.ts';
import { migrate } from '../migrations/runner.ts';
import { Aggregates, detectDatabase } from './aggregates.ts';
import { defaultConnectors, type ConnectorSpec } from './config.ts';
import { Decoder } from './decode.ts';
import { SinkEmitter } from './events.ts';
import { attachTelemetry } from './telemetry.ts';
import { SinkHealth } from './health.ts';
import { ConnectorManager, ManagerError } from './manager.ts';
import { buildConnectApi } from './rest.ts';
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
  /**
   * Finds the brokers during start() (after the REST API listens; retried while it fails with a
   * retriable error, e.g. Kafka not up yet): what `tickflow sink` passes instead of `brokers`.
   */
  readonly resolveBrokers?: () => Promise<readonly string[]>;
  /** Start the REST API on sink.apiHost:apiPort (default true); tests may use `api.inject()`. */
  readonly listen?: boolean;
  /** Run the refresh/retention scheduler (default true); tests call refreshAggregates(). */
  readonly schedule?: boolean;
  /**
   * How long one decoding attempt waits for an unreachable schema registry before the connector
   * pauses and retries the batch (default sink/decode.ts REGISTRY_WAIT_MS, 5 s).
   */
  readonly registryWaitMs?: number;
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

export function buildSink(config: ConfigForSink, deps: SinkDeps = {}): Sink {
  const log = logger('sink');
  const events = new SinkEmitter();
  attachTelemetry(events);
  const health = new SinkHealth();
  const closers: Array<() => Promise<void>> = [];
  let manager: ConnectorManager | undefined;
  let aggregates: Aggregates | undefined;
  let url: string | undefined;
  // Aborted by close(): a start still waiting for the database or Kafka gives up.
  const stopping = new AbortController();
  const manage = (): ConnectorManager => {
    if (!manager) throw new ManagerError(503, `the sink is starting (waiting for ${health.waitingFor ?? 'start-up'}); try again shortly`);
    return manager;
  };
  // The API is built up front (tests inject requests); its routes reach the manager once started.
  const api = buildConnectApi({ token: config.sink.apiToken, manager: manage, health });

  const close = async () => {
    health.phase = 'stopping';
    stopping.abort(new TickflowError('INTERNAL', 'the sink is stopping'));
    for (const c of closers.splice(0).reverse()) await c().catch((e) => log.warn({ err: messageOf(e) }, 'sink close step failed'));
  };

  /**
   * Retries `fn` until it succeeds, a non-retriable error, or close(); logs what it waits for
   * (URLs with their password masked) and shows it on /healthz meanwhile.
   */
  const waitFor = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    health.waitingFor = what;
    let logged = 0;
    const result = await retry(fn, {
      ...RETRY.sinkDependencies,
      signal: stopping.signal,
      onRetry: (err, attempt, delayMs) => {
        health.waitingFor = `${what}: ${messageOf(err)}`;
        // Every attempt at first, then about every 30 s.
        if (attempt <= 3 || Date.now() - logged >= 30_000) {
          logged = Date.now();
          log.warn({ attempt, retryInMs: delayMs, err: messageOf(err) }, `waiting for ${what}`);
        }
      },
    });
    health.waitingFor = undefined;
    return result;
  };

  return {
    events,
    api,
    get url() {
      return url;
    },
    get connectors() {
      if (!manager) throw new TickflowError('INTERNAL', 'the sink is not started');
      return manager;
    },
    async start() {
      try {
        health.phase = 'starting';
        // The REST API, /healthz and /metrics answer from the first moment ('starting' and what
        // the sink waits for), not only once the database, Kafka and the group join are done.
        if (deps.listen !== false) {
          url = await api.listen({ host: config.sink.apiHost, port: config.sink.apiPort });
          log.info({ url, auth: config.sink.apiToken ? 'bearer' : 'none' }, 'sink REST API listening');
          if (!config.sink.apiToken && !['127.0.0.1', '::1', 'localhost'].includes(config.sink.apiHost)) {
            log.warn({ apiHost: config.sink.apiHost }, 'the sink REST API listens beyond localhost without a token: set sink.apiToken (SINK_API_TOKEN)');
          }
        }
        closers.push(() => api.close());

        // A database that is down (or restarting) at start is waited for, not a reason to exit.
        let pool: Pool;
        const dbName = config.database.url ? `the database (DATABASE_URL=${maskUrl(config.database.url)})` : 'the embedded database';
        if (deps.pool) pool = deps.pool;
        else {
          const db: OpenDatabase = await waitFor(dbName, () => openDatabase(config, { applicationName: 'tickflow-sink' }));
          closers.push(() => db.close());
          pool = db.pool;
        }
        health.watchDatabase(pool);
        const m = await waitFor(dbName, () => transientDb(() => migrate(pool)));
        const dbInfo = await waitFor(dbName, () => transientDb(() => detectDatabase(pool, m.flavour)));
        log.debug({ flavour: dbInfo.flavour, backgroundWorkers: dbInfo.backgroundWorkers, migrations: m.applied }, 'sink database ready');
        aggregates = new Aggregates(pool, dbInfo, config.sink.policies, events);
        await aggregates.applyPolicies().catch((e) => log.error({ err: messageOf(e) }, 'applying the TimescaleDB policies failed'));

        const decoder = new Decoder(config.kafka, true, deps.registryWaitMs);
        decoder.start();
        closers.push(() => decoder.close());
        const configured = deps.brokers ?? config.kafka.brokers;
        const resolve = deps.resolveBrokers;
        const brokers = resolve && !deps.brokers ? await waitFor(`Kafka (KAFKA_BROKERS=${configured.join(',') || 'the local broker'})`, () => resolve()) : configured;
        health.watchKafka(brokers);
        const kafka = createKafka({ ...config.kafka, brokers });
        const kafkaName = `Kafka (KAFKA_BROKERS=${brokers.join(',')})`;
        await waitFor(kafkaName, () => kafkaStep(() => ensureTopics(kafka, config.kafka)));
        const producer: Producer = createProducer(kafka);
        await waitFor(kafkaName, () => kafkaStep(() => producer.connect()));
        closers.push(() => producer.disconnect());
        const admin: Admin = kafka.admin();
        await waitFor(kafkaName, () => kafkaStep(() => admin.connect()));
        closers.push(() => admin.disconnect());

        const aggs = aggregates;
        const mgr = new ConnectorManager(
          pool,
          { kafka, pool, decoder, producer, admin, events, clientId: config.kafka.clientId, kafkaCheck: () => health.kafkaCheck(), onWritten: (table, t) => aggs.noteWrite(table, t) },
          config.kafka,
        );
        closers.push(() => mgr.stopAll());
        health.watchConnectors(() => mgr.list().map((c) => ({ name: c.name, state: c.currentState, problem: c.problem() })));

        const declared: ConnectorSpec[] = config.sink.connectors ?? defaultConnectors();
        const stored = await waitFor(dbName, () => transientDb(() => loadConnectors(pool)));
        const names = new Set(declared.map((c) => c.name));
        // Registered before they join their groups: the REST API lists them (and their state)
        // while the joins run. Each is checked first (sink/validate.ts); one that cannot start
        // is listed as FAILED with the reason and skipped, never stopping the others.
        health.waitingFor = 'the connectors to join their consumer groups';
        const launches: Promise<unknown>[] = [];
        for (const spec of declared) launches.push(mgr.add(spec, 'config'));
        for (const s of stored) {
          if (names.has(s.name)) {
            log.warn({ connector: s.name }, 'a connector created over REST has the name of one in the config file; the config file wins');
            continue;
          }
          launches.push(mgr.add(s.config, 'api', s.paused));
        }
        manager = mgr;
        await Promise.all(launches);
        // One line for the person running it (each failure was logged at error with its reason).
        const all = mgr.list();
        const byState = (...states: string[]) => all.filter((c) => states.includes(c.currentState)).map((c) => c.name);
        const [up, failed] = [byState('RUNNING', 'PAUSED'), byState('FAILED')];
        log.info({ running: up, failed }, `${up.length} connector(s) running${up.length ? `: ${up.join(', ')}` : ''}${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);

        if (deps.schedule !== false) {
          const scheduler: Scheduler = startScheduler(aggs, config.sink);
          closers.push(() => scheduler.stop());
        }
        health.waitingFor = undefined;
        health.phase = 'running';
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

/** A database call whose failure is retried when it is the connection's (or the server's state). */
async function transientDb<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) {
      if (!(c instanceof TickflowError) && translatePgError(c).retriable) throw dbError(c, messageOf(e));
    }
    throw e;
  }
}

/** kafkajs's errors at start-up (a broker down or still starting) are retried by the sink. */
async function kafkaStep<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof TickflowError) throw e;
    throw new TickflowError('KAFKA_UNREACHABLE', messageOf(e), { retriable: !(e instanceof TypeError || e instanceof RangeError), cause: e });
  }
}
