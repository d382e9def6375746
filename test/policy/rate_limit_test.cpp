#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "fixture.hpp"
#include "mesh/policy/rate_limit.hpp"

namespace mesh::policy::test {
namespace {

using namespace std::chrono_literals;
using Outcome = Decision::Outcome;

long long header_number(const testing::HttpReply& reply, std::string_view name) {
  const auto value = reply.header(name);
  return value ? std::stoll(*value) : -1;
}

RateLimiterOptions ip_only(double rps, double burst, const std::string& name) {
  RateLimiterOptions options;
  options.ip = {rps, burst};
  options.key_prefix = unique_prefix(name);
  return options;
}

TEST_CASE("Limit capacity: burst rounded down, one second's worth when unset", "[ratelimit]") {
  CHECK(Limit{10, 0}.capacity() == 10);
  CHECK(Limit{2.5, 0}.capacity() == 3);
  CHECK(Limit{0.1, 0}.capacity() == 1);
  CHECK(Limit{10, 4.9}.capacity() == 4);
  CHECK(Limit{10, 0.5}.capacity() == 1);
  CHECK_FALSE(Limit{0, 5}.enabled());
}

TEST_CASE("Only the API is rate limited", "[ratelimit]") {
  CHECK(rate_limited_path("/v1/tasks"));
  CHECK(rate_limited_path("/v1/markets/BTC-USD/trades"));
  CHECK_FALSE(rate_limited_path("/healthz"));
  CHECK_FALSE(rate_limited_path("/readyz"));
  CHECK_FALSE(rate_limited_path("/metrics"));
  CHECK_FALSE(rate_limited_path("/"));
  CHECK_FALSE(rate_limited_path("/app.js"));
  CHECK_FALSE(rate_limited_path("/v1"));
}

TEST_CASE("GCRA grants exactly the burst, then 429 with Retry-After and RateLimit headers",
          "[ratelimit]") {
  Fixture f;
  // One request per 100 s: nothing refills while the test runs.
  RateLimiter limiter(*f.redis, ip_only(0.01, 3, "burst"), f.registry);
  f.start({}, {limiter.middleware()});

  for (int i = 0; i < 3; ++i) {
    const auto reply = f.get("/v1/things");
    REQUIRE(reply.status == 200);
    CHECK(header_number(reply, "ratelimit-limit") == 3);
    CHECK(header_number(reply, "ratelimit-remaining") == 2 - i);
    // Full again after (i + 1) intervals of 100 s.
    CHECK(header_number(reply, "ratelimit-reset") > 100 * i);
    CHECK(header_number(reply, "ratelimit-reset") <= 100 * (i + 1));
  }
  const auto limited = f.get("/v1/things");
  REQUIRE(limited.status == 429);
  CHECK(limited.header("content-type") == "application/problem+json");
  const auto retry_after = header_number(limited, "retry-after");
  CHECK(retry_after >= 90);
  CHECK(retry_after <= 100);
  CHECK(header_number(limited, "ratelimit-limit") == 3);
  CHECK(header_number(limited, "ratelimit-remaining") == 0);
  const auto problem = limited.json().as_object();
  CHECK(problem.at("status").as_int64() == 429);
  CHECK(std::string(problem.at("detail").as_string()).find("client IP") != std::string::npos);
  CHECK(problem.at("limit").as_string() == "ip");
  CHECK(f.api_calls == 3);

  SECTION("unlimited paths pass without a Redis round trip or headers") {
    for (int i = 0; i < 5; ++i) {
      const auto health = f.get("/healthz");
      CHECK(health.status == 200);
      CHECK_FALSE(health.header("ratelimit-limit"));
    }
  }
  SECTION("unmatched API paths count too") { CHECK(f.get("/v1/nothing-here").status == 429); }
  CHECK(f.metric("mesh_ratelimit_decisions_total", {{"scope", "ip"}, {"result", "allowed"}}) == 3);
  CHECK(f.metric("mesh_ratelimit_decisions_total", {{"scope", "ip"}, {"result", "limited"}}) >= 1);
}

TEST_CASE("A limited client is allowed again once Retry-After has passed", "[ratelimit]") {
  Fixture f;
  // One request per 4 s: long enough that the second request meets the limit on a slow machine.
  RateLimiter limiter(*f.redis, ip_only(0.25, 1, "recovery"), f.registry);
  f.start({}, {limiter.middleware()});

  REQUIRE(f.get("/v1/things").status == 200);
  const auto limited = f.get("/v1/things");
  REQUIRE(limited.status == 429);
  const auto retry_after = header_number(limited, "retry-after");
  CHECK(retry_after >= 1);
  CHECK(retry_after <= 4);
  CHECK(testing::wait_until([&] { return f.get("/v1/things").status == 200; }, 20s, 50ms));
}

TEST_CASE("Concurrent clients never get more than burst + rate x elapsed", "[ratelimit]") {
  Fixture f;
  RateLimiterOptions options;
  options.user = {40, 10};
  options.ip = {1'000'000, 1'000'000};  // on, so both keys are in every script run
  options.key_prefix = unique_prefix("concurrency");
  RateLimiter limiter(*f.redis, options, f.registry);
  f.start({}, {limiter.middleware()});
  const std::string user = "hammered";
  const std::string token = f.token(user);

  std::atomic<bool> running{true};
  std::atomic<long long> allowed{0};
  std::atomic<long long> limited{0};
  std::atomic<long long> failed{0};
  const auto started = std::chrono::steady_clock::now();

  // Threads through the server, each request on a new connection.
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (running) {
        try {
          const auto reply = testing::http_json(f.port, "GET", "/v1/things", "", token);
          if (reply.status == 200)
            ++allowed;
          else if (reply.status == 429)
            ++limited;
          else
            ++failed;
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  }
  // Coroutines on the io threads calling the limiter directly, on the same user.
  std::vector<std::future<void>> workers;
  for (int c = 0; c < 16; ++c) {
    workers.push_back(asio::co_spawn(
        f.io.io(),
        [&]() -> Task<void> {
          const std::string ip = "10.0.0.1";
          while (running) {
            const std::optional<std::string_view> who = user;
            const Decision decision = co_await limiter.check(who, ip);
            if (decision.outcome == Outcome::allowed)
              ++allowed;
            else if (decision.outcome == Outcome::limited)
              ++limited;
            else
              ++failed;
          }
        },
        asio::use_future));
  }
  // Waits on a condition with a deadline: enough denials seen, after at least 1.5 s of load.
  testing::wait_until(
      [&] { return limited > 200 && std::chrono::steady_clock::now() - started > 1500ms; }, 30s,
      20ms);
  running = false;
  for (auto& client : clients) client.join();
  for (auto& worker : workers) worker.get();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  INFO("allowed " << allowed << ", limited " << limited << " in " << elapsed << " s");
  CHECK(failed == 0);
  CHECK(limited > 0);
  CHECK(allowed >= 10);
  CHECK(static_cast<double>(allowed) <= 10 + 40 * elapsed);
}

TEST_CASE("User and IP limits are independent and a denial consumes neither", "[ratelimit]") {
  Fixture f;
  RateLimiterOptions options;
  options.user = {0.01, 2};
  options.ip = {0.01, 3};
  options.key_prefix = unique_prefix("independent");
  RateLimiter limiter(*f.redis, options, f.registry);
  const auto check = [&](std::optional<std::string_view> user, std::string_view ip) {
    return f.run(limiter.check(user, ip));
  };

  CHECK(check("alice", "192.0.2.1").outcome == Outcome::allowed);
  auto second = check("alice", "192.0.2.1");
  CHECK(second.outcome == Outcome::allowed);
  CHECK(second.scope == Scope::user);  // user has 0 left, the IP 1
  CHECK(second.remaining == 0);

  // Denied by the user limit: the IP keeps its third request.
  const auto denied = check("alice", "192.0.2.1");
  CHECK(denied.outcome == Outcome::limited);
  CHECK(denied.scope == Scope::user);
  CHECK(denied.limit == 2);
  CHECK(denied.retry_after_seconds >= 90);
  const auto bob = check("bob", "192.0.2.1");
  CHECK(bob.outcome == Outcome::allowed);
  CHECK(bob.scope == Scope::ip);
  CHECK(bob.remaining == 0);

  // Denied by the IP limit: carol's own allowance stays whole.
  const auto carol_denied = check("carol", "192.0.2.1");
  CHECK(carol_denied.outcome == Outcome::limited);
  CHECK(carol_denied.scope == Scope::ip);
  const auto carol = check("carol", "192.0.2.2");
  CHECK(carol.outcome == Outcome::allowed);
  CHECK(carol.scope == Scope::user);
  CHECK(carol.remaining == 1);

  // Anonymous requests meet only the IP limit; alice elsewhere is still limited.
  CHECK(check(std::nullopt, "192.0.2.3").outcome == Outcome::allowed);
  CHECK(check("alice", "192.0.2.9").outcome == Outcome::limited);

  CHECK(f.metric("mesh_ratelimit_decisions_total", {{"scope", "user"}, {"result", "limited"}}) ==
        2);
  CHECK(f.metric("mesh_ratelimit_decisions_total", {{"scope", "ip"}, {"result", "limited"}}) == 1);
}

TEST_CASE("Rate limit keys expire by themselves, per address and per IPv6 /64", "[ratelimit]") {
  Fixture f;
  // One request per 100 s: no allowance refills while the test runs, however slow the machine.
  auto options = ip_only(0.01, 5, "hostile");
  const std::string prefix = options.key_prefix;
  RateLimiter limiter(*f.redis, options, f.registry);

  // Many distinct addresses: each has its own allowance.
  for (int i = 0; i < 300; ++i) {
    const std::string ip = "198.51." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    const auto decision = f.run(limiter.check(std::nullopt, ip));
    REQUIRE(decision.outcome == Outcome::allowed);
    REQUIRE(decision.remaining == 4);
  }
  std::vector<std::string> pttl{"PTTL", prefix + "ip:198.51.1.20"};
  const auto ttl = f.run(f.redis->command(pttl));
  REQUIRE(ttl.ok());
  CHECK(ttl.reply.integer > 0);
  CHECK(ttl.reply.integer <= 100'000);  // one interval of 100 s to full recovery

  // One IPv6 /64 is one client; an IPv4-mapped address is its IPv4 address.
  auto v6 = f.run(limiter.check(std::nullopt, "2001:db8:1:2::1"));
  CHECK(v6.remaining == 4);
  v6 = f.run(limiter.check(std::nullopt, "2001:db8:1:2:ffff::7"));
  CHECK(v6.remaining == 3);
  const auto other_net = f.run(limiter.check(std::nullopt, "2001:db8:1:3::1"));
  CHECK(other_net.remaining == 4);
  const auto mapped = f.run(limiter.check(std::nullopt, "::ffff:198.51.0.1"));
  CHECK(mapped.remaining == 3);

  // Garbage where an address should be is limited like any other key.
  const auto garbage = f.run(limiter.check(std::nullopt, std::string(5000, 'z') + "\r\n"));
  CHECK(garbage.outcome == Outcome::allowed);
}

TEST_CASE("Redis unreachable: reads pass, writes get 503 or pass as configured",
          "[ratelimit][redis-down]") {
  auto redis_options = redis::parse_url(testing::redis_url());
  redis_options.port = closed_port();
  Fixture f(redis_options, false);
  const bool fail_open_writes = GENERATE(false, true);
  auto options = ip_only(100, 100, "down");
  options.fail_open_writes = fail_open_writes;
  RateLimiter limiter(*f.redis, options, f.registry);
  f.start({}, {limiter.middleware()});

  const auto read = f.get("/v1/things");
  CHECK(read.status == 200);
  CHECK_FALSE(read.header("ratelimit-limit"));
  const auto write = testing::http_json(f.port, "POST", "/v1/things", "{}");
  if (fail_open_writes) {
    CHECK(write.status == 201);
    CHECK(f.metric("mesh_ratelimit_redis_errors_total", {{"decision", "allowed"}}) == 2);
  } else {
    CHECK(write.status == 503);
    CHECK(write.header("content-type") == "application/problem+json");
    CHECK(write.header("retry-after") == "1");
    CHECK(f.metric("mesh_ratelimit_redis_errors_total", {{"decision", "allowed"}}) == 1);
    CHECK(f.metric("mesh_ratelimit_redis_errors_total", {{"decision", "denied"}}) == 1);
  }
}

TEST_CASE("Redis stopped after start: the limiter fails open for reads",
          "[ratelimit][redis-down]") {
  Fixture f;
  RateLimiter limiter(*f.redis, ip_only(100, 100, "stopped"), f.registry);
  f.start({}, {limiter.middleware()});
  REQUIRE(f.get("/v1/things").header("ratelimit-limit") == "100");
  f.run(f.redis->close());
  CHECK(f.get("/v1/things").status == 200);
  CHECK(testing::http_json(f.port, "POST", "/v1/things", "{}").status == 503);
  CHECK(f.metric("mesh_ratelimit_redis_errors_total", {{"decision", "allowed"}}) == 1);
  CHECK(f.metric("mesh_ratelimit_redis_errors_total", {{"decision", "denied"}}) == 1);
}

}  // namespace
}  // namespace mesh::policy::test
