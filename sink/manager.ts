import type { Pool } from '../core/db.ts';
import { messageOf } from '../core/errors.ts';
import { ensureNamedTopics, type KafkaSettings } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { connectorSchema, resolveConnector, type ConnectorSpec } from './config.ts';
import { Connector, type ConnectorDeps, type ConnectorStatus, type PartitionStatus } from './connector.ts';
import type { ConnectorState } from './events.ts';
import { deleteConnector, insertConnector, loadConnector, setConnectorPaused, updateConnector } from './store.ts';
import { validateConnector, type Verdict } from './validate.ts';

/** Why a management call was refused; the REST API maps `status` to the HTTP status. */
export class ManagerError extends Error {
  readonly status: 400 | 404 | 409 | 503;

  constructor(status: 400 | 404 | 409 | 503, message: string) {
    super(message);
    this.status = status;
  }
}

/** What the REST API and /healthz see of a connector, startable or not. */
export interface ManagedConnector {
  readonly name: string;
  readonly source: 'config' | 'api';
  readonly config: { readonly name: string };
  readonly currentState: ConnectorState;
  status(): Omit<ConnectorStatus, 'table'> & { readonly table: string };
  problem(): string | null;
  partitions(): Promise<PartitionStatus[]>;
  kafkaCheck(): Promise<{ ok: boolean; error?: string } | undefined>;
}

/**
 * A connector whose config can no longer start (its table changed, a row stored by an older
 * sink, a topic deleted): listed, FAILED with the reason, deletable; it never stops the sink or
 * the other connectors. A restart checks its config again.
 */
export class UnstartableConnector implements ManagedConnector {
  readonly name: string;
  readonly source: 'config' | 'api';
  readonly config: { readonly name: string } & Record<string, unknown>;
  readonly reason: string;
  readonly paused: boolean;
  private readonly topicPrefix: string;
  readonly currentState = 'FAILED' as const;
  private readonly at = new Date().toISOString();
  constructor(
    name: string,
    source: 'config' | 'api',
    config: { readonly name: string } & Record<string, unknown>,
    reason: string,
    paused: boolean,
    topicPrefix: string,
  ) {
    this.name = name;
    this.source = source;
    this.config = config;
    this.reason = reason;
    this.paused = paused;
    this.topicPrefix = topicPrefix;
  }

  problem(): string {
    return this.reason;
  }

  status() {
    const topics = Array.isArray(this.config.topics)
      ? this.config.topics.filter((t): t is string => typeof t === 'string')
      : typeof this.config.table === 'string'
        ? [`${this.topicPrefix}.${this.config.table}`]
        : [];
    return {
      name: this.name,
      state: this.currentState,
      table: typeof this.config.table === 'string' ? this.config.table : '',
      topics,
      rowsWritten: 0,
      messagesProcessed: 0,
      deadLettered: 0,
      retries: 0,
      lastError: this.reason,
      lastErrorAt: this.at,
      lastBatchAt: null,
      problem: this.reason,
    };
  }

  partitions(): Promise<PartitionStatus[]> {
    return Promise.reject(new Error('not started: its config cannot start'));
  }

  kafkaCheck(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
}

/**
 * The set of connectors: those of the config file and those created over the REST API
 * (persisted in sink_connectors). Kafka Connect's operations, one method each. Every config is
 * checked completely (sink/validate.ts) before it is stored or started.
 */
export class ConnectorManager {
  private readonly pool: Pool;
  private readonly deps: ConnectorDeps;
  private readonly kafka: Pick<KafkaSettings, 'topicPrefix' | 'partitions' | 'replicationFactor' | 'retentionMs'>;
  private readonly connectors = new Map<string, Connector | UnstartableConnector>();
  private readonly log = logger('sink');
  private readonly topicsEnsured = new Map<string, Promise<void>>();
  /** Set by stopAll: a check still running at close starts nothing afterwards. */
  private closed = false;

  constructor(
    pool: Pool,
    deps: ConnectorDeps,
    kafka: Pick<KafkaSettings, 'topicPrefix' | 'partitions' | 'replicationFactor' | 'retentionMs'>,
  ) {
    this.pool = pool;
    this.deps = deps;
    this.kafka = kafka;
  }

  names(): string[] {
    return [...this.connectors.keys()].sort();
  }

  list(): ManagedConnector[] {
    return this.names().map((n) => this.connectors.get(n)!);
  }

