-- Broadcasters and registrations (broadcast/): defined over the REST API or in the config file
-- (source 'config', upserted at start), kept here so they survive restarts. The runtime keeps its
-- delivery position, per-instrument predicate state and counters beside them, written in one
-- transaction after a batch's deliveries (at-least-once). Plain tables on either flavour.
create table if not exists broadcasters (
  name        text primary key check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
  kind        text not null check (kind in ('http', 'kafka')),
  -- the kind's settings (the secret included: never returned by the REST API)
  config      jsonb not null,
  paused      boolean not null default false,
  source      text not null default 'api' check (source in ('api', 'config')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table if not exists registrations (
  name        text primary key check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
  broadcaster text not null references broadcasters (name) on delete restrict,
  -- a record kind of schemas/catalog.ts
  kind        text not null,
  -- wildcard patterns: * and ?
  exchange    text not null default '*',
  symbol      text not null default '*',
  -- source in the predicate language (broadcast/predicate.ts); null = every record
  predicate   text,
  paused      boolean not null default false,
  source      text not null default 'api' check (source in ('api', 'config')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index if not exists registrations_broadcaster on registrations (broadcaster);

create table if not exists broadcast_stats (
  registration      text primary key references registrations (name) on delete cascade,
  delivered         int8 not null default 0,
  -- deliveries that exhausted their retries (went to the dead-letter topic)
  failed            int8 not null default 0,
  last_error        text,
  last_error_at     timestamptz,
  last_delivered_at timestamptz
);

-- predicate state per registration and instrument (crosses above/below)
create table if not exists broadcast_state (
  registration text not null references registrations (name) on delete cascade,
  exchange     text not null,
  symbol       text not null,
  state        jsonb not null,
  primary key (registration, exchange, symbol)
);

-- delivery position, committed in the same transaction as state and stats
create table if not exists broadcast_offsets (
  group_id    text not null,
  topic       text not null,
  partition   int4 not null,
  next_offset int8 not null,
  primary key (group_id, topic, partition)
);
