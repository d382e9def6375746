#include <atomic>
#include <future>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include "harness.hpp"

namespace mesh::redis::test {
namespace {

using namespace std::chrono_literals;

const char* const add_and_echo = R"(
  local total = redis.call('INCRBY', KEYS[1], ARGV[1])
  return {KEYS[1], ARGV[1], total}
)";

TEST_CASE("Script names itself by the SHA-1 of its source", "[redis][script]") {
  CHECK(Script("").sha1() == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(Script("abc").sha1() == "a9993e364706816aba3e25717850c26c9cd0d89d");
  // 56 bytes: the length no longer fits the first padding block.
  CHECK(Script("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").sha1() ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(Script(std::string(64, 'a')).sha1() == "0098ba824b5c16427bd7a1122a5a442a25ec644d");
  CHECK(Script(std::string(1000000, 'a')).sha1() == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST_CASE("Script runs with EVALSHA and reloads itself after SCRIPT FLUSH", "[redis][script]") {
  Harness h;
  auto client = h.connected_client();
  const Script script(add_and_echo);
  const std::string key = unique_key("script");

  const auto loaded = h.command(*client, {"SCRIPT", "LOAD", script.lua()});
  REQUIRE(loaded.ok());
  CHECK(loaded.reply.string == script.sha1());

  const auto first = h.run(script.run(*client, {key}, {"5"}));
  REQUIRE(first.ok());
  REQUIRE(first.reply.elements.size() == 3);
  CHECK(first.reply.elements[0].string == key);
  CHECK(first.reply.elements[1].string == "5");
  CHECK(first.reply.elements[2].integer == 5);

  REQUIRE(h.command(*client, {"SCRIPT", "FLUSH"}).ok());
  const auto after_flush = h.run(script.run(*client, {key}, {"7"}));
  REQUIRE(after_flush.ok());
  CHECK(after_flush.reply.elements[2].integer == 12);
  const auto exists = h.command(*client, {"SCRIPT", "EXISTS", script.sha1()});
  REQUIRE(exists.reply.elements.size() == 1);
  CHECK(exists.reply.elements[0].integer == 1);

  SECTION("many coroutines racing on an unloaded script all succeed") {
    REQUIRE(h.command(*client, {"SCRIPT", "FLUSH"}).ok());
    constexpr int n = 500;
    std::atomic<int> remaining{n};
    std::atomic<int> failures{0};
    std::promise<void> all_done;
    const std::string counter = unique_key("racing");
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(
          h.io,
          [&]() -> Task<void> {
            // Named vectors: GCC 12 miscompiles braced lists inside co_await expressions.
            std::vector<std::string> keys{counter};
            std::vector<std::string> args{"1"};
            const Result result = co_await script.run(*client, std::move(keys), std::move(args));
            if (!result.ok()) ++failures;
            if (--remaining == 0) all_done.set_value();
          },
          asio::detached);
    }
    auto done = all_done.get_future();
    REQUIRE(done.wait_for(30s) == std::future_status::ready);
    CHECK(failures == 0);
    CHECK(h.command(*client, {"GET", counter}).reply.string == std::to_string(n));
  }

  SECTION("errors raised by the script are Redis error replies") {
    const Script push("return redis.call('LPUSH', KEYS[1], 'x')");
    const auto failed = h.run(push.run(*client, {key}, {}));
    CHECK_FALSE(failed.error);
    CHECK(failed.reply.is_error());
    CHECK(failed.reply.string.find("WRONGTYPE") != std::string::npos);
  }

  SECTION("a script that does not compile is a Redis error reply") {
    const Script broken("return +");
    const auto failed = h.run(broken.run(*client, {}, {}));
    CHECK_FALSE(failed.error);
    CHECK(failed.reply.is_error());
  }

  h.run(client->close());
}

TEST_CASE("Script reports transport errors as such", "[redis][script]") {
  Harness h;
  auto client = h.client(parse_url(testing::redis_url()));
  const auto result = h.run(Script(add_and_echo).run(*client, {"k"}, {"1"}));
  CHECK(result.error == Errc::not_connected);
}

}  // namespace
}  // namespace mesh::redis::test
