// Lease::copy_in (COPY ... FROM STDIN) against the throwaway Postgres server.
#include <string>

#include <catch2/catch.hpp>

#include "support.hpp"

namespace mesh::pg::test {
namespace {

TEST_CASE("copy_in: text and CSV rows arrive exactly, NULLs and quoting included", "[pg][copy]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database()), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script(
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)");
    Lease lease = co_await pool.acquire();

    const std::uint64_t text_rows = co_await lease.copy_in(
        "COPY items (id, name, price) FROM STDIN", "1\tapple\t0.00120000\n2\t\\N\t27012.35\n");
    CHECK(text_rows == 2);

    const std::uint64_t csv_rows = co_await lease.copy_in(
        "COPY items (id, name, price) FROM STDIN (FORMAT csv)",
        "3,\"pear, ripe\",1\n4,\"say \"\"hi\"\"\",\n5,\"two\nlines\",2.50\n");
    CHECK(csv_rows == 3);

    const Result rows = co_await lease.query("SELECT id, name, price::text FROM items ORDER BY id");
    REQUIRE(rows.rows() == 5);
    CHECK(rows.get(0, 1) == "apple");
    CHECK(rows.get(0, 2) == "0.00120000");
    CHECK(rows.is_null(1, 1));
    CHECK(rows.get(2, 1) == "pear, ripe");
    CHECK(rows.get(3, 1) == "say \"hi\"");
    CHECK(rows.is_null(3, 2));
    CHECK(rows.get(4, 1) == "two\nlines");
    CHECK(rows.get(4, 2) == "2.50");

    const std::uint64_t none = co_await lease.copy_in("COPY items FROM STDIN", "");
    CHECK(none == 0);
  }());
  CHECK(pool.stats().in_use == 0);
}

TEST_CASE("copy_in: megabytes of rows stream through a full socket buffer", "[pg][copy]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database()), registry);
  constexpr int kRows = 200'000;
  std::string data;
  for (int i = 0; i < kRows; ++i) {
    data += std::to_string(i) + "\tname-" + std::to_string(i) + "-padding-padding-padding\n";
  }
  REQUIRE(data.size() > 4 * 1024 * 1024);  // far beyond any socket buffer
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script("CREATE TABLE items (id int PRIMARY KEY, name text)");
    Lease lease = co_await pool.acquire();
    const std::uint64_t copied = co_await lease.copy_in("COPY items FROM STDIN", data);
    CHECK(copied == kRows);
    const Result count = co_await lease.query(
        "SELECT count(*), sum(id), max(name) FROM items WHERE name LIKE 'name-%'");
    CHECK(count.get(0, 0) == std::to_string(kRows));
    CHECK(count.get(0, 1) == std::to_string(std::int64_t{kRows} * (kRows - 1) / 2));
  }());
}

TEST_CASE("copy_in: refused rows, bad statements and non-COPY statements are errors with codes",
          "[pg][copy]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database()), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script(
        "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL CHECK (qty > 0))");
    Lease lease = co_await pool.acquire();
    const int pid = lease.backend_pid();

    // A value of the wrong type: class 22, and the connection goes on.
    auto bad_value = co_await failure_of(lease.copy_in("COPY items FROM STDIN", "1\t5\n2\tlots\n"));
    REQUIRE(bad_value);
    CHECK(bad_value->sqlstate() == "22P02");
    // A check constraint: class 23.
    auto violation = co_await failure_of(lease.copy_in("COPY items FROM STDIN", "3\t0\n"));
    REQUIRE(violation);
    CHECK(violation->sqlstate() == "23514");
    // A missing table: reported before any data is sent.
    auto missing = co_await failure_of(lease.copy_in("COPY nowhere FROM STDIN", "1\n"));
    REQUIRE(missing);
    CHECK(missing->sqlstate() == "42P01");
    const Result alive = co_await lease.query("SELECT count(*) FROM items");
    CHECK(alive.get(0, 0) == "0");
    CHECK(lease.backend_pid() == pid);

    // Inside a transaction a refused COPY leaves it aborted; rollback() clears it.
    co_await lease.query("BEGIN");
    const std::uint64_t first = co_await lease.copy_in("COPY items FROM STDIN", "10\t1\n");
    CHECK(first == 1);
    auto duplicate = co_await failure_of(lease.copy_in("COPY items FROM STDIN", "10\t1\n"));
    REQUIRE(duplicate);
    CHECK(duplicate->sqlstate() == sqlstate::kUniqueViolation);
    co_await lease.rollback();
    const Result after = co_await lease.query("SELECT count(*) FROM items");
    CHECK(after.get(0, 0) == "0");

    // Not a COPY FROM STDIN: refused, and that connection is dropped.
    auto not_copy = co_await failure_of(lease.copy_in("SELECT 1", ""));
    REQUIRE(not_copy);
    CHECK(not_copy->sqlstate() == sqlstate::kFeatureNotSupported);
  }());
  CHECK(pool.stats().in_use == 0);
}

TEST_CASE("copy_in: a COPY blocked past its deadline fails with 57014", "[pg][copy]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database()), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script("CREATE TABLE items (id int PRIMARY KEY)");
    Lease holder = co_await pool.acquire();
    co_await holder.query("BEGIN");
    co_await holder.query("LOCK TABLE items IN ACCESS EXCLUSIVE MODE");

    Lease blocked = co_await pool.acquire();
    auto timed_out = co_await failure_of(blocked.copy_in("COPY items FROM STDIN", "1\n", 200ms));
    REQUIRE(timed_out);
    CHECK(timed_out->sqlstate() == sqlstate::kQueryCanceled);
    co_await holder.rollback();

    // The pool replaces the closed connection.
    Lease fresh = co_await pool.acquire();
    const std::uint64_t copied = co_await fresh.copy_in("COPY items FROM STDIN", "1\n2\n");
    CHECK(copied == 2);
  }());
}

}  // namespace
}  // namespace mesh::pg::test
