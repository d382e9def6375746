// The pool against the throwaway Postgres server, one fresh database per test case.
#include <atomic>
#include <future>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "mesh/metrics/metrics.hpp"
#include "support.hpp"

namespace mesh::pg::test {
namespace {

TEST_CASE("queries take parameters and NULLs and return typed access to cells", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database()), registry);
  CHECK_FALSE(pool.healthy());
  testing::run(io, [&]() -> Task<void> {
    co_await pool.start();
    CHECK(pool.healthy());
    co_await pool.execute_script("CREATE TABLE items (id int PRIMARY KEY, name text, note text)");
    const Params two_rows{"1", "apple", std::nullopt, "2", "pear", "ripe"};
    const Result inserted =
        co_await pool.query("INSERT INTO items VALUES ($1, $2, $3), ($4, $5, $6)", two_rows);
    CHECK(inserted.affected_rows() == 2);

    const Params from{"1"};
    const Result rows =
        co_await pool.query("SELECT id, name, note FROM items WHERE id >= $1 ORDER BY id", from);
    REQUIRE(rows.rows() == 2);
    REQUIRE(rows.columns() == 3);
    CHECK(rows.get(0, 0) == "1");
    CHECK(rows.get(0, "name") == "apple");
    CHECK(rows.is_null(0, 2));
    CHECK(rows.get(0, 2).empty());
    CHECK_FALSE(rows.get_optional(0, "note").has_value());
    CHECK(rows.get_optional(1, "note") == std::optional<std::string_view>("ripe"));
    CHECK(rows.column("NOTE") == 2);  // unquoted names fold to lower case, as in SQL
    CHECK_THROWS_AS(rows.get(2, 0), std::out_of_range);
    CHECK_THROWS_AS(rows.column("missing"), std::out_of_range);

    const Params null_param{std::nullopt};
    const Result is_null = co_await pool.query("SELECT $1::text IS NULL", null_param);
    CHECK(is_null.get(0, 0) == "t");

    const Result updated = co_await pool.query("UPDATE items SET note = 'x' WHERE id > 100");
    CHECK(updated.affected_rows() == 0);
    CHECK(updated.rows() == 0);

    const Result last = co_await pool.execute_script("SELECT 1; SELECT 2 AS two");
    CHECK(last.get(0, "two") == "2");

    // Hot statements are prepared once per connection and then reused.
    Lease lease = co_await pool.acquire();
    for (int i = 0; i < 3; ++i) {
      const Params value{std::to_string(i)};
      const Result doubled = co_await lease.query("SELECT $1::int * 2", value);
      CHECK(doubled.get(0, 0) == std::to_string(i * 2));
    }
    const Params text{"SELECT $1::int * 2"};
    const Result prepared = co_await lease.query(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", text);
    CHECK(prepared.get(0, 0) == "1");
  }());

  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle >= 1);
  CHECK(sample(registry, "mesh_pg_query_seconds") >= 9);
  CHECK(sample(registry, "mesh_pg_pool_connections", "in_use") == 0);
  CHECK(sample(registry, "mesh_pg_pool_connections", "idle") ==
        static_cast<double>(pool.stats().idle));
  const std::string text = metrics::render(registry);
  CHECK(text.find("mesh_pg_pool_connections{state=\"idle\"}") != std::string::npos);
  CHECK(text.find("mesh_pg_pool_waiters 0") != std::string::npos);
  testing::run(io, pool.close());
  CHECK(pool.stats().idle == 0);
}

TEST_CASE("a unique violation surfaces SQLSTATE 23505 and the pool stays usable", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 2), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script("CREATE TABLE users (email text PRIMARY KEY)");
    const Params email{"a@example.com"};
    co_await pool.query("INSERT INTO users VALUES ($1)", email);
    const auto failure = co_await failure_of(pool.query("INSERT INTO users VALUES ($1)", email));
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kUniqueViolation);
    CHECK_FALSE(failure->connection_error());
    CHECK(failure->message().find("users_pkey") != std::string::npos);

    const auto syntax = co_await failure_of(pool.query("SELEC 1"));
    REQUIRE(syntax.has_value());
    CHECK(syntax->sqlstate() == "42601");

    const Result count = co_await pool.query("SELECT count(*) FROM users");
    CHECK(count.get(0, 0) == "1");
    co_await pool.close();
  }());
  CHECK(sample(registry, "mesh_pg_errors_total", "23505") == 1);
  CHECK(sample(registry, "mesh_pg_errors_total", "42601") == 1);
}

