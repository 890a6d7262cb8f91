-- The TimescaleDB extension, where the server offers it (the embedded database and any
-- TimescaleDB server). Later migrations build hypertables and continuous aggregates on it.
create extension if not exists timescaledb;
