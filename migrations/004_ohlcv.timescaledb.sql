-- tickflow:no-transaction
-- OHLCV from trades: continuous aggregates at 1m, then hierarchical 1h (on 1m) and 1d (on 1h),
-- real-time (materialized_only = false: buckets not yet materialized are computed at query
-- time). Refresh, compression and retention policies are set by the sink from its config; where
-- the database runs no background jobs (the embedded one) the sink refreshes them itself.
create materialized view if not exists ohlcv_1m
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select exchange, symbol, time_bucket(interval '1 minute', ts) as bucket,
       first(price, ts) as open, max(price) as high, min(price) as low, last(price, ts) as close,
       sum(amount) as volume, count(*) as trades
from trades
group by exchange, symbol, time_bucket(interval '1 minute', ts)
with no data;

create materialized view if not exists ohlcv_1h
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select exchange, symbol, time_bucket(interval '1 hour', bucket) as bucket,
       first(open, bucket) as open, max(high) as high, min(low) as low, last(close, bucket) as close,
       sum(volume) as volume, sum(trades)::bigint as trades
from ohlcv_1m
group by exchange, symbol, time_bucket(interval '1 hour', bucket)
with no data;

create materialized view if not exists ohlcv_1d
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select exchange, symbol, time_bucket(interval '1 day', bucket) as bucket,
       first(open, bucket) as open, max(high) as high, min(low) as low, last(close, bucket) as close,
       sum(volume) as volume, sum(trades)::bigint as trades
from ohlcv_1h
group by exchange, symbol, time_bucket(interval '1 day', bucket)
with no data;
