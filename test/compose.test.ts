/**
 * docker-compose.yml can't run here (no Docker engine), so it is checked against the code: its
 * services, ports, environment and mounts agree with what the parts read and serve; every
 * provisioned file exists; every metric a dashboard queries is one the code registers.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ENV_OVERRIDES, loadConfig } from '../config/schema.ts';
import { registry } from '../core/metrics.ts';
// The modules that declare the parts' metrics (they register on import).
import '../gateways/telemetry.ts';
import '../sink/telemetry.ts';
import '../api/telemetry.ts';
import '../broadcast/telemetry.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { command?: string[]; environment?: Record<string, string>; volumes?: string[]; ports?: string[]; healthcheck?: unknown; depends_on?: Record<string, unknown>; build?: unknown }>;
  volumes: Record<string, unknown>;
};
const services = compose.services;
const TICKFLOW_PARTS = ['migrate', 'gateway', 'sink', 'api', 'broadcast'] as const;

/** Runtime source files (not tests, benches (`*.bench.ts` beside the code) or the sim's CLI helpers). */
function runtimeSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.bench.ts')) out.push(p);
    }
  };
  for (const d of ['cli', 'core', 'gateways', 'sink', 'api', 'broadcast', 'migrations', 'schemas']) walk(path.join(ROOT, d));
  return out;
}

/** Variables only development and tests use; a deployment never sets them. */
const NOT_FOR_DEPLOYMENT: Record<string, string> = {
  VITEST: 'set by the test runner',
  TICKFLOW_DB_DIR: 'embedded database folder; compose uses DATABASE_URL',
  TICKFLOW_CACHE_DIR: 'Kafka jar cache of the local broker; compose runs Kafka itself',
  SCHEMA_REGISTRY_URL: 'optional: without a registry, single-object encoding',
  KAFKA_TOPIC_PREFIX: 'optional: the config file sets kafka.topicPrefix',
  SINK_API_TOKEN: 'set on the sink service only (checked below)',
  NO_COLOR: 'console colours of the human log format; compose sets LOG_FORMAT=json',
  TERM: 'console colours of the human log format; compose sets LOG_FORMAT=json',
};

