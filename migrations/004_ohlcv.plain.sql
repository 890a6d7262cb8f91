-- Plain PostgreSQL: the OHLCV rollups ohlcv_1m, ohlcv_1h and ohlcv_1d read like TimescaleDB's
-- real-time continuous aggregates: a materialized table below a watermark, computed at query
-- time above it. tickflow_refresh_ohlcv(refresh_upto), run by the sink's scheduler, moves the
-- watermarks up and recomputes the buckets that late records touched below them (tracked by
-- triggers on trades in ohlcv_dirty).
create table ohlcv_1m_mat (
  exchange text not null, symbol text not null, bucket timestamptz not null,
  open double precision not null, high double precision not null, low double precision not null,
  close double precision not null, volume double precision not null, trades bigint not null,
  primary key (exchange, symbol, bucket)
);
create table ohlcv_1h_mat (like ohlcv_1m_mat including all);
create table ohlcv_1d_mat (like ohlcv_1m_mat including all);

-- Everything below `upto` is materialized for that level.
create table ohlcv_watermark (level text primary key, upto timestamptz not null);
insert into ohlcv_watermark values ('1m', '-infinity'), ('1h', '-infinity'), ('1d', '-infinity');

-- 1-minute buckets written below the 1m watermark since the last refresh.
create table ohlcv_dirty (
  exchange text not null, symbol text not null, bucket timestamptz not null,
  primary key (exchange, symbol, bucket)
);

create function tickflow_mark_dirty() returns trigger language plpgsql as $$
begin
  insert into ohlcv_dirty (exchange, symbol, bucket)
  select distinct n.exchange, n.symbol, time_bucket(interval '1 minute', n.ts)
  from new_rows n
  where n.ts < (select upto from ohlcv_watermark where level = '1m')
  on conflict do nothing;
  return null;
end $$;

create trigger trades_dirty_on_insert after insert on trades
  referencing new table as new_rows for each statement execute function tickflow_mark_dirty();
create trigger trades_dirty_on_update after update on trades
  referencing new table as new_rows for each statement execute function tickflow_mark_dirty();

create view ohlcv_1m as
select exchange, symbol, bucket, open, high, low, close, volume, trades
from ohlcv_1m_mat
where bucket < (select upto from ohlcv_watermark where level = '1m')
union all
select exchange, symbol, time_bucket(interval '1 minute', ts) as bucket,
       first(price, ts), max(price), min(price), last(price, ts), sum(amount), count(*)
from trades
where ts >= (select upto from ohlcv_watermark where level = '1m')
group by exchange, symbol, time_bucket(interval '1 minute', ts);

create view ohlcv_1h as
select exchange, symbol, bucket, open, high, low, close, volume, trades
from ohlcv_1h_mat
where bucket < (select upto from ohlcv_watermark where level = '1h')
union all
select exchange, symbol, time_bucket(interval '1 hour', bucket) as bucket,
       first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)::bigint
from ohlcv_1m
where bucket >= (select upto from ohlcv_watermark where level = '1h')
group by exchange, symbol, time_bucket(interval '1 hour', bucket);

create view ohlcv_1d as
select exchange, symbol, bucket, open, high, low, close, volume, trades
from ohlcv_1d_mat
where bucket < (select upto from ohlcv_watermark where level = '1d')
union all
select exchange, symbol, time_bucket(interval '1 day', bucket) as bucket,
       first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)::bigint
from ohlcv_1h
where bucket >= (select upto from ohlcv_watermark where level = '1d')
group by exchange, symbol, time_bucket(interval '1 day', bucket);

-- Materializes complete buckets below `refresh_upto` and recomputes dirty ones; returns the number of
-- 1m buckets written. Safe to run concurrently (it locks the watermark rows).
create function tickflow_refresh_ohlcv(refresh_upto timestamptz) returns bigint language plpgsql as $$
declare
  old1m timestamptz; old1h timestamptz; old1d timestamptz;
  new1m timestamptz := time_bucket(interval '1 minute', refresh_upto);
  new1h timestamptz;
  new1d timestamptz;
  written bigint;
begin
  select upto into old1m from ohlcv_watermark where level = '1m' for update;
  select upto into old1h from ohlcv_watermark where level = '1h' for update;
  select upto into old1d from ohlcv_watermark where level = '1d' for update;
  new1m := greatest(new1m, old1m);
  new1h := greatest(time_bucket(interval '1 hour', new1m), old1h);
  new1d := greatest(time_bucket(interval '1 day', new1h), old1d);

  -- The 1m buckets to (re)compute: the new window, plus dirty ones below the old watermark.
  create temp table if not exists tickflow_touched (exchange text, symbol text, bucket timestamptz) on commit drop;
  truncate tickflow_touched;
  with d as (delete from ohlcv_dirty returning exchange, symbol, bucket)
  insert into tickflow_touched select exchange, symbol, bucket from d where bucket < new1m;

  delete from ohlcv_1m_mat m using tickflow_touched t
  where m.exchange = t.exchange and m.symbol = t.symbol and m.bucket = t.bucket;
  insert into ohlcv_1m_mat
  select exchange, symbol, time_bucket(interval '1 minute', ts),
         first(price, ts), max(price), min(price), last(price, ts), sum(amount), count(*)
  from trades tr
  where (tr.ts >= old1m and tr.ts < new1m)
     or exists (select 1 from tickflow_touched t where t.exchange = tr.exchange and t.symbol = tr.symbol
                and tr.ts >= t.bucket and tr.ts < t.bucket + interval '1 minute')
  group by 1, 2, 3
  on conflict (exchange, symbol, bucket) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades;
  get diagnostics written = row_count;

  -- Hours: the new window plus the hours of touched minutes; then days likewise.
  delete from ohlcv_1h_mat m
  where (m.bucket >= old1h and m.bucket < new1h)
     or exists (select 1 from tickflow_touched t where t.exchange = m.exchange and t.symbol = m.symbol
                and m.bucket = time_bucket(interval '1 hour', t.bucket));
  insert into ohlcv_1h_mat
  select exchange, symbol, time_bucket(interval '1 hour', bucket),
         first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)
  from ohlcv_1m_mat m
  where (m.bucket >= old1h and m.bucket < new1h)
     or exists (select 1 from tickflow_touched t where t.exchange = m.exchange and t.symbol = m.symbol
                and time_bucket(interval '1 hour', m.bucket) = time_bucket(interval '1 hour', t.bucket)
                and t.bucket < new1h)
  group by 1, 2, 3
  on conflict do nothing;

  delete from ohlcv_1d_mat m
  where (m.bucket >= old1d and m.bucket < new1d)
     or exists (select 1 from tickflow_touched t where t.exchange = m.exchange and t.symbol = m.symbol
                and m.bucket = time_bucket(interval '1 day', t.bucket));
  insert into ohlcv_1d_mat
  select exchange, symbol, time_bucket(interval '1 day', bucket),
         first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)
  from ohlcv_1h_mat m
  where (m.bucket >= old1d and m.bucket < new1d)
     or exists (select 1 from tickflow_touched t where t.exchange = m.exchange and t.symbol = m.symbol
                and time_bucket(interval '1 day', m.bucket) = time_bucket(interval '1 day', t.bucket)
                and t.bucket < new1d)
  group by 1, 2, 3
  on conflict do nothing;

  update ohlcv_watermark set upto = case level when '1m' then new1m when '1h' then new1h else new1d end;
  return written;
end $$;
