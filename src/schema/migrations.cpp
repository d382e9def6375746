#include "mesh/schema/migrations.hpp"

#include <array>

namespace mesh::schema {

std::span<const pg::Migration> migrations() {
  static const std::array<pg::Migration, 2> all{{
      {1, "users and tasks", R"sql(
CREATE TABLE users (
  id uuid PRIMARY KEY,
  username text NOT NULL,
  password_hash text NOT NULL,
  role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- Written only by the updater. type, payload and created_at come from tasks.pending and may be
-- missing for a moment when a task's result is stored before its pending record.
CREATE TABLE tasks (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  type text,
  status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  status_rank smallint NOT NULL,
  payload jsonb,
  result jsonb,
  error text,
  attempts integer NOT NULL DEFAULT 0,
  created_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Task ids are UUIDv7, so id order is creation order: keyset pagination walks these indexes.
CREATE INDEX tasks_user_id_idx ON tasks (user_id, id DESC);
CREATE INDEX tasks_user_status_id_idx ON tasks (user_id, status, id DESC);
)sql"},
      {2, "market data", R"sql(
-- Written only by the consumer, from market.trades. Prices and sizes are numeric: exact
-- decimals that keep the scale the exchange sent ("0.00120000" stays "0.00120000").
CREATE TABLE trades (
  product text NOT NULL,
  trade_id bigint NOT NULL,
  price numeric NOT NULL,
  size numeric NOT NULL,
  side text NOT NULL CHECK (side IN ('buy', 'sell')),
  time timestamptz NOT NULL,
  sequence bigint NOT NULL,
  PRIMARY KEY (product, trade_id)
);

-- One-minute OHLCV candles, built only from trades the consumer newly inserted, so a
-- redelivered trade never counts twice. open_* and close_* name the trade that set open and
-- close: the earliest and latest by (time, trade_id), whatever order trades arrive in.
CREATE TABLE candles_1m (
  product text NOT NULL,
  start timestamptz NOT NULL,
  open numeric NOT NULL,
  high numeric NOT NULL,
  low numeric NOT NULL,
  close numeric NOT NULL,
  volume numeric NOT NULL,
  trades integer NOT NULL,
  open_time timestamptz NOT NULL,
  open_trade_id bigint NOT NULL,
  close_time timestamptz NOT NULL,
  close_trade_id bigint NOT NULL,
  PRIMARY KEY (product, start)
);

-- The last trade of each product (by time, trade_id): GET /v1/markets.
CREATE TABLE markets (
  product text PRIMARY KEY,
  last_price numeric NOT NULL,
  last_time timestamptz NOT NULL,
  last_trade_id bigint NOT NULL
);
)sql"},
  }};
  return all;
}

}  // namespace mesh::schema