TEST_CASE("200 concurrent queries share a pool of 4", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  auto options = options_for(testing::fresh_pg_database(), 4);
  options.acquire_timeout = 20s;
  Pool pool(io.get_executor(), options, registry);
  testing::run(io, pool.start());

  std::vector<std::string> answers(200);
  std::set<std::string> backends;
  std::size_t most_in_use = 0;
  // A coroutine keeps its parameters, not a lambda's captures: hence no captures here.
  const auto one = [](Pool& pool, int i, std::vector<std::string>& answers,
                      std::set<std::string>& backends, std::size_t& most_in_use) -> Task<void> {
    const Params value{std::to_string(i)};
    const Result result = co_await pool.query("SELECT $1::int + 1, pg_backend_pid()", value);
    answers[i] = result.get(0, 0);
    backends.insert(std::string(result.get(0, 1)));
    most_in_use = std::max(most_in_use, pool.stats().in_use);
  };
  std::vector<Task<void>> tasks;
  for (int i = 0; i < 200; ++i) tasks.push_back(one(pool, i, answers, backends, most_in_use));
  for (const auto& outcome : run_all(io, std::move(tasks))) CHECK_FALSE(outcome);
  for (int i = 0; i < 200; ++i) CHECK(answers[i] == std::to_string(i + 1));
  CHECK(backends.size() <= 4);
  CHECK(most_in_use <= 4);
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().waiters == 0);
  CHECK(pool.stats().idle <= 4);
  CHECK(sample(registry, "mesh_pg_query_seconds") == 200);
  testing::run(io, pool.close());
}

TEST_CASE("the pool is safe on an io_context run by several threads", "[pg]") {
  prometheus::Registry registry;
  asio::thread_pool threads(2);
  auto options = options_for(testing::fresh_pg_database(), 3);
  options.acquire_timeout = 20s;
  Pool pool(threads.get_executor(), options, registry);

  std::atomic<int> correct{0};
  std::atomic<int> failed{0};
  std::atomic<int> finished{0};
  std::promise<void> all_done;
  constexpr int kQueries = 200;
  for (int i = 0; i < kQueries; ++i) {
    asio::co_spawn(
        threads,
        [&pool, &correct, i]() -> Task<void> {
          const Params value{std::to_string(i)};
          const Result result = co_await pool.query("SELECT $1::int * 3", value);
          if (result.get(0, 0) == std::to_string(i * 3)) ++correct;
        },
        [&](std::exception_ptr e) {
          if (e) ++failed;
          if (++finished == kQueries) all_done.set_value();
        });
  }
  REQUIRE(all_done.get_future().wait_for(30s) == std::future_status::ready);
  CHECK(correct == kQueries);
  CHECK(failed == 0);
  asio::co_spawn(threads, pool.close(), asio::use_future).get();
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle == 0);
}

