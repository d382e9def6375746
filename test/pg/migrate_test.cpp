// migrate() against the throwaway Postgres server, one fresh database per test case.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "mesh/pg/migrate.hpp"
#include "support.hpp"

namespace mesh::pg::test {
namespace {

// Out of order on purpose, and not idempotent: a second run of any of them would fail or leave
// an extra row.
const std::vector<Migration> kMigrations{
    {2, "second step", "INSERT INTO steps VALUES (2)"},
    {1, "create steps", "CREATE TABLE steps (n int NOT NULL); INSERT INTO steps VALUES (1);"},
    {3, "create other", "CREATE TABLE other (x int)"},
};

Task<std::string> applied_versions(Pool& pool) {
  const Result rows = co_await pool.query(
      "SELECT string_agg(version::text || ':' || name, ',' ORDER BY version) "
      "FROM schema_migrations");
  co_return std::string(rows.get(0, 0));
}

TEST_CASE("migrate() run by four pools at once applies each migration exactly once", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  const std::string url = testing::fresh_pg_database();
  std::vector<std::unique_ptr<Pool>> pools;
  for (int i = 0; i < 4; ++i) {
    pools.push_back(std::make_unique<Pool>(io.get_executor(), options_for(url, 2), registry));
  }
  std::vector<Task<void>> runs;
  for (auto& pool : pools) runs.push_back(migrate(*pool, kMigrations));
  for (const auto& outcome : run_all(io, std::move(runs))) CHECK_FALSE(outcome);

  Pool& pool = *pools.front();
  testing::run(io, [&]() -> Task<void> {
    CHECK(co_await applied_versions(pool) == "1:create steps,2:second step,3:create other");
    const Result steps =
        co_await pool.query("SELECT string_agg(n::text, ',' ORDER BY n) FROM steps");
    CHECK(steps.get(0, 0) == "1,2");
    const Result checksum = co_await pool.query(
        "SELECT checksum, applied_at IS NOT NULL FROM schema_migrations WHERE version = 1");
    CHECK(checksum.get(0, 0) == migration_checksum(kMigrations[1].sql));
    CHECK(checksum.get(0, 1) == "t");

    // Running again is a no-op; a later release adds one on top.
    co_await migrate(pool, kMigrations);
    std::vector<Migration> next = kMigrations;
    next.push_back({4, "fourth", "INSERT INTO steps VALUES (4)"});
    co_await migrate(pool, next);
    CHECK(co_await applied_versions(pool) ==
          "1:create steps,2:second step,3:create other,4:fourth");
    // An older release that knows fewer migrations still starts.
    co_await migrate(pool, std::span(kMigrations).first(2));

    // The lock was released every time: another session can take it at once.
    const Result locked = co_await pool.query("SELECT pg_try_advisory_lock(7882833615131338610)");
    CHECK(locked.get(0, 0) == "t");
    for (auto& each : pools) co_await each->close();
  }());
}

TEST_CASE("migrate() refuses an applied migration whose SQL changed", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 2), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await migrate(pool, kMigrations);
    std::vector<Migration> edited = kMigrations;
    edited[0].sql = "INSERT INTO steps VALUES (20)";
    edited.push_back({4, "never applied", "CREATE TABLE never (x int)"});
    const auto failure = co_await failure_of(migrate(pool, edited));
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kMigrationChecksumMismatch);
    CHECK(failure->message().find("migration 2 (second step)") != std::string::npos);
    const Result never = co_await pool.query("SELECT to_regclass('never') IS NULL");
    CHECK(never.get(0, 0) == "t");
    co_await pool.close();
  }());
}

TEST_CASE("a failing migration is rolled back, names itself and releases the lock", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 1), registry);
  testing::run(io, [&]() -> Task<void> {
    const std::vector<Migration> broken{
        {1, "good", "CREATE TABLE good (x int)"},
        {2, "bad", "CREATE TABLE half (x int); SELEC 1;"},
    };
    const auto failure = co_await failure_of(migrate(pool, broken));
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == "42601");
    CHECK(failure->message().find("migration 2 (bad) failed") != std::string::npos);
    CHECK(co_await applied_versions(pool) == "1:good");
    const Result half = co_await pool.query("SELECT to_regclass('half') IS NULL");
    CHECK(half.get(0, 0) == "t");

    // Fixed in the next release: applies on top, through the same one-connection pool.
    const std::vector<Migration> fixed{
        {1, "good", "CREATE TABLE good (x int)"},
        {2, "bad", "CREATE TABLE half (x int);"},
    };
    co_await migrate(pool, fixed);
    CHECK(co_await applied_versions(pool) == "1:good,2:bad");
    co_await pool.close();
  }());
}

TEST_CASE("migrate() rejects duplicate and non-positive versions", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 1), registry);
  const std::vector<Migration> duplicate{{1, "a", "SELECT 1"}, {1, "b", "SELECT 2"}};
  CHECK_THROWS_AS(testing::run(io, migrate(pool, duplicate)), std::invalid_argument);
  const std::vector<Migration> zero{{0, "a", "SELECT 1"}};
  CHECK_THROWS_AS(testing::run(io, migrate(pool, zero)), std::invalid_argument);
  testing::run(io, pool.close());
}

TEST_CASE("migration checksums are stable FNV-1a 64 hex digests", "[pg]") {
  CHECK(migration_checksum("") == "cbf29ce484222325");
  CHECK(migration_checksum("a") == "af63dc4c8601ec8c");
  CHECK(migration_checksum("CREATE TABLE t (x int)") !=
        migration_checksum("CREATE TABLE t (x int) "));
}

}  // namespace
}  // namespace mesh::pg::test
