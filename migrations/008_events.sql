-- User events (POST /v1/events; schemas/event.avsc): a strategy signal, an annotation, a fill,
-- linked to an instrument and a time, or to no instrument (exchange and symbol both '': a key
-- column cannot be null; the API serves them as null). The sink writes them in insert mode:
-- the first copy of an (exchange, symbol, ts, id) wins, so a re-sent event changes nothing.
create table if not exists events (
  exchange        text not null,
  symbol          text not null,
  ts              timestamptz not null,
  received_at     timestamptz not null,
  id              text not null,
  type            text not null,
  data            text not null,
  idempotency_key text,
  primary key (exchange, symbol, ts, id)
);
-- GET /v1/events without an instrument (by time, or by type and time).
create index if not exists events_ts_idx on events (ts);
create index if not exists events_type_ts_idx on events (type, ts);

-- A hypertable where TimescaleDB is installed (its indexes are the ones above), a plain table
-- otherwise; retention (sink.policies.retention.events) follows ts either way.
do $$
begin
  if exists (select 1 from pg_extension where extname = 'timescaledb') then
    perform create_hypertable('events', by_range('ts', interval '7 days'), create_default_indexes => false, if_not_exists => true);
  end if;
end
$$;

-- Idempotency keys of POST /v1/events: the first post of a key claims it with its event's id
-- and times; every later post of that key (a client retry, after an API restart too) gets the
-- same event back, so it is written once even when ts was left to default to now. `fingerprint`
-- is a hash of what the post said (type, instrument, ts if given, data): the same key with
-- another event is refused. `produced_at` is set once the event is in Kafka: a retry of a key
-- whose event never got there (Kafka down, the API killed) produces it then; one whose event did
-- is not produced twice.
create table if not exists event_keys (
  key         text primary key,
  id          text not null,
  ts          timestamptz not null,
  received_at timestamptz not null,
  fingerprint text not null,
  produced_at timestamptz
);
