-- Plain PostgreSQL: the OHLCV refresh no longer loses trades committed while it runs.
--
-- 004 marked a minute dirty only when the inserting statement saw its trade below the 1m
-- watermark. A sink transaction that inserts a minute's last trades while a refresh is running
-- sees the old watermark (the refresh has not committed), so it marks nothing; if it commits
-- after the refresh took its snapshot, the refresh materializes that minute without those trades
-- and then moves the watermark past them: left out for good. The same happened when a late
-- trade's marker collided with a committed marker of another transaction (`on conflict do
-- nothing`) that the refresh consumed before the late trade's transaction committed.
--
-- Now every statement that writes trades marks the minutes it touched, one marker per
-- transaction (the key includes the writer's transaction id), whatever the watermark. A marker
-- commits together with its trades, so a refresh that sees a marker also sees the trades behind
-- it, and a marker the refresh cannot see yet survives it for the next one.

alter table ohlcv_dirty add column marked_by xid8 not null default pg_current_xact_id();
alter table ohlcv_dirty drop constraint ohlcv_dirty_pkey;
alter table ohlcv_dirty add primary key (exchange, symbol, bucket, marked_by);

create or replace function tickflow_mark_dirty() returns trigger language plpgsql as $$
begin
  insert into ohlcv_dirty (exchange, symbol, bucket)
  select distinct n.exchange, n.symbol, time_bucket(interval '1 minute', n.ts) from new_rows n
  on conflict do nothing;
  return null;
end $$;

-- An update can move a trade out of its minute too: both minutes are dirty.
create function tickflow_mark_dirty_update() returns trigger language plpgsql as $$
begin
  insert into ohlcv_dirty (exchange, symbol, bucket)
  select n.exchange, n.symbol, time_bucket(interval '1 minute', n.ts) from new_rows n
  union
  select o.exchange, o.symbol, time_bucket(interval '1 minute', o.ts) from old_rows o
  on conflict do nothing;
  return null;
end $$;

drop trigger trades_dirty_on_update on trades;
create trigger trades_dirty_on_update after update on trades
  referencing old table as old_rows new table as new_rows for each statement execute function tickflow_mark_dirty_update();

-- The refresh's windows are time ranges over every instrument: without these it read whole
-- tables (trades are indexed by instrument first). BRIN: trades arrive nearly in time order, and
-- it costs the sink's inserts next to nothing.
create index trades_ts_brin on trades using brin (ts);
create index ohlcv_1m_mat_bucket on ohlcv_1m_mat (bucket);
create index ohlcv_1h_mat_bucket on ohlcv_1h_mat (bucket);

-- Materializes complete buckets below `refresh_upto` and recomputes the dirty ones below the old
-- watermarks; returns the number of 1m buckets written. Refreshes run one at a time (the first
-- statement locks the watermark rows); writers never wait for a refresh, nor it for them.
create or replace function tickflow_refresh_ohlcv(refresh_upto timestamptz) returns bigint language plpgsql as $$
declare
  old1m timestamptz; old1h timestamptz; old1d timestamptz;
  new1m timestamptz;
  new1h timestamptz;
  new1d timestamptz;
  written bigint;
begin
  select max(upto) filter (where level = '1m'), max(upto) filter (where level = '1h'), max(upto) filter (where level = '1d')
  into old1m, old1h, old1d
  from (select level, upto from ohlcv_watermark order by level for update) w;
  new1m := greatest(time_bucket(interval '1 minute', refresh_upto), old1m);
  new1h := greatest(time_bucket(interval '1 hour', new1m), old1h);
  new1d := greatest(time_bucket(interval '1 day', new1h), old1d);

  -- Minutes below the old watermark that committed writes touched. Markers of transactions not
  -- committed yet are invisible here and stay for the next refresh; markers at or above the old
  -- watermark are covered by the window below or still computed at query time by the views.
  create temp table if not exists tickflow_touched (exchange text, symbol text, bucket timestamptz) on commit drop;
  truncate tickflow_touched;
  with d as (delete from ohlcv_dirty returning exchange, symbol, bucket)
  insert into tickflow_touched select distinct exchange, symbol, bucket from d where bucket < old1m;
  -- A fresh temp table has no statistics: without them the planner guesses hundreds of rows and
  -- joins trades by scanning all of it.
  analyze tickflow_touched;

  delete from ohlcv_1m_mat m using tickflow_touched t
  where m.exchange = t.exchange and m.symbol = t.symbol and m.bucket = t.bucket;
  insert into ohlcv_1m_mat
  select exchange, symbol, time_bucket(interval '1 minute', ts),
         first(price, ts), max(price), min(price), last(price, ts), sum(amount), count(*)
  from (
    select exchange, symbol, ts, price, amount from trades where ts >= old1m and ts < new1m
    union all
    select tr.exchange, tr.symbol, tr.ts, tr.price, tr.amount
    from tickflow_touched t
    join trades tr on tr.exchange = t.exchange and tr.symbol = t.symbol
      and tr.ts >= t.bucket and tr.ts < t.bucket + interval '1 minute'
  ) x
  group by 1, 2, 3
  on conflict (exchange, symbol, bucket) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades;
  get diagnostics written = row_count;

  -- Hours: the new window plus the materialized hours of touched minutes; then days likewise.
  create temp table if not exists tickflow_touched_h (exchange text, symbol text, bucket timestamptz) on commit drop;
  truncate tickflow_touched_h;
  insert into tickflow_touched_h
  select distinct exchange, symbol, time_bucket(interval '1 hour', bucket) from tickflow_touched
  where time_bucket(interval '1 hour', bucket) < old1h;
  analyze tickflow_touched_h;

  delete from ohlcv_1h_mat m using tickflow_touched_h t
  where m.exchange = t.exchange and m.symbol = t.symbol and m.bucket = t.bucket;
  insert into ohlcv_1h_mat
  select exchange, symbol, time_bucket(interval '1 hour', bucket),
         first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)
  from (
    select * from ohlcv_1m_mat where bucket >= old1h and bucket < new1h
    union all
    select m.* from tickflow_touched_h t
    join ohlcv_1m_mat m on m.exchange = t.exchange and m.symbol = t.symbol
      and m.bucket >= t.bucket and m.bucket < t.bucket + interval '1 hour'
  ) x
  group by 1, 2, 3
  on conflict (exchange, symbol, bucket) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades;

  create temp table if not exists tickflow_touched_d (exchange text, symbol text, bucket timestamptz) on commit drop;
  truncate tickflow_touched_d;
  insert into tickflow_touched_d
  select distinct exchange, symbol, time_bucket(interval '1 day', bucket) from tickflow_touched
  where time_bucket(interval '1 day', bucket) < old1d;
  analyze tickflow_touched_d;

  delete from ohlcv_1d_mat m using tickflow_touched_d t
  where m.exchange = t.exchange and m.symbol = t.symbol and m.bucket = t.bucket;
  insert into ohlcv_1d_mat
  select exchange, symbol, time_bucket(interval '1 day', bucket),
         first(open, bucket), max(high), min(low), last(close, bucket), sum(volume), sum(trades)
  from (
    select * from ohlcv_1h_mat where bucket >= old1d and bucket < new1d
    union all
    select h.* from tickflow_touched_d t
    join ohlcv_1h_mat h on h.exchange = t.exchange and h.symbol = t.symbol
      and h.bucket >= t.bucket and h.bucket < t.bucket + interval '1 day'
  ) x
  group by 1, 2, 3
  on conflict (exchange, symbol, bucket) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades;

  update ohlcv_watermark set upto = case level when '1m' then new1m when '1h' then new1h else new1d end;
  return written;
end $$;
