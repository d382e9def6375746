#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "harness.hpp"

namespace mesh::redis::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Options throwaway_server() { return parse_url(testing::redis_url()); }

template <class Future>
bool ready_within(Future& future, std::chrono::milliseconds timeout) {
  return future.wait_for(timeout) == std::future_status::ready;
}

TEST_CASE("commands round-trip binary-safe keys and values", "[redis]") {
  Harness h;
  auto client = h.connected_client();
  REQUIRE(client->connected());
  CHECK(h.metric("mesh_redis_connected") == 1);

  const std::string key = unique_key(std::string("bin\0key", 7));
  const std::string value("a\0b\r\n\xff$*", 8);
  const auto set = h.command(*client, {"SET", key, value});
  REQUIRE(set.ok());
  CHECK(set.reply.kind == Reply::Kind::status);
  CHECK(set.reply.string == "OK");
  const auto get = h.command(*client, {"GET", key});
  REQUIRE(get.ok());
  CHECK(get.reply.kind == Reply::Kind::string);
  CHECK(get.reply.string == value);

  SECTION("a 1 MiB value with every byte value") {
    std::string big(1 << 20, '\0');
    std::mt19937 random(42);
    for (auto& byte : big) byte = static_cast<char>(random());
    const std::string big_key = unique_key("big");
    REQUIRE(h.command(*client, {"SET", big_key, big}).ok());
    const auto strlen = h.command(*client, {"STRLEN", big_key});
    CHECK(strlen.reply.integer == (1 << 20));
    const auto back = h.command(*client, {"GET", big_key});
    REQUIRE(back.ok());
    CHECK(back.reply.string.size() == big.size());
    CHECK(back.reply.string == big);
  }

  SECTION("integers, expiry, deletion and nil") {
    const std::string counter = unique_key("counter");
    const auto incr = h.command(*client, {"INCR", counter});
    CHECK(incr.reply.kind == Reply::Kind::integer);
    CHECK(incr.reply.integer == 1);
    CHECK(h.command(*client, {"INCRBY", counter, "41"}).reply.integer == 42);
    CHECK(h.command(*client, {"EXPIRE", key, "100"}).reply.integer == 1);
    const auto ttl = h.command(*client, {"TTL", key}).reply.integer;
    CHECK(ttl > 0);
    CHECK(ttl <= 100);
    CHECK(h.command(*client, {"DEL", key, counter}).reply.integer == 2);
    const auto missing = h.command(*client, {"GET", key});
    CHECK(missing.ok());
    CHECK(missing.reply.is_nil());
  }

  SECTION("arrays, nested nils included") {
    const std::string list = unique_key("list");
    CHECK(h.command(*client, {"RPUSH", list, "a", std::string("\0", 1), "c"}).reply.integer == 3);
    const auto range = h.command(*client, {"LRANGE", list, "0", "-1"});
    REQUIRE(range.reply.kind == Reply::Kind::array);
    REQUIRE(range.reply.elements.size() == 3);
    CHECK(range.reply.elements[1].string == std::string("\0", 1));
    const auto mget = h.command(*client, {"MGET", key, unique_key("absent")});
    REQUIRE(mget.reply.elements.size() == 2);
    CHECK(mget.reply.elements[0].string == value);
    CHECK(mget.reply.elements[1].is_nil());
  }

  h.run(client->close());
  CHECK_FALSE(client->connected());
  CHECK(h.metric("mesh_redis_connected") == 0);
  CHECK(h.command(*client, {"PING"}).error == Errc::not_connected);
}

TEST_CASE("10,000 concurrent commands from many coroutines each get their own reply", "[redis]") {
  Harness h;
  Options options = throwaway_server();
  // The point is matching, not latency: 2 shared cores under sanitizers are slow.
  options.command_timeout = 30s;
  options.max_pending = 20000;
  auto client = h.connected_client(options);

  constexpr int n = 10000;
  const std::string prefix = unique_key("concurrent");
  std::atomic<int> remaining{n};
  std::atomic<int> mismatches{0};
  std::atomic<int> failures{0};
  std::promise<void> all_done;
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(
        h.io,
        [&, i]() -> Task<void> {
          const std::string payload = "payload-" + std::to_string(i);
          std::vector<std::string> echo{"ECHO", payload};
          const Result echoed = co_await client->command(std::move(echo));
          const std::string key = prefix + ":" + std::to_string(i);
          std::vector<std::string> set{"SET", key, payload};
          const Result stored = co_await client->command(std::move(set));
          std::vector<std::string> get{"GET", key};
          const Result fetched = co_await client->command(std::move(get));
          if (!echoed.ok() || !stored.ok() || !fetched.ok()) ++failures;
          if (echoed.reply.string != payload || fetched.reply.string != payload) ++mismatches;
          if (--remaining == 0) all_done.set_value();
        },
        asio::detached);
  }
  auto done = all_done.get_future();
  REQUIRE(ready_within(done, 60s));
  CHECK(failures == 0);
  CHECK(mismatches == 0);
  CHECK(h.metric("mesh_redis_commands_total", "ok") >= 3 * n);
  CHECK(h.metric("mesh_redis_command_seconds") >= 3 * n);
  h.run(client->close());
}

