#include "mesh/roles/schema.hpp"

#include <array>

namespace mesh::roles {

std::span<const pg::Migration> migrations() {
  static const std::array<pg::Migration, 1> all{{
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
  }};
  return all;
}

}  // namespace mesh::roles