  get(name: string): ManagedConnector {
    const c = this.connectors.get(name);
    if (!c) throw new ManagerError(404, `no connector named ${name}`);
    return c;
  }

  /** The full check of a config (schema, the table in the database, the topics in Kafka). */
  validate(raw: unknown, fieldPrefix = ''): Promise<Verdict> {
    return validateConnector(raw, { pool: this.pool, admin: this.deps.admin, topicPrefix: this.kafka.topicPrefix, fieldPrefix });
  }

  /**
   * Adds and starts a connector of the config file or of sink_connectors (not persisted: see
   * create for the REST path). Never throws: a config that cannot start is kept as FAILED with
   * the reason, logged by name, and the others go on.
   */
  async add(raw: unknown, source: 'config' | 'api', paused = false): Promise<ManagedConnector> {
    const name = nameOf(raw);
    if (this.connectors.has(name)) return this.connectors.get(name)!;
    let verdict: Verdict;
    try {
      verdict = await this.validate(raw);
    } catch (e) {
      verdict = { ok: false, status: 503, error: messageOf(e) };
    }
    let spec: ConnectorSpec | undefined;
    if (verdict.ok) spec = verdict.spec;
    else if (verdict.status === 503) {
      // The database or Kafka did not answer the check: start it anyway when the schema holds;
      // the connector's own start waits and reports.
      const p = connectorSchema.safeParse(raw);
      if (p.success) spec = p.data;
      this.log.warn({ connector: name, err: verdict.error }, 'could not check the connector fully; starting it anyway');
    }
    if (!spec) return this.unstartable(name, raw, source, verdict.ok ? 'invalid' : verdict.error, paused);
    let connector: Connector;
    try {
      connector = this.register(spec, source);
    } catch (e) {
      return this.unstartable(name, raw, source, messageOf(e), paused);
    }
    await this.launch(connector, paused);
    return connector;
  }

  private unstartable(name: string, raw: unknown, source: 'config' | 'api', reason: string, paused: boolean): UnstartableConnector {
    const config = { ...(isObject(raw) ? raw : { config: raw }), name };
    const why = `connector ${name} cannot start: ${reason}`;
    const c = new UnstartableConnector(name, source, config, why, paused, this.kafka.topicPrefix);
    this.connectors.set(name, c);
    this.log.error({ connector: name, source, reason }, `${why}; skipped (${source === 'api' ? 'DELETE /connectors/' + name + ' removes it' : 'fix it in the config file'})`);
    return c;
  }

  /** POST /connectors: checked completely, then persisted, then started in the background (its status tells how it went). */
  async create(raw: { name: string; config: Record<string, unknown> }): Promise<ManagedConnector> {
    const { name, config } = raw;
    if ('name' in config && config.name !== name) throw new ManagerError(400, 'config.name: differs from name');
    const verdict = await this.validate({ ...config, name }, 'config.');
    if (!verdict.ok) throw new ManagerError(verdict.status, verdict.error);
    const spec = verdict.spec;
    if (this.connectors.has(spec.name)) throw new ManagerError(409, `a connector named ${spec.name} exists`);
    // Built before the row is stored: what cannot be built is never stored.
    let connector: Connector;
    try {
      connector = new Connector(resolveConnector(spec, this.kafka.topicPrefix), this.deps, 'api');
    } catch (e) {
      throw new ManagerError(400, `config: ${messageOf(e)}`);
    }
    if (!(await insertConnector(this.pool, spec))) {
      // Stored by another sink instance since this one started: run it here too, so GET, DELETE
      // and this answer agree that it exists.
      const row = await loadConnector(this.pool, spec.name);
      if (row && !this.connectors.has(spec.name)) void this.add(row.config, 'api', row.paused);
      throw new ManagerError(409, `a connector named ${spec.name} exists (created by another sink instance)`);
    }
    if (this.connectors.has(spec.name)) throw new ManagerError(409, `a connector named ${spec.name} exists`);
    this.connectors.set(spec.name, connector);
    void this.launch(connector, false).catch((e) => this.log.error({ connector: spec.name, err: messageOf(e) }, 'starting the connector failed'));
    return connector;
  }