TEST_CASE("Redis error replies are replies, not transport errors", "[redis]") {
  Harness h;
  auto client = h.connected_client();
  const std::string key = unique_key("string");
  REQUIRE(h.command(*client, {"SET", key, "x"}).ok());

  const auto wrong_type = h.command(*client, {"LPUSH", key, "y"});
  CHECK_FALSE(wrong_type.error);
  CHECK(wrong_type.reply.is_error());
  CHECK_FALSE(wrong_type.ok());
  CHECK(wrong_type.reply.string.starts_with("WRONGTYPE"));

  const auto unknown = h.command(*client, {"NO-SUCH-COMMAND"});
  CHECK_FALSE(unknown.error);
  CHECK(unknown.reply.string.starts_with("ERR unknown command"));

  CHECK(h.metric("mesh_redis_commands_total", "error") == 2);
  CHECK(h.command(*client, {"PING"}).reply.string == "PONG");
  h.run(client->close());
}

TEST_CASE("commands that would break the shared connection are rejected", "[redis]") {
  Harness h;
  auto client = h.connected_client();
  CHECK(h.command(*client, {}).error == Errc::invalid_command);
  CHECK(h.command(*client, {"subscribe", "channel"}).error == Errc::invalid_command);
  CHECK(h.command(*client, {"MONITOR"}).error == Errc::invalid_command);
  CHECK(h.command(*client, {"SELECT", "1"}).error == Errc::invalid_command);
  CHECK(h.metric("mesh_redis_commands_total", "rejected") == 4);
  CHECK(h.command(*client, {"PING"}).ok());
  h.run(client->close());
}

TEST_CASE("a command past its deadline fails promptly and a stalled connection is replaced",
          "[redis]") {
  Harness h;
  Options options = throwaway_server();
  options.command_timeout = 150ms;
  auto client = h.connected_client(options);

  // BLPOP on an empty list holds the reply (and the pipeline behind it) for 10 s.
  const auto started = Clock::now();
  const auto blocked = h.command(*client, {"BLPOP", unique_key("empty"), "10"});
  const auto elapsed = Clock::now() - started;
  CHECK(blocked.error == Errc::timeout);
  CHECK(blocked.reply.is_nil());
  CHECK(elapsed >= 150ms);
  CHECK(elapsed < 1s);
  CHECK(h.metric("mesh_redis_commands_total", "timeout") == 1);

  // Nothing arrived during the timeout: the connection is dropped and re-established.
  CHECK(h.metric("mesh_redis_disconnects_total") == 1);
  REQUIRE(testing::wait_until([&] { return h.command(*client, {"PING"}).ok(); }, 10s));
  CHECK(client->connected());
  CHECK(h.metric("mesh_redis_connected") == 1);
  const std::string key = unique_key("after");
  CHECK(h.command(*client, {"SET", key, "v"}).ok());
  CHECK(h.command(*client, {"GET", key}).reply.string == "v");
  h.run(client->close());
}

TEST_CASE("a late reply after a timeout is dropped and the pipeline stays in step", "[redis]") {
  // One io thread: commands spawned in order reach the strand in order.
  Harness h(1);
  Options options = throwaway_server();
  options.command_timeout = 1s;
  auto client = h.connected_client(options);
  auto helper = h.connected_client();
  const std::string name = "late-reply-" + unique_key("client").substr(11);
  const std::string first = unique_key("first");
  const std::string second = unique_key("second");
  REQUIRE(h.command(*client, {"CLIENT", "SETNAME", name}).ok());

  auto x = asio::co_spawn(h.io, client->command({"BLPOP", first, "10"}), asio::use_future);
  auto a = asio::co_spawn(h.io, client->command({"BLPOP", second, "10"}), asio::use_future);
  // Once the server blocks on the first, the second was sent right behind it.
  REQUIRE(testing::wait_until([&] { return server_shows(h, *helper, name, "blpop"); }));
  // The first reply arrives while the second waits: the connection is alive, not stalled.
  REQUIRE(h.command(*helper, {"RPUSH", first, "x"}).ok());
  REQUIRE(ready_within(x, 5s));
  const Result x_result = x.get();
  REQUIRE(x_result.ok());
  CHECK(x_result.reply.elements.at(1).string == "x");

  REQUIRE(ready_within(a, 5s));
  CHECK(a.get().error == Errc::timeout);
  CHECK(client->connected());
  CHECK(h.metric("mesh_redis_disconnects_total") == 0);

  // The server now answers the abandoned BLPOP; the next command must get its own reply.
  REQUIRE(h.command(*helper, {"RPUSH", second, "late"}).ok());
  const auto echoed = h.command(*client, {"ECHO", "in step"});
  REQUIRE(echoed.ok());
  CHECK(echoed.reply.string == "in step");
  CHECK(h.command(*helper, {"LLEN", second}).reply.integer == 0);
  CHECK(h.metric("mesh_redis_disconnects_total") == 0);
  h.run(client->close());
  h.run(helper->close());
}

