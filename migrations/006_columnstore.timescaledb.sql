-- Columnstore (compression) settings of the time-series hypertables: segments per instrument,
-- newest first, so a range of one instrument decompresses only its own segments. When chunks
-- get compressed is a policy the sink sets from its config (sink.policies.compressAfter).
-- Plain PostgreSQL has no columnstore: the plain flavour has no 006.
alter table trades set (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'exchange, symbol', timescaledb.orderby = 'ts desc, id');
alter table tickers set (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'exchange, symbol', timescaledb.orderby = 'ts desc');
alter table candles set (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'exchange, symbol, timeframe', timescaledb.orderby = 'ts desc');
alter table books set (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'exchange, symbol', timescaledb.orderby = 'ts desc');
