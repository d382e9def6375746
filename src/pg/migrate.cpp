#include "mesh/pg/migrate.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>
#include <map>
#include <stdexcept>
#include <vector>

#include "mesh/core/log.hpp"

namespace mesh::pg {
namespace {

// The advisory lock key every replica agrees on: "meshmigr" in ASCII.
constexpr std::int64_t kLockKey = 0x6d6573686d696772;

std::vector<const Migration*> in_version_order(std::span<const Migration> migrations) {
  std::vector<const Migration*> ordered;
  for (const Migration& migration : migrations) ordered.push_back(&migration);
  std::sort(ordered.begin(), ordered.end(),
            [](const Migration* a, const Migration* b) { return a->version < b->version; });
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    if (ordered[i]->version <= 0) {
      throw std::invalid_argument("migration versions must be positive, got " +
                                  std::to_string(ordered[i]->version));
    }
    if (i > 0 && ordered[i]->version == ordered[i - 1]->version) {
      throw std::invalid_argument("duplicate migration version " +
                                  std::to_string(ordered[i]->version));
    }
  }
  return ordered;
}

std::string label(const Migration& migration) {
  return "migration " + std::to_string(migration.version) + " (" + migration.name + ")";
}

// version -> checksum of what schema_migrations says was applied.
Task<std::map<int, std::string>> applied_migrations(Lease& lease,
                                                    std::chrono::milliseconds timeout) {
  co_await lease.execute_script(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version integer PRIMARY KEY,"
      " name text NOT NULL,"
      " checksum text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())",
      timeout);
  const Result rows =
      co_await lease.query("SELECT version, checksum FROM schema_migrations", {}, timeout);
  std::map<int, std::string> applied;
  for (int row = 0; row < rows.rows(); ++row) {
    const std::string_view text = rows.get(row, 0);
    int version = 0;
    std::from_chars(text.data(), text.data() + text.size(), version);
    applied.emplace(version, std::string(rows.get(row, 1)));
  }
  co_return applied;
}

Task<void> apply(Lease& lease, const Migration& migration, const std::string& checksum,
                 std::chrono::milliseconds timeout) {
  co_await lease.execute_script("BEGIN", timeout);
  co_await lease.execute_script(migration.sql, timeout);
  // A braced Params inside a co_await expression trips a g++ 12 coroutine bug.
  Params row{std::to_string(migration.version), migration.name, checksum};
  co_await lease.query(
      "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", std::move(row),
      timeout);
  co_await lease.execute_script("COMMIT", timeout);
}

Task<void> migrate_locked(Lease& lease, const std::vector<const Migration*>& ordered,
                          std::chrono::milliseconds timeout) {
  const std::map<int, std::string> applied = co_await applied_migrations(lease, timeout);
  // Every edit of an applied migration is refused before anything new runs.
  for (const Migration* migration : ordered) {
    const auto found = applied.find(migration->version);
    const std::string checksum = migration_checksum(migration->sql);
    if (found != applied.end() && found->second != checksum) {
      throw Error(sqlstate::kMigrationChecksumMismatch,
                  label(*migration) + " changed after it was applied: checksum " + checksum +
                      ", schema_migrations has " + found->second);
    }
  }
  auto logger = log::get("pg");
  for (const Migration* migration : ordered) {
    if (applied.contains(migration->version)) continue;
    try {
      co_await apply(lease, *migration, migration_checksum(migration->sql), timeout);
    } catch (const Error& e) {
      throw Error(e.sqlstate(), label(*migration) + " failed: " + e.message());
    }
    logger->info("applied {}", label(*migration));
  }
}

}  // namespace

std::string migration_checksum(std::string_view sql) {
  std::uint64_t hash = 14695981039346656037ull;
  for (const char c : sql) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, hash >>= 4) out[static_cast<std::size_t>(i)] = kHex[hash & 0xf];
  return out;
}

Task<void> migrate(Pool& pool, std::span<const Migration> migrations,
                   std::chrono::milliseconds timeout) {
  const std::vector<const Migration*> ordered = in_version_order(migrations);
  Lease lease = co_await pool.acquire();
  const Params key{std::to_string(kLockKey)};
  co_await lease.query("SELECT pg_advisory_lock($1::bigint)", key, timeout);
  std::exception_ptr failure;
  try {
    co_await migrate_locked(lease, ordered, timeout);
  } catch (...) {
    failure = std::current_exception();
  }
  co_await lease.rollback();
  try {
    co_await lease.query("SELECT pg_advisory_unlock($1::bigint)", key, timeout);
  } catch (const std::exception& e) {
    // Ending the session releases the lock as well.
    log::get("pg")->warn("advisory unlock failed, discarding the connection: {}", e.what());
    lease.discard();
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace mesh::pg
