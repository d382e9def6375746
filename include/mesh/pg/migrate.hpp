#pragma once
// Versioned schema migrations, safe when several replicas start at once: one session holds an
// advisory lock while it applies what is missing; the others wait, then find nothing to do.
#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "mesh/core/asio.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::pg {

struct Migration {
  int version;       // positive, unique; applied in ascending order
  std::string name;  // for people reading schema_migrations
  std::string sql;   // one or more statements, run inside one transaction
};

// The stable fingerprint recorded for a migration: FNV-1a 64 of its SQL, 16 hex digits.
std::string migration_checksum(std::string_view sql);

// Creates schema_migrations if missing, checks the checksum of every migration already applied
// (Error MS001 on a mismatch: an applied migration was edited), then applies each missing one
// in its own transaction and records it. `timeout` bounds the wait for the lock and each
// migration. Versions applied but absent from `migrations` (a newer release ran) are left be.
// Throws std::invalid_argument on duplicate or non-positive versions.
Task<void> migrate(Pool& pool, std::span<const Migration> migrations,
                   std::chrono::milliseconds timeout = std::chrono::minutes(5));

}  // namespace mesh::pg
