#include "mesh/policy/gateway_policies.hpp"

#include "mesh/policy/cache.hpp"
#include "mesh/policy/cors.hpp"
#include "mesh/policy/rate_limit.hpp"

namespace mesh::policy {

GatewayPolicies::GatewayPolicies(const config::Config& config, redis::Client& redis,
                                 prometheus::Registry& registry) {
  auto cors = std::make_unique<Cors>(config.cors_origins, config.cors_max_age);
  if (cors->enabled()) cors_ = std::move(cors);
  auto rate_limiter = std::make_unique<RateLimiter>(redis, rate_limiter_options(config), registry);
  if (rate_limiter->enabled()) rate_limiter_ = std::move(rate_limiter);
  MarketCacheOptions cache_options;
  cache_options.ttl = config.market_cache_ttl;
  if (cache_options.ttl.count() > 0) {
    market_cache_ = std::make_unique<MarketCache>(redis, std::move(cache_options), registry);
  }
}

GatewayPolicies::~GatewayPolicies() = default;

void GatewayPolicies::install_before_auth(http::Router& router) {
  if (cors_) router.use(cors_->middleware());
}

void GatewayPolicies::install_after_auth(http::Router& router) {
  if (rate_limiter_) router.use(rate_limiter_->middleware());
  if (market_cache_) router.use(market_cache_->middleware());
}

}  // namespace mesh::policy