  /**
   * PUT /connectors/:name/config: creates the connector, or replaces the config of one created
   * over REST (checked completely first; the old one stops, the new one starts, paused if it was).
   */
  async update(name: string, config: Record<string, unknown>): Promise<{ connector: ManagedConnector; created: boolean }> {
    if ('name' in config && config.name !== name) throw new ManagerError(400, 'name: differs from the name in the path');
    const existing = this.connectors.get(name);
    if (existing?.source === 'config') throw new ManagerError(409, `connector ${name} is declared in the config file; change it there`);
    const verdict = await this.validate({ ...config, name }, '');
    if (!verdict.ok) throw new ManagerError(verdict.status, verdict.error);
    const row = await loadConnector(this.pool, name);
    if (!row && !existing) return { connector: await this.create({ name, config }), created: true };
    let connector: Connector;
    try {
      connector = new Connector(resolveConnector(verdict.spec, this.kafka.topicPrefix), this.deps, 'api');
    } catch (e) {
      throw new ManagerError(400, messageOf(e));
    }
    const paused = row?.paused ?? false;
    await updateConnector(this.pool, verdict.spec);
    this.connectors.set(name, connector);
    if (existing instanceof Connector) await existing.stop();
    void this.launch(connector, paused).catch((e) => this.log.error({ connector: name, err: messageOf(e) }, 'starting the connector failed'));
    return { connector, created: false };
  }

  private register(spec: ConnectorSpec, source: 'config' | 'api'): Connector {
    if (this.connectors.has(spec.name)) throw new ManagerError(409, `a connector named ${spec.name} exists`);
    const connector = new Connector(resolveConnector(spec, this.kafka.topicPrefix), this.deps, source);
    this.connectors.set(spec.name, connector);
    return connector;
  }

  private async launch(connector: Connector, paused: boolean): Promise<void> {
    const topic = connector.config.deadLetterTopic;
    // Connectors usually share one dead-letter topic: created once, not raced.
    let ensured = this.topicsEnsured.get(topic);
    if (!ensured) {
      ensured = ensureNamedTopics(this.deps.kafka, [topic], this.kafka).then(
        () => undefined,
        (e) => {
          this.topicsEnsured.delete(topic);
          this.log.warn({ err: String(e), topic }, 'cannot create the dead-letter topic');
        },
      );
      this.topicsEnsured.set(topic, ensured);
    }
    await ensured;
    if (this.closed) return;
    await connector.start(paused);
  }

  async remove(name: string): Promise<void> {
    const c = this.connectors.get(name);
    if (!c) {
      // A row this instance does not run (stored by another instance): it exists, so it goes.
      if (await loadConnector(this.pool, name)) {
        await deleteConnector(this.pool, name);
        return;
      }
      throw new ManagerError(404, `no connector named ${name}`);
    }
    if (c.source === 'config') throw new ManagerError(409, `connector ${name} is declared in the config file; remove it there`);
    await deleteConnector(this.pool, name);
    this.connectors.delete(name);
    if (c instanceof Connector) await c.stop();
  }

  async pause(name: string): Promise<void> {
    const c = this.startable(name);
    c.pause();
    if (c.source === 'api') await setConnectorPaused(this.pool, name, true);
  }

  async resume(name: string): Promise<void> {
    const c = this.startable(name);
    c.resume();
    if (c.source === 'api') await setConnectorPaused(this.pool, name, false);
  }

  /** Restarts a connector; one that could not start is checked again (e.g. after its table was fixed). */
  async restart(name: string): Promise<void> {
    const c = this.get(name);
    if (c instanceof Connector) return c.restart();
    const u = c as UnstartableConnector;
    let raw: unknown = u.config;
    let paused = u.paused;
    if (u.source === 'api') {
      const row = await loadConnector(this.pool, name);
      if (!row) throw new ManagerError(404, `no connector named ${name}`);
      raw = row.config;
      paused = row.paused;
    }
    this.connectors.delete(name);
    const again = await this.add(raw, u.source, paused);
    if (again instanceof UnstartableConnector) throw new ManagerError(409, again.reason);
  }

  async stopAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.connectors.values()].map((c) => (c instanceof Connector ? c.stop() : undefined)));
  }

  private startable(name: string): Connector {
    const c = this.get(name);
    if (!(c instanceof Connector)) throw new ManagerError(409, `${(c as UnstartableConnector).reason}; fix it, or DELETE it`);
    return c;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nameOf(raw: unknown): string {
  return isObject(raw) && typeof raw.name === 'string' ? raw.name : '(unnamed)';
}
