#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "fixture.hpp"
#include "mesh/policy/cache.hpp"

namespace mesh::policy::test {
namespace {

using namespace std::chrono_literals;

http::Request request_for(std::string method, std::string target) {
  http::Request request;
  request.method = std::move(method);
  request.target = std::move(target);
  const auto question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) request.query = request.target.substr(question + 1);
  return request;
}

MarketCacheOptions cache_options(std::chrono::milliseconds ttl, const std::string& name) {
  MarketCacheOptions options;
  options.ttl = ttl;
  options.key_prefix = unique_prefix(name);
  return options;
}

TEST_CASE("Only market GETs and HEADs are cacheable", "[cache]") {
  CHECK(market_cacheable(request_for("GET", "/v1/markets")));
  CHECK(market_cacheable(request_for("HEAD", "/v1/markets/BTC-USD/trades?limit=5")));
  CHECK_FALSE(market_cacheable(request_for("POST", "/v1/markets")));
  CHECK_FALSE(market_cacheable(request_for("GET", "/v1/marketsX")));
  CHECK_FALSE(market_cacheable(request_for("GET", "/v1/tasks")));
}

TEST_CASE("Cache keys put query parameters in a stable order by name", "[cache]") {
  const auto key = [](const std::string& target) {
    return market_cache_key(request_for("GET", target)).value_or("none");
  };
  CHECK(key("/v1/markets/BTC-USD/candles?b=2&a=1") == "/v1/markets/BTC-USD/candles?a=1&b=2");
  CHECK(key("/v1/markets/BTC-USD/candles?a=1&b=2") == "/v1/markets/BTC-USD/candles?a=1&b=2");
  CHECK(key("/v1/markets?x=2&&x=1&") == "/v1/markets?x=2&x=1");
  CHECK(key("/v1/markets") == "/v1/markets");
  CHECK(key("/v1/markets?") == "/v1/markets");
  CHECK(key("/v1/markets/A%2DB/trades") == "/v1/markets/A%2DB/trades");
  CHECK_FALSE(market_cache_key(request_for("GET", "/v1/markets?q=" + std::string(2000, 'a'))));
}

TEST_CASE("ETags are strong hashes of the body", "[cache]") {
  const auto etag = strong_etag("hello");
  CHECK(etag.size() == 34);
  CHECK(etag.front() == '"');
  CHECK(etag.back() == '"');
  CHECK(etag == strong_etag("hello"));
  CHECK(etag != strong_etag("hello!"));
}

TEST_CASE("If-None-Match uses the weak comparison of RFC 9110", "[cache]") {
  const std::string etag = "\"abc\"";
  CHECK(if_none_match("\"abc\"", etag));
  CHECK(if_none_match("W/\"abc\"", etag));
  CHECK(if_none_match("\"x\", \"abc\"", etag));
  CHECK(if_none_match("  \"x\" ,W/\"abc\" ", etag));
  CHECK(if_none_match("*", etag));
  CHECK_FALSE(if_none_match("\"abcd\"", etag));
  CHECK_FALSE(if_none_match("abc", etag));
  CHECK_FALSE(if_none_match("\"abc", etag));
  CHECK_FALSE(if_none_match("", etag));
  CHECK_FALSE(if_none_match("W/", etag));
  CHECK_FALSE(if_none_match(std::string(9000, ','), etag));
  CHECK_FALSE(if_none_match(std::string(9000, ',') + "\"abc\"", etag));
}

TEST_CASE("Market answers are served from Redis with ETag and 304 revalidation", "[cache]") {
  Fixture f;
  MarketCache cache(*f.redis, cache_options(60s, "hit"), f.registry);
  f.start({}, {cache.middleware()});

  const auto first = f.get("/v1/markets?limit=1&a=2");
  REQUIRE(first.status == 200);
  const auto etag = first.header("etag");
  REQUIRE(etag);
  CHECK(*etag == strong_etag(first.body));
  CHECK(first.header("cache-control") == "public, max-age=60");
  CHECK(first.header("content-type") == "application/json");

  const auto second = f.get("/v1/markets?a=2&limit=1");
  CHECK(second.status == 200);
  CHECK(second.body == first.body);
  CHECK(second.header("etag") == etag);
  CHECK(second.header("content-type") == "application/json");
  CHECK(second.header("cache-control") == "public, max-age=60");
  CHECK(f.market_calls == 1);
  CHECK(f.metric("mesh_market_cache_requests_total", {{"result", "hit"}}) == 1);
  CHECK(f.metric("mesh_market_cache_requests_total", {{"result", "miss"}}) == 1);

  SECTION("a matching If-None-Match gets 304 with the ETag and no body") {
    for (const std::string& condition :
         {*etag, "W/" + *etag, "\"other\", " + *etag, std::string("*")}) {
      const auto reply = f.get("/v1/markets?a=2&limit=1", {{"If-None-Match", condition}});
      CHECK(reply.status == 304);
      CHECK(reply.body.empty());
      CHECK(reply.header("etag") == etag);
    }
    // Also on the miss that fills the cache.
    const auto fresh = f.get("/v1/markets?limit=1&a=3", {{"If-None-Match", "*"}});
    CHECK(fresh.status == 304);
    CHECK(f.market_calls == 2);
  }
  SECTION("HEAD is served from the same entry") {
    testing::HttpCall call;
    call.method = "HEAD";
    call.target = "/v1/markets?limit=1&a=2";
    const auto reply = testing::http(f.port, call);
    CHECK(reply.status == 200);
    CHECK(reply.header("etag") == etag);
    CHECK(f.market_calls == 1);
  }
  SECTION("hostile If-None-Match headers get the full answer") {
    for (const std::string& condition :
         {std::string(12 * 1024, '"'), std::string("\"unterminated"), std::string("W/W/W/"),
          std::string(4000, ',') + "W/\"x\""}) {
      const auto reply = f.get("/v1/markets?a=2&limit=1", {{"If-None-Match", condition}});
      CHECK(reply.status == 200);
      CHECK(reply.body == first.body);
    }
  }
}

TEST_CASE("Only 200 answers of bounded size are cached", "[cache]") {
  Fixture f;
  MarketCache cache(*f.redis, cache_options(60s, "non200"), f.registry);
  f.start({}, {cache.middleware()});

  CHECK(f.get("/v1/markets/NOPE/trades").status == 404);
  const auto again = f.get("/v1/markets/NOPE/trades");
  CHECK(again.status == 404);
  CHECK_FALSE(again.header("etag"));
  CHECK(f.market_calls == 2);

  CHECK(f.get("/v1/markets/BIG/trades").body.size() == 2 * 1024 * 1024);
  CHECK(f.get("/v1/markets/BIG/trades").body.size() == 2 * 1024 * 1024);
  CHECK(f.market_calls == 4);

  // Too long a target to be a key: served, not looked up.
  CHECK(f.get("/v1/markets?q=" + std::string(3000, 'a')).status == 200);
  CHECK(f.metric("mesh_market_cache_requests_total", {{"result", "bypass"}}) == 1);

  // Other paths are not the cache's business.
  CHECK_FALSE(f.get("/v1/things").header("etag"));
}

TEST_CASE("Cached market answers expire after the TTL", "[cache]") {
  Fixture f;
  MarketCache cache(*f.redis, cache_options(200ms, "ttl"), f.registry);
  f.start({}, {cache.middleware()});
  const auto first = f.get("/v1/markets/BTC-USD/trades");
  CHECK(first.header("cache-control") == "public, max-age=1");
  CHECK(testing::wait_until([&] { return f.get("/v1/markets/BTC-USD/trades").body != first.body; },
                            10s, 20ms));
  CHECK(f.market_calls >= 2);
}

TEST_CASE("Redis down: market answers are still served", "[cache][redis-down]") {
  auto redis_options = redis::parse_url(testing::redis_url());
  redis_options.port = closed_port();
  Fixture f(redis_options, false);
  MarketCache cache(*f.redis, cache_options(60s, "down"), f.registry);
  f.start({}, {cache.middleware()});
  const auto first = f.get("/v1/markets");
  CHECK(first.status == 200);
  const auto second = f.get("/v1/markets");
  CHECK(second.status == 200);
  CHECK(second.body != first.body);
  CHECK(f.market_calls == 2);
  CHECK(f.metric("mesh_market_cache_requests_total", {{"result", "error"}}) == 2);
}

}  // namespace
}  // namespace mesh::policy::test
