#pragma once
// A short-lived Redis cache of the public market GET answers (/v1/markets...), shared by every
// gateway replica, with strong ETags so clients can revalidate with If-None-Match for a 304.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "mesh/core/asio.hpp"
#include "mesh/http/message.hpp"
#include "mesh/http/router.hpp"
#include "mesh/policy/throttled_warning.hpp"
#include "mesh/redis/client.hpp"

namespace mesh::policy {

// GET or HEAD under /v1/markets.
bool market_cacheable(const http::Request& request);

// The cache key of a request: the raw path and the query with its parameters in a stable
// order by name (so "?a=1&b=2" and "?b=2&a=1" share an entry, while repeated names keep their
// order). nullopt when the target is longer than `max_target`.
std::optional<std::string> market_cache_key(const http::Request& request,
                                            std::size_t max_target = 1024);

// A strong ETag: the quoted hex of the first 128 bits of the body's SHA-256.
std::string strong_etag(std::string_view body);

// If-None-Match against `etag` with the weak comparison of RFC 9110 (W/ ignored): "*" or any
// listed tag matches. Malformed or oversized (> 8 KiB) headers match nothing.
bool if_none_match(std::string_view header, std::string_view etag);

struct MarketCacheOptions {
  std::chrono::milliseconds ttl{1000};  // 0: off
  std::size_t max_body = 1024 * 1024;   // larger answers are served but not stored
  std::size_t max_target = 1024;        // longer targets bypass the cache
  std::string key_prefix = "mesh:mc:";
};

// Metrics: mesh_market_cache_requests_total{result="hit|miss|bypass|error"}: hit and miss are
// lookups (a miss runs the handler; only its 200 answers are stored), bypass a target too long
// to cache, error a Redis failure (the handler answers).
class MarketCache {
 public:
  MarketCache(redis::Client& redis, MarketCacheOptions options, prometheus::Registry& registry);

  bool enabled() const { return options_.ttl.count() > 0; }

  // Serves cacheable requests from Redis when it can, stores 200 answers, adds ETag and
  // Cache-Control to every cacheable 200 answer and turns a matching If-None-Match into 304.
  http::Middleware middleware();

 private:
  http::Response finish(const http::Request& request, http::Response response,
                        const std::string& etag) const;

  redis::Client& redis_;
  MarketCacheOptions options_;
  std::string cache_control_;
  prometheus::Counter& hits_;
  prometheus::Counter& misses_;
  prometheus::Counter& bypasses_;
  prometheus::Counter& errors_;
  ThrottledWarning redis_warning_;
};

}  // namespace mesh::policy