TEST_CASE("commands beyond max_pending are rejected at once", "[redis]") {
  Harness h;
  Options options = throwaway_server();
  options.max_pending = 1;
  options.command_timeout = 10s;
  auto client = h.connected_client(options);
  auto helper = h.connected_client();
  const std::string list = unique_key("gate");

  const std::string name = "gated-" + unique_key("client").substr(11);
  REQUIRE(h.command(*client, {"CLIENT", "SETNAME", name}).ok());

  auto blocked = asio::co_spawn(h.io, client->command({"BLPOP", list, "10"}), asio::use_future);
  REQUIRE(testing::wait_until([&] { return server_shows(h, *helper, name, "blpop"); }));
  const auto started = Clock::now();
  CHECK(h.command(*client, {"PING"}).error == Errc::too_many_pending);
  CHECK(Clock::now() - started < 100ms);
  CHECK(h.metric("mesh_redis_commands_total", "rejected") == 1);

  REQUIRE(h.command(*helper, {"RPUSH", list, "go"}).ok());
  REQUIRE(ready_within(blocked, 5s));
  CHECK(blocked.get().reply.elements.at(1).string == "go");
  CHECK(h.command(*client, {"PING"}).ok());
  h.run(client->close());
  h.run(helper->close());
}

TEST_CASE("without a connection commands fail fast and connect() fails in time", "[redis]") {
  Harness h;

  SECTION("never connected") {
    auto client = h.client(throwaway_server());
    CHECK_FALSE(client->connected());
    const auto started = Clock::now();
    CHECK(h.command(*client, {"PING"}).error == Errc::not_connected);
    CHECK(Clock::now() - started < 100ms);
    CHECK(h.metric("mesh_redis_commands_total", "disconnected") == 1);
  }

  SECTION("refused") {
    asio::io_context io;
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    Options options;
    options.port = probe.local_endpoint().port();
    probe.close();
    auto client = h.client(options);
    CHECK_THROWS_WITH(h.run(client->connect()), Catch::Contains("cannot connect to 127.0.0.1"));
    CHECK_FALSE(client->connected());
  }

  SECTION("a server that accepts but never answers") {
    asio::io_context io;
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    Options options;
    options.port = silent.local_endpoint().port();
    options.connect_timeout = 200ms;
    auto client = h.client(options);
    const auto started = Clock::now();
    CHECK_THROWS_WITH(h.run(client->connect()), Catch::Contains("timed out after 200 ms"));
    const auto elapsed = Clock::now() - started;
    CHECK(elapsed >= 200ms);
    CHECK(elapsed < 2s);
  }

  SECTION("a host name is resolved without blocking, or reported") {
    Options options = throwaway_server();
    options.host = "localhost";
    auto client = h.client(options);
    h.run(client->connect());
    CHECK(h.command(*client, {"PING"}).ok());
    h.run(client->close());

    options.host = "no-such-host.invalid";
    auto lost = h.client(options);
    CHECK_THROWS_WITH(h.run(lost->connect()),
                      Catch::Contains("cannot resolve no-such-host.invalid"));
  }

  SECTION("a database the server does not have") {
    Options options = throwaway_server();
    options.db = 100000;
    auto client = h.client(options);
    CHECK_THROWS_WITH(h.run(client->connect()), Catch::Contains("SELECT: ERR DB index"));
  }

  SECTION("closed for good") {
    auto client = h.connected_client();
    h.run(client->close());
    CHECK(h.command(*client, {"PING"}).error == Errc::not_connected);
    CHECK_THROWS_WITH(h.run(client->connect()), Catch::Contains("closed"));
  }
}

TEST_CASE("a destroyed client with commands in flight fails them cleanly", "[redis]") {
  Harness h;
  auto client = h.connected_client();
  auto helper = h.connected_client();
  const std::string name = "destroyed-" + unique_key("client").substr(11);
  REQUIRE(h.command(*client, {"CLIENT", "SETNAME", name}).ok());
  auto blocked =
      asio::co_spawn(h.io, client->command({"BLPOP", unique_key("never"), "10"}), asio::use_future);
  REQUIRE(testing::wait_until([&] { return server_shows(h, *helper, name, "blpop"); }));
  client.reset();
  REQUIRE(ready_within(blocked, 5s));
  CHECK(blocked.get().error == Errc::connection_lost);
  h.run(helper->close());
}

}  // namespace
}  // namespace mesh::redis::test
