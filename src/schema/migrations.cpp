#include "mesh/schema/migrations.hpp"

#include <array>

namespace mesh::schema {

std::span<const pg::Migration> migrations() {
  static const std::array<pg::Migration, 3> all{{
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
      {3, "profiles, sessions and messages", R"sql(
-- Profiles group users (many to many) around a watchlist of market products. A streaming
-- session is opened for one (user, profile) pair by a member.
CREATE TABLE profiles (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  watchlist text[] NOT NULL DEFAULT '{}',
  created_by uuid NOT NULL REFERENCES users (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE profile_members (
  profile_id uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (profile_id, user_id)
);
CREATE INDEX profile_members_user_idx ON profile_members (user_id, profile_id);

-- The profile a task was submitted under (optional): its status changes go to that profile's
-- streaming sessions.
ALTER TABLE tasks ADD COLUMN profile_id uuid;
CREATE INDEX tasks_profile_idx ON tasks (profile_id) WHERE profile_id IS NOT NULL;

-- Written only by the consumer, from the messages topic. Fields are stored exactly as published:
-- ts, sender and sent_from_ip as the text sent, messageAttributes as json (not jsonb), which keeps
-- the text byte for byte. A deleted message keeps its row (deleted_at set) so a redelivered
-- record cannot bring it back.
CREATE TABLE messages (
  id uuid PRIMARY KEY,
  publisher_id uuid NOT NULL,
  ts text NOT NULL,
  sender text NOT NULL,
  message_attributes json NOT NULL,
  sent_from_ip text NOT NULL,
  priority smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),
  published_at timestamptz NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
-- Message ids are UUIDv7: id order is publication order, for keyset pagination.
CREATE INDEX messages_sender_idx ON messages (sender, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX messages_priority_idx ON messages (priority, id DESC) WHERE deleted_at IS NULL;
)sql"},
  }};
  return all;
}

}  // namespace mesh::schema