TEST_CASE("no slot is lost when acquires time out amid traffic on several threads", "[pg]") {
  prometheus::Registry registry;
  asio::thread_pool threads(2);
  auto options = options_for(testing::fresh_pg_database(), 2);
  options.acquire_timeout = 1ms;
  Pool pool(threads.get_executor(), options, registry);

  std::atomic<int> succeeded{0};
  std::atomic<int> timed_out{0};
  std::atomic<int> finished{0};
  std::promise<void> all_done;
  constexpr int kQueries = 300;
  for (int i = 0; i < kQueries; ++i) {
    asio::co_spawn(
        threads,
        [&pool, &succeeded, &timed_out]() -> Task<void> {
          const auto failure = co_await failure_of(pool.query("SELECT pg_sleep(0.001)"));
          if (!failure) {
            ++succeeded;
          } else if (failure->sqlstate() == sqlstate::kAcquireTimeout) {
            ++timed_out;
          }
        },
        [&](std::exception_ptr) {
          if (++finished == kQueries) all_done.set_value();
        });
  }
  REQUIRE(all_done.get_future().wait_for(30s) == std::future_status::ready);
  CHECK(succeeded + timed_out == kQueries);
  CHECK(succeeded > 0);
  CHECK(timed_out > 0);
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().waiters == 0);

  // Both slots are still there: two leases at once.
  const auto both = [](Pool& pool) -> Task<int> {
    Lease first = co_await pool.acquire();
    Lease second = co_await pool.acquire();
    co_return first.backend_pid() != second.backend_pid() ? 2 : 1;
  };
  auto future = asio::co_spawn(threads, both(pool), asio::use_future);
  CHECK(future.get() == 2);
  asio::co_spawn(threads, pool.close(), asio::use_future).get();
}

TEST_CASE("acquire gives up after acquire_timeout when every connection is leased", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  auto options = options_for(testing::fresh_pg_database(), 1);
  options.acquire_timeout = 150ms;
  Pool pool(io.get_executor(), options, registry);
  testing::run(io, [&]() -> Task<void> {
    std::optional<Lease> held = co_await pool.acquire();
    const auto started = Clock::now();
    const auto failure = co_await failure_of(pool.acquire());
    const auto waited = Clock::now() - started;
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kAcquireTimeout);
    CHECK(waited >= 150ms);
    CHECK(waited < 2s);
    CHECK(pool.stats().waiters == 0);
    held.reset();
    const Result one = co_await pool.query("SELECT 1");
    CHECK(one.get(0, 0) == "1");
    co_await pool.close();
  }());
  CHECK(sample(registry, "mesh_pg_errors_total", "53000") == 1);
}

TEST_CASE("acquire rejects at once when max_waiters callers already wait", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  auto options = options_for(testing::fresh_pg_database(), 1);
  options.max_waiters = 1;
  options.acquire_timeout = 10s;
  Pool pool(io.get_executor(), options, registry);
  testing::run(io, [&]() -> Task<void> {
    std::optional<Lease> held = co_await pool.acquire();
    bool waiter_done = false;
    asio::co_spawn(
        io,
        [&]() -> Task<void> {
          Lease lease = co_await pool.acquire();
          co_await lease.query("SELECT 1");
        },
        [&](std::exception_ptr e) {
          CHECK_FALSE(e);
          waiter_done = true;
        });
    co_await until([&] { return pool.stats().waiters == 1; });
    CHECK(sample(registry, "mesh_pg_pool_waiters") == 1);

    const auto started = Clock::now();
    const auto failure = co_await failure_of(pool.acquire());
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kPoolExhausted);
    CHECK(Clock::now() - started < 1s);

    held.reset();
    co_await until([&] { return waiter_done; });
    CHECK(pool.stats().waiters == 0);
    co_await pool.close();
  }());
  CHECK(sample(registry, "mesh_pg_errors_total", "53300") == 1);
}

TEST_CASE("a query past its timeout fails with 57014 and the pool recovers", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  auto options = options_for(testing::fresh_pg_database(), 1);
  options.query_timeout = 200ms;
  Pool pool(io.get_executor(), options, registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.start();
    const auto started = Clock::now();
    const auto failure = co_await failure_of(pool.query("SELECT pg_sleep(5)"));
    const auto waited = Clock::now() - started;
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kQueryCanceled);
    CHECK(waited >= 200ms);
    CHECK(waited < 2s);
    CHECK(pool.stats().idle == 0);  // the timed-out connection was closed, not returned

    const Result one = co_await pool.query("SELECT 1");
    CHECK(one.get(0, 0) == "1");
    CHECK(pool.healthy());

    // A timeout of its own, on a lease.
    Lease lease = co_await pool.acquire();
    const auto own = co_await failure_of(lease.query("SELECT pg_sleep(5)", {}, 50ms));
    REQUIRE(own.has_value());
    CHECK(own->sqlstate() == sqlstate::kQueryCanceled);
    const auto after = co_await failure_of(lease.query("SELECT 1"));
    REQUIRE(after.has_value());
    CHECK(after->connection_error());
    co_await pool.close(0ms);
  }());
  CHECK(sample(registry, "mesh_pg_errors_total", "57014") == 2);
}