describe('docker-compose.yml', () => {
  it('has every service, each part with a health check, on named volumes', () => {
    expect(Object.keys(services).sort()).toEqual(['api', 'broadcast', 'gateway', 'grafana', 'kafka', 'migrate', 'prometheus', 'sink', 'timescaledb']);
    for (const [name, svc] of Object.entries(services)) {
      if (name !== 'migrate') expect(svc.healthcheck, `${name} has no healthcheck`).toBeDefined();
      for (const v of svc.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (src.startsWith('.')) expect(existsSync(path.join(ROOT, src)), `${name} mounts missing ${src}`).toBe(true);
        else expect(compose.volumes, `${name} uses undeclared volume ${src}`).toHaveProperty(src);
      }
    }
    expect(services.migrate!.command).toEqual(['migrate']);
    expect(services.sink!.depends_on).toHaveProperty('migrate', { condition: 'service_completed_successfully' });
    expect(services.api!.depends_on).toHaveProperty('migrate', { condition: 'service_completed_successfully' });
  });

  it('runs commands the CLI has, from the image the Dockerfile builds with every runtime folder', () => {
    const cli = readFileSync(path.join(ROOT, 'cli', 'main.ts'), 'utf8');
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const part of TICKFLOW_PARTS) {
      const cmd = services[part]!.command![0]!;
      expect(cli, `tickflow has no command ${cmd}`).toContain(`case '${cmd}':`);
      expect(services[part]!.build ?? services[part]!.command, part).toBeDefined();
    }
    for (const dir of ['bin', 'cli', 'core', 'schemas', 'migrations', 'infra', 'gateways', 'sink', 'api', 'broadcast', 'sim', 'config']) {
      expect(dockerfile, `Dockerfile does not copy ${dir}/`).toMatch(new RegExp(`^COPY ${dir} `, 'm'));
    }
  });

  it('sets every environment variable the code reads for a deployment', () => {
    const read = new Set<string>(Object.keys(ENV_OVERRIDES));
    for (const f of runtimeSources()) {
      for (const m of readFileSync(f, 'utf8').matchAll(/process\.env\.([A-Z][A-Z0-9_]+)|env\.([A-Z][A-Z0-9_]+)/g)) read.add((m[1] ?? m[2])!);
    }
    read.add('TICKFLOW_CONFIG');
    const needed = [...read].filter((v) => !(v in NOT_FOR_DEPLOYMENT) && v !== 'LOG_LEVEL').sort();
    expect(needed).toEqual(expect.arrayContaining(['DATABASE_URL', 'KAFKA_BROKERS', 'TICKFLOW_CONFIG']));
    for (const part of TICKFLOW_PARTS) {
      const env = services[part]!.environment ?? {};
      for (const v of needed) expect(env, `${part} does not set ${v}`).toHaveProperty(v);
    }
    expect(services.sink!.environment).toHaveProperty('SINK_API_TOKEN');
    expect(services.kafka!.environment!.KAFKA_ADVERTISED_LISTENERS).toBe(services.gateway!.environment!.KAFKA_BROKERS!.replace(/^/, 'PLAINTEXT://'));
  });

  it('mounts a valid config whose ports match the published ports and the Prometheus targets', () => {
    const mount = services.api!.volumes!.find((v) => v.endsWith(':/app/config/tickflow.yaml:ro'))!;
    const config = loadConfig({ path: path.join(ROOT, mount.split(':')[0]!), env: {} });
    expect(config.exchanges.length).toBeGreaterThan(0);
    expect(config.exchangeErrors).toEqual([]);
    expect([config.api.host, config.sink.apiHost, config.gateway.metricsHost, config.broadcast.metricsHost]).toEqual(['0.0.0.0', '0.0.0.0', '0.0.0.0', '0.0.0.0']);
    expect(services.api!.ports).toContain(`${config.api.port}:${config.api.port}`);
    expect(services.sink!.ports!.some((p) => p.endsWith(`:${config.sink.apiPort}`))).toBe(true);
    const prom = parse(readFileSync(path.join(ROOT, 'infra', 'prometheus', 'prometheus.yml'), 'utf8')) as { scrape_configs: { static_configs: { targets: string[] }[] }[] };
    const targets = prom.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets)).sort();
    expect(targets).toEqual([`api:${config.api.port}`, `broadcast:${config.broadcast.metricsPort}`, `gateway:${config.gateway.metricsPort}`, `sink:${config.sink.apiPort}`]);
    for (const part of ['gateway', 'sink', 'api', 'broadcast']) {
      const port = { gateway: config.gateway.metricsPort, sink: config.sink.apiPort, api: config.api.port, broadcast: config.broadcast.metricsPort }[part]!;
      expect(JSON.stringify(services[part]!.healthcheck)).toContain(`127.0.0.1:${port}/`);
    }
  });

  it('gives Grafana the provisioning and every variable the datasources use', () => {
    const g = services.grafana!;
    const provisioning = readFileSync(path.join(ROOT, 'grafana', 'provisioning', 'datasources', 'tickflow.yaml'), 'utf8');
    for (const [, v] of provisioning.matchAll(/\$\{([A-Z_]+)\}/g)) expect(g.environment, `grafana lacks ${v}`).toHaveProperty(v!);
    const providers = parse(readFileSync(path.join(ROOT, 'grafana', 'provisioning', 'dashboards', 'tickflow.yaml'), 'utf8')) as { providers: { options: { path: string } }[] };
    const dashMount = g.volumes!.find((v) => v.startsWith('./grafana/dashboards:'))!;
    expect(dashMount.split(':')[1]).toBe(providers.providers[0]!.options.path);
    expect(g.volumes).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
  });
});

describe('grafana Prometheus panels', () => {
  const dir = path.join(ROOT, 'grafana', 'dashboards');
  const exprs = readdirSync(dir).flatMap((f) => {
    const d = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { panels: { targets?: { expr?: string }[] }[] };
    return d.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => (t.expr ? [t.expr] : [])));
  });

  it('query only metrics the code registers', () => {
    expect(exprs.length).toBeGreaterThan(5);
    const names = new Set(exprs.flatMap((e) => [...e.matchAll(/\b(tickflow_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''))));
    expect(names.size).toBeGreaterThan(5);
    for (const n of names) expect(registry.getSingleMetric(n), `no metric ${n} is registered`).toBeDefined();
  });
});
