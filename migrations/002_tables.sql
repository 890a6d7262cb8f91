-- The tables of every record kind, named like the Avro fields (schemas/*.avsc). Times are
-- timestamptz (microsecond precision, as in the records). Primary keys are the natural keys and
-- include the time column, as hypertables require; the sink upserts on them, so a replayed
-- record changes nothing.

create table if not exists trades (
  exchange    text not null,
  symbol      text not null,
  ts          timestamptz not null,
  id          text not null,
  side        text not null check (side in ('buy', 'sell', 'unknown')),
  price       double precision not null,
  amount      double precision not null,
  received_at timestamptz not null,
  primary key (exchange, symbol, ts, id)
);

create table if not exists tickers (
  exchange         text not null,
  symbol           text not null,
  ts               timestamptz not null,
  received_at      timestamptz not null,
  bid              double precision,
  bid_size         double precision,
  ask              double precision,
  ask_size         double precision,
  last             double precision,
  open_24h         double precision,
  high_24h         double precision,
  low_24h          double precision,
  base_volume_24h  double precision,
  quote_volume_24h double precision,
  primary key (exchange, symbol, ts)
);

-- Exchange-native candles; a forming candle is updated in place until it closes.
create table if not exists candles (
  exchange    text not null,
  symbol      text not null,
  timeframe   text not null,
  ts          timestamptz not null,
  received_at timestamptz not null,
  open        double precision not null,
  high        double precision not null,
  low         double precision not null,
  close       double precision not null,
  volume      double precision not null,
  closed      boolean not null,
  primary key (exchange, symbol, timeframe, ts)
);

-- Top-N book snapshots; levels as JSON arrays of {price, amount}, best first.
create table if not exists books (
  exchange    text not null,
  symbol      text not null,
  ts          timestamptz not null,
  received_at timestamptz not null,
  depth       integer not null,
  bids        jsonb not null,
  asks        jsonb not null,
  sequence    bigint,
  primary key (exchange, symbol, ts)
);

-- Stream outages: one row per gap (exchange, symbol, channel, from_ts); the record that
-- closes a gap updates to_ts and refilled.
create table if not exists gaps (
  exchange    text not null,
  symbol      text not null,
  channel     text not null,
  from_ts     timestamptz not null,
  to_ts       timestamptz,
  reason      text not null,
  refilled    bigint not null default 0,
  ts          timestamptz not null,
  received_at timestamptz not null,
  primary key (exchange, symbol, channel, from_ts)
);

-- Market metadata from ccxt; the latest load wins.
create table if not exists instruments (
  exchange         text not null,
  symbol           text not null,
  base             text not null,
  quote            text not null,
  type             text not null,
  active           boolean not null,
  price_increment  double precision,
  amount_increment double precision,
  min_amount       double precision,
  exchange_symbol  text not null,
  ts               timestamptz not null,
  received_at      timestamptz not null,
  primary key (exchange, symbol)
);

-- The sink's Kafka position, written in the same transaction as the rows it covers.
create table if not exists sink_offsets (
  connector   text not null,
  topic       text not null,
  partition   integer not null,
  next_offset bigint not null,
  updated_at  timestamptz not null default now(),
  primary key (connector, topic, partition)
);
