#include <string>

#include <catch2/catch.hpp>

#include "fixture.hpp"
#include "mesh/policy/gateway_policies.hpp"

namespace mesh::policy::test {
namespace {

using namespace std::chrono_literals;

const std::string kApp = "https://app.example.com";

TEST_CASE("GatewayPolicies installs nothing for policies configured off", "[gateway_policies]") {
  config::Config config;
  config.market_cache_ttl = 0ms;
  Fixture f;
  GatewayPolicies policies(config, *f.redis, f.registry);
  policies.install_before_auth(*f.router);
  policies.install_after_auth(*f.router);
  CHECK(f.router->middlewares().empty());
}

TEST_CASE("GatewayPolicies: CORS before authentication, limits and cache after it",
          "[gateway_policies]") {
  config::Config config;
  config.cors_origins = {kApp};
  config.ratelimit_user_rps = 0.01;
  config.ratelimit_user_burst = 3;
  config.market_cache_ttl = 60s;
  Fixture f;
  GatewayPolicies policies(config, *f.redis, f.registry);
  std::vector<http::Middleware> before;
  std::vector<http::Middleware> after;
  // Fixture::start puts the authenticator between the two lists, as app.cpp does.
  http::Router probe;
  policies.install_before_auth(probe);
  before = probe.middlewares();
  http::Router probe_after;
  policies.install_after_auth(probe_after);
  after = probe_after.middlewares();
  REQUIRE(before.size() == 1);
  REQUIRE(after.size() == 2);
  f.start(before, after);

  // The user is one no other run has used: its key is fresh.
  const std::string token = f.token(unique_prefix("wired-user"));
  const std::vector<std::pair<std::string, std::string>> headers{
      {"Origin", kApp}, {"Authorization", "Bearer " + token}};

  // A preflight needs no token and costs no allowance.
  testing::HttpCall preflight;
  preflight.method = "OPTIONS";
  preflight.target = "/v1/markets";
  preflight.headers = {{"Origin", kApp}, {"Access-Control-Request-Method", "GET"}};
  CHECK(testing::http(f.port, preflight).status == 204);

  const auto miss = f.get("/v1/markets", headers);
  CHECK(miss.status == 200);
  CHECK(miss.header("ratelimit-remaining") == "2");
  CHECK(miss.header("etag"));
  const auto hit = f.get("/v1/markets", headers);
  CHECK(hit.body == miss.body);
  // A cached answer still counts against the limit.
  CHECK(hit.header("ratelimit-remaining") == "1");
  CHECK(hit.header("access-control-allow-origin") == kApp);
  CHECK(f.get("/v1/things", headers).status == 200);
  const auto limited = f.get("/v1/markets", headers);
  CHECK(limited.status == 429);
  CHECK(limited.header("access-control-allow-origin") == kApp);
  CHECK(f.market_calls == 1);
}

}  // namespace
}  // namespace mesh::policy::test
