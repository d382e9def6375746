#include <string>

#include <catch2/catch.hpp>

#include "fixture.hpp"
#include "mesh/policy/cors.hpp"
#include "mesh/policy/rate_limit.hpp"

namespace mesh::policy::test {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

const std::string kApp = "https://app.example.com";

Headers preflight_from(const std::string& origin) {
  return {{"Origin", origin},
          {"Access-Control-Request-Method", "POST"},
          {"Access-Control-Request-Headers", "authorization, content-type"}};
}

testing::HttpReply options(Fixture& f, const std::string& target, Headers headers) {
  testing::HttpCall call;
  call.method = "OPTIONS";
  call.target = target;
  call.headers = std::move(headers);
  return testing::http(f.port, call);
}

TEST_CASE("Cors matches configured origins exactly", "[cors]") {
  const Cors cors({kApp + "/", "http://localhost:5173"}, std::chrono::seconds(600));
  CHECK(cors.enabled());
  CHECK(cors.allowed(kApp));
  CHECK(cors.allowed("HTTPS://APP.EXAMPLE.COM"));
  CHECK(cors.allowed("http://localhost:5173"));
  CHECK_FALSE(cors.allowed("http://app.example.com"));
  CHECK_FALSE(cors.allowed(kApp + ".evil.net"));
  CHECK_FALSE(cors.allowed("null"));
  CHECK_FALSE(cors.allowed(kApp + "\r\nX-Evil: 1"));
  CHECK_FALSE(cors.allowed(std::string(10 * 1024, 'a')));
  CHECK_FALSE(Cors({}, std::chrono::seconds(1)).enabled());
  CHECK(Cors({"*"}, std::chrono::seconds(1)).allowed("https://anything.example"));
}

TEST_CASE("CORS preflights and actual requests", "[cors]") {
  Fixture f;
  Cors cors({kApp}, std::chrono::seconds(600));
  f.start({cors.middleware()}, {});

  SECTION("a preflight from an allowed origin gets 204 and the Allow headers, without a token") {
    const auto reply = options(f, "/v1/private", preflight_from(kApp));
    CHECK(reply.status == 204);
    CHECK(reply.header("access-control-allow-origin") == kApp);
    CHECK(reply.header("access-control-allow-methods") == "GET, POST, DELETE, OPTIONS, HEAD");
    const auto allow_headers = reply.header("access-control-allow-headers").value_or("");
    for (const char* name : {"Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id",
                             "traceparent", "Last-Event-ID", "If-None-Match"}) {
      CHECK(allow_headers.find(name) != std::string::npos);
    }
    CHECK(reply.header("access-control-max-age") == "600");
    CHECK(reply.header("vary") == "Origin");
    CHECK_FALSE(reply.header("access-control-allow-credentials"));
    CHECK(f.api_calls == 0);
  }
  SECTION("a preflight from another origin gets 403 problem+json") {
    const auto reply = options(f, "/v1/things", preflight_from("https://evil.example"));
    CHECK(reply.status == 403);
    CHECK(reply.header("content-type") == "application/problem+json");
    CHECK_FALSE(reply.header("access-control-allow-origin"));
  }
  SECTION("an actual request from an allowed origin gets Allow-Origin and Expose-Headers") {
    const auto reply = f.get("/v1/things", {{"Origin", kApp}});
    CHECK(reply.status == 200);
    CHECK(reply.header("access-control-allow-origin") == kApp);
    CHECK(reply.header("vary") == "Origin");
    const auto exposed = reply.header("access-control-expose-headers").value_or("");
    for (const char* name : {"Location", "X-Request-Id", "Retry-After", "ETag", "RateLimit-Limit",
                             "RateLimit-Remaining", "RateLimit-Reset", "Idempotent-Replayed"}) {
      CHECK(exposed.find(name) != std::string::npos);
    }
  }
  SECTION("a 401 answer carries the CORS headers too") {
    const auto reply = f.get("/v1/private", {{"Origin", kApp}});
    CHECK(reply.status == 401);
    CHECK(reply.header("access-control-allow-origin") == kApp);
    const auto bad_token = f.get("/v1/private", {{"Origin", kApp}, {"Authorization", "Bearer x"}});
    CHECK(bad_token.status == 401);
    CHECK(bad_token.header("access-control-allow-origin") == kApp);
  }
  SECTION("requests from other origins or none get no Allow-Origin") {
    CHECK_FALSE(f.get("/v1/things", {{"Origin", "https://evil.example"}})
                    .header("access-control-allow-origin"));
    CHECK_FALSE(f.get("/v1/things").header("access-control-allow-origin"));
  }
  SECTION("an OPTIONS request that is not a preflight goes to routing") {
    const auto reply = options(f, "/v1/things", {{"Origin", kApp}});
    CHECK(reply.status == 405);
    CHECK(reply.header("access-control-allow-origin") == kApp);
  }
  SECTION("hostile origins: 10 KB, header injection") {
    const auto huge = options(f, "/v1/things", preflight_from(std::string(10 * 1024, 'a')));
    CHECK(huge.status == 403);
    // A folded (obs-fold) Origin line: whatever the parser makes of it, nothing is echoed.
    const auto raw = testing::raw_exchange(
        f.port,
        "OPTIONS /v1/things HTTP/1.1\r\nHost: x\r\nOrigin: " + kApp +
            "\r\n X-Evil: 1\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n");
    CHECK(raw.bytes.rfind("HTTP/1.1 4", 0) == 0);
    CHECK(raw.bytes.find("X-Evil") == std::string::npos);
    CHECK(f.get("/healthz").status == 200);
  }
}

TEST_CASE("CORS headers are on 429 answers when installed before the rate limiter", "[cors]") {
  Fixture f;
  Cors cors({kApp}, std::chrono::seconds(60));
  RateLimiterOptions limits;
  limits.ip = {0.01, 1};
  limits.key_prefix = unique_prefix("cors429");
  RateLimiter limiter(*f.redis, limits, f.registry);
  f.start({cors.middleware()}, {limiter.middleware()});
  REQUIRE(f.get("/v1/things", {{"Origin", kApp}}).status == 200);
  const auto limited = f.get("/v1/things", {{"Origin", kApp}});
  REQUIRE(limited.status == 429);
  CHECK(limited.header("access-control-allow-origin") == kApp);
  // Preflights are answered before the limiter: they cost nothing.
  CHECK(options(f, "/v1/things", preflight_from(kApp)).status == 204);
}

TEST_CASE("CORS with '*' answers '*' and never allows credentials", "[cors]") {
  Fixture f;
  Cors cors({"*"}, std::chrono::seconds(5));
  f.start({cors.middleware()}, {});
  const auto preflight = options(f, "/v1/things", preflight_from("https://any.example"));
  CHECK(preflight.status == 204);
  CHECK(preflight.header("access-control-allow-origin") == "*");
  CHECK(preflight.header("access-control-max-age") == "5");
  CHECK_FALSE(preflight.header("access-control-allow-credentials"));
  const auto actual = f.get("/v1/things", {{"Origin", "https://any.example"}});
  CHECK(actual.header("access-control-allow-origin") == "*");
}

}  // namespace
}  // namespace mesh::policy::test