TEST_CASE("a backend killed by the server fails its query; the next one reconnects", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  const std::string url = testing::fresh_pg_database();
  Pool pool(io.get_executor(), options_for(url, 1), registry);
  Pool admin(io.get_executor(), options_for(url, 1), registry);
  testing::run(io, [&]() -> Task<void> {
    std::string killed;
    {
      Lease lease = co_await pool.acquire();
      killed = std::to_string(lease.backend_pid());
      const Params pid{killed};
      const Result terminated = co_await admin.query("SELECT pg_terminate_backend($1)", pid);
      CHECK(terminated.get(0, 0) == "t");
      const auto failure = co_await failure_of(lease.query("SELECT 1"));
      REQUIRE(failure.has_value());
      CHECK(failure->connection_error());
      CHECK(failure->sqlstate() == sqlstate::kConnectionFailure);
    }
    const Result fresh = co_await pool.query("SELECT pg_backend_pid()");
    CHECK(fresh.get(0, 0) != killed);
    CHECK(pool.healthy());

    // A connection killed while idle in the pool is noticed before it is handed out.
    const std::string idle(fresh.get(0, 0));
    const Params pid{idle};
    co_await admin.query("SELECT pg_terminate_backend($1)", pid);
    const auto deadline = Clock::now() + 10s;
    asio::steady_timer timer(io);
    for (;;) {
      const Result alive =
          co_await admin.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid);
      if (alive.get(0, 0) == "0") break;
      REQUIRE(Clock::now() < deadline);
      timer.expires_after(2ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    const Result replaced = co_await pool.query("SELECT pg_backend_pid()");
    CHECK(replaced.get(0, 0) != idle);
    co_await pool.close();
    co_await admin.close();
  }());
  CHECK(sample(registry, "mesh_pg_errors_total", "08006") == 1);
}

TEST_CASE("transaction() commits, or rolls back when its body throws", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 2), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.execute_script("CREATE TABLE ledger (amount int NOT NULL)");
    bool thrown = false;
    try {
      co_await pool.transaction([](Lease& lease) -> Task<void> {
        co_await lease.query("INSERT INTO ledger VALUES (10)");
        throw std::runtime_error("the body failed");
      });
    } catch (const std::runtime_error& e) {
      thrown = std::string(e.what()) == "the body failed";
    }
    CHECK(thrown);
    CHECK((co_await pool.query("SELECT count(*) FROM ledger")).get(0, 0) == "0");

    const auto failure = co_await failure_of(pool.transaction([](Lease& lease) -> Task<void> {
      co_await lease.query("INSERT INTO ledger VALUES (20)");
      co_await lease.query("INSERT INTO ledger VALUES (NULL)");
    }));
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == "23502");
    CHECK((co_await pool.query("SELECT count(*) FROM ledger")).get(0, 0) == "0");

    const int value = co_await pool.transaction([](Lease& lease) -> Task<int> {
      co_await lease.query("INSERT INTO ledger VALUES (30)");
      const Result sum = co_await lease.query("SELECT sum(amount) FROM ledger");
      co_return std::stoi(std::string(sum.get(0, 0)));
    });
    CHECK(value == 30);
    CHECK((co_await pool.query("SELECT count(*) FROM ledger")).get(0, 0) == "1");

    // A lease dropped inside a transaction does not hand that transaction to the next user.
    {
      Lease lease = co_await pool.acquire();
      co_await lease.query("BEGIN");
      co_await lease.query("INSERT INTO ledger VALUES (40)");
    }
    for (int i = 0; i < 4; ++i) {
      const Result status = co_await pool.query("SELECT count(*) FROM ledger");
      CHECK(status.get(0, 0) == "1");
    }
    co_await pool.close();
  }());
}

