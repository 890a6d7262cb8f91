-- Connectors created over the sink's REST API (those declared in the config file live there).
-- `config` is the connector's JSON as POSTed, validated by sink/config.ts; `paused` survives a
-- restart of the sink, as Kafka Connect's target state does.
create table if not exists sink_connectors (
  name       text primary key,
  config     jsonb not null,
  paused     boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
