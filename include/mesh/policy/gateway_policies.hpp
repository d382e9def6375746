#pragma once
// The gateway's traffic policies wired from configuration: CORS in front of authentication,
// rate limits and the market cache behind it. A policy configured off adds no middleware.
#include <memory>

#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"
#include "mesh/redis/client.hpp"

namespace mesh::policy {

class Cors;
class RateLimiter;
class MarketCache;

class GatewayPolicies {
 public:
  GatewayPolicies(const config::Config& config, redis::Client& redis,
                  prometheus::Registry& registry);
  ~GatewayPolicies();
  GatewayPolicies(const GatewayPolicies&) = delete;
  GatewayPolicies& operator=(const GatewayPolicies&) = delete;

  // CORS (--cors-origins): before the authenticator, so preflights pass without a token and
  // 401 answers carry the CORS headers too.
  void install_before_auth(http::Router& router);
  // Rate limits (--ratelimit-*), then the market cache (--market-cache-ttl-ms): after the
  // authenticator, so the user is known and a cached answer still counts against the limits.
  void install_after_auth(http::Router& router);

 private:
  std::unique_ptr<Cors> cors_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::unique_ptr<MarketCache> market_cache_;
};

}  // namespace mesh::policy