TEST_CASE("close() waits for leases, then refuses new ones", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 2), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.start();
    std::optional<Lease> held = co_await pool.acquire();
    bool closed = false;
    asio::co_spawn(io, pool.close(), [&](std::exception_ptr e) {
      CHECK_FALSE(e);
      closed = true;
    });
    co_await until([&] { return !pool.healthy(); });
    CHECK_FALSE(closed);  // one slot is still leased
    const Result during = co_await held->query("SELECT 1");
    CHECK(during.get(0, 0) == "1");
    CHECK_FALSE(closed);
    held.reset();
    co_await until([&] { return closed; });
    CHECK(pool.stats().idle == 0);
    CHECK(pool.stats().in_use == 0);
    const auto failure = co_await failure_of(pool.acquire());
    REQUIRE(failure.has_value());
    CHECK(failure->sqlstate() == sqlstate::kPoolClosed);
  }());
}

TEST_CASE("close() stops waiting after its drain timeout", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  Pool pool(io.get_executor(), options_for(testing::fresh_pg_database(), 2), registry);
  testing::run(io, [&]() -> Task<void> {
    std::optional<Lease> held = co_await pool.acquire();
    const auto started = Clock::now();
    co_await pool.close(100ms);
    CHECK(Clock::now() - started >= 100ms);
    CHECK(pool.stats().in_use == 1);
    held.reset();  // returns to a closed pool: the connection closes
    CHECK(pool.stats().in_use == 0);
    CHECK(pool.stats().idle == 0);
  }());
}

int closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
  return probe.local_endpoint().port();
}

TEST_CASE("start() fails with a clear error when the server is unreachable", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;

  SECTION("a closed port is refused at once") {
    const std::string target = "127.0.0.1:" + std::to_string(closed_port());
    Pool pool(io.get_executor(), options_for("postgresql://mesh@" + target + "/postgres"),
              registry);
    testing::run(io, [&]() -> Task<void> {
      const auto started = Clock::now();
      const auto failure = co_await failure_of(pool.start());
      REQUIRE(failure.has_value());
      CHECK(failure->sqlstate() == sqlstate::kUnableToConnect);
      CHECK(failure->message().find(target) != std::string::npos);
      CHECK(failure->message().find("refused") != std::string::npos);
      CHECK(Clock::now() - started < 2s);
      CHECK_FALSE(pool.healthy());
      co_await pool.close();
    }());
  }

  SECTION("a server that never answers times out after connect_timeout") {
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    const std::string target = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
    auto options = options_for("postgresql://mesh:secret@" + target + "/postgres");
    options.connect_timeout = 300ms;
    Pool pool(io.get_executor(), options, registry);
    testing::run(io, [&]() -> Task<void> {
      const auto started = Clock::now();
      const auto failure = co_await failure_of(pool.start());
      const auto waited = Clock::now() - started;
      REQUIRE(failure.has_value());
      CHECK(failure->sqlstate() == sqlstate::kUnableToConnect);
      CHECK(failure->message().find("timed out after 300 ms") != std::string::npos);
      CHECK(failure->message().find("secret") == std::string::npos);
      CHECK(waited >= 300ms);
      CHECK(waited < 2s);
      co_await pool.close();
    }());
  }
  CHECK(sample(registry, "mesh_pg_errors_total", "08001") >= 1);
}

TEST_CASE("a host name is resolved without blocking and every address is tried", "[pg]") {
  asio::io_context io;
  prometheus::Registry registry;
  // The server listens on 127.0.0.1 only; localhost may resolve to ::1 first.
  std::string url = testing::fresh_pg_database();
  const auto at = url.find("127.0.0.1");
  REQUIRE(at != std::string::npos);
  url.replace(at, std::string_view("127.0.0.1").size(), "localhost");
  Pool pool(io.get_executor(), options_for(url, 1), registry);
  testing::run(io, [&]() -> Task<void> {
    co_await pool.start();
    const Result one = co_await pool.query("SELECT 1");
    CHECK(one.get(0, 0) == "1");
    co_await pool.close();
  }());
}

}  // namespace
}  // namespace mesh::pg::test
