#pragma once
// Rate limits per user and per client IP, shared by every gateway replica through Redis.
// GCRA (the generic cell rate algorithm): each key holds one number, the theoretical arrival
// time of the next request, so a limit costs one small string in Redis and one round trip.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/core/asio.hpp"
#include "mesh/http/router.hpp"
#include "mesh/policy/throttled_warning.hpp"
#include "mesh/redis/client.hpp"

namespace mesh::policy {

// `rps` requests per second on average, `burst` of them at once after a quiet spell.
struct Limit {
  double rps = 0;  // 0: no limit
  double burst = 0;

  bool enabled() const { return rps > 0; }
  // The requests a full allowance holds: burst rounded down, at least 1; burst 0 means one
  // second's worth (the rate rounded up).
  long long capacity() const;
};

struct RateLimiterOptions {
  Limit user;
  Limit ip;
  // When Redis cannot answer: writes pass (true) or get 503 (false). Reads always pass.
  bool fail_open_writes = false;
  std::string key_prefix = "mesh:rl:";
};

RateLimiterOptions rate_limiter_options(const config::Config& config);

enum class Scope { user, ip };
std::string_view to_string(Scope scope);

struct Decision {
  enum class Outcome { allowed, limited, unavailable };
  Outcome outcome = Outcome::allowed;
  // The limit the headers describe: the one that denied, or else the one with the least
  // allowance left. Unset when no limit applied or Redis could not answer.
  std::optional<Scope> scope;
  long long limit = 0;                // RateLimit-Limit: requests of a full allowance
  long long remaining = 0;            // RateLimit-Remaining
  long long reset_seconds = 0;        // RateLimit-Reset: until the allowance is full again
  long long retry_after_seconds = 0;  // limited: until the request would be allowed
  redis::Result failure;              // unavailable: what Redis answered
};

// Metrics: mesh_ratelimit_decisions_total{scope="user|ip",result="allowed|limited"} (a granted
// request counts "allowed" once per limit it was checked against; a denied one counts
// "limited" for the limit that denied it), mesh_ratelimit_redis_errors_total{decision=
// "allowed|denied"} (requests Redis could not decide, by what the gateway did with them).
class RateLimiter {
 public:
  RateLimiter(redis::Client& redis, RateLimiterOptions options, prometheus::Registry& registry);

  // Either limit is on.
  bool enabled() const { return options_.user.enabled() || options_.ip.enabled(); }

  // Takes one request from the allowance of `user` (when set and the user limit is on) and of
  // `ip` (when the IP limit is on), atomically and only if both have room: a request denied by
  // one limit consumes nothing of the other. One Redis round trip, Redis's clock.
  Task<Decision> check(std::optional<std::string_view> user, std::string_view ip);

  // For requests under /v1/: 429 problem+json with Retry-After when limited, RateLimit-*
  // headers on every answer it decided; install after authentication (it limits
  // request.principal's user and request.remote_address).
  http::Middleware middleware();

 private:
  redis::Client& redis_;
  RateLimiterOptions options_;
  prometheus::Counter& user_allowed_;
  prometheus::Counter& user_limited_;
  prometheus::Counter& ip_allowed_;
  prometheus::Counter& ip_limited_;
  prometheus::Counter& redis_errors_allowed_;
  prometheus::Counter& redis_errors_denied_;
  ThrottledWarning redis_warning_;
};

// Only the API is limited: health checks, metrics and the dashboard's files are not.
bool rate_limited_path(std::string_view path);

}  // namespace mesh::policy
