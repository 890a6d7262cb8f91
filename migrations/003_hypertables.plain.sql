-- Plain PostgreSQL: the tables stay plain tables (indexed by their primary keys). TimescaleDB's
-- first(value, time) and last(value, time) aggregates, for double precision values, so the
-- OHLCV rollups below read the same on both.
create type tickflow_vt as (v double precision, t timestamptz);

create function tickflow_first_sfunc(s tickflow_vt, v double precision, t timestamptz) returns tickflow_vt
language sql immutable parallel safe
as $$ select case when t is null then s when s is null or t < (s).t then row(v, t)::tickflow_vt else s end $$;

create function tickflow_last_sfunc(s tickflow_vt, v double precision, t timestamptz) returns tickflow_vt
language sql immutable parallel safe
as $$ select case when t is null then s when s is null or t >= (s).t then row(v, t)::tickflow_vt else s end $$;

create function tickflow_first_combine(a tickflow_vt, b tickflow_vt) returns tickflow_vt
language sql immutable parallel safe
as $$ select case when a is null then b when b is null then a when (b).t < (a).t then b else a end $$;

create function tickflow_last_combine(a tickflow_vt, b tickflow_vt) returns tickflow_vt
language sql immutable parallel safe
as $$ select case when a is null then b when b is null then a when (b).t >= (a).t then b else a end $$;

create function tickflow_vt_value(s tickflow_vt) returns double precision
language sql immutable parallel safe
as $$ select (s).v $$;

create aggregate first(double precision, timestamptz) (
  sfunc = tickflow_first_sfunc, stype = tickflow_vt, finalfunc = tickflow_vt_value,
  combinefunc = tickflow_first_combine, parallel = safe
);

create aggregate last(double precision, timestamptz) (
  sfunc = tickflow_last_sfunc, stype = tickflow_vt, finalfunc = tickflow_vt_value,
  combinefunc = tickflow_last_combine, parallel = safe
);
