-- The time-series tables become hypertables, partitioned by their time column.
select create_hypertable('trades', by_range('ts', interval '1 day'), if_not_exists => true);
select create_hypertable('tickers', by_range('ts', interval '1 day'), if_not_exists => true);
select create_hypertable('candles', by_range('ts', interval '7 days'), if_not_exists => true);
select create_hypertable('books', by_range('ts', interval '1 day'), if_not_exists => true);
select create_hypertable('gaps', by_range('from_ts', interval '30 days'), if_not_exists => true);
