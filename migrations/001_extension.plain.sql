-- Plain PostgreSQL (>= 15) without TimescaleDB, e.g. a managed service: the same names as on
-- TimescaleDB, so the parts above the migrations don't branch. time_bucket matches
-- TimescaleDB's for fixed-width buckets (origin 2000-01-03, a Monday); month buckets are not
-- offered here.
create or replace function time_bucket(bucket_width interval, ts timestamptz) returns timestamptz
language sql immutable strict parallel safe
as $$ select date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00:00+00') $$;
