import type { Pool } from '../core/db.ts';
import { ensureNamedTopics, type KafkaSettings } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { resolveConnector, type ConnectorSpec } from './config.ts';
import { Connector, type ConnectorDeps } from './connector.ts';
import { deleteConnector, insertConnector, setConnectorPaused } from './store.ts';

/** Why a management call was refused; the REST API maps `status` to the HTTP status. */
export class ManagerError extends Error {
  constructor(
    readonly status: 404 | 409 | 503,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The set of running connectors: those of the config file and those created over the REST API
 * (persisted in sink_connectors). Kafka Connect's operations, one method each.
 */
export class ConnectorManager {
  private readonly connectors = new Map<string, Connector>();
  private readonly log = logger('sink');
  private readonly topicsEnsured = new Map<string, Promise<void>>();

  constructor(
    private readonly pool: Pool,
    private readonly deps: ConnectorDeps,
    private readonly kafka: Pick<KafkaSettings, 'topicPrefix' | 'partitions' | 'replicationFactor' | 'retentionMs'>,
  ) {}

  names(): string[] {
    return [...this.connectors.keys()].sort();
  }

  list(): Connector[] {
    return this.names().map((n) => this.connectors.get(n)!);
  }

  get(name: string): Connector {
    const c = this.connectors.get(name);
    if (!c) throw new ManagerError(404, `no connector named ${name}`);
    return c;
  }

  /** Adds and starts a connector (not persisted: see create for the REST path). */
  async add(spec: ConnectorSpec, source: 'config' | 'api', paused = false): Promise<Connector> {
    const connector = this.register(spec, source);
    await this.launch(connector, paused);
    return connector;
  }

  /** POST /connectors: persisted, then started in the background (its status tells how it went). */
  async create(spec: ConnectorSpec): Promise<Connector> {
    if (this.connectors.has(spec.name)) throw new ManagerError(409, `a connector named ${spec.name} exists`);
    if (!(await insertConnector(this.pool, spec))) throw new ManagerError(409, `a connector named ${spec.name} exists (created by another sink instance)`);
    const connector = this.register(spec, 'api');
    void this.launch(connector, false);
    return connector;
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
    await connector.start(paused);
  }

  async remove(name: string): Promise<void> {
    const c = this.get(name);
    if (c.source === 'config') throw new ManagerError(409, `connector ${name} is declared in the config file; remove it there`);
    await deleteConnector(this.pool, name);
    this.connectors.delete(name);
    await c.stop();
  }

  async pause(name: string): Promise<void> {
    const c = this.get(name);
    c.pause();
    if (c.source === 'api') await setConnectorPaused(this.pool, name, true);
  }

  async resume(name: string): Promise<void> {
    const c = this.get(name);
    c.resume();
    if (c.source === 'api') await setConnectorPaused(this.pool, name, false);
  }

  async restart(name: string): Promise<void> {
    await this.get(name).restart();
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.list().map((c) => c.stop()));
  }
}
