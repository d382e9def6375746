#pragma once
// The gateway's route to stream roles running in other processes (docs/stream.md, "Routing").
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/ip/tcp.hpp>

#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"

namespace mesh::sse {

struct ProxyOptions {
  std::chrono::milliseconds connect_timeout{2000};   // also the deadline of each resolution
  std::chrono::milliseconds head_timeout{5000};      // request sent and response head read
  std::chrono::milliseconds resolve_interval{5000};  // age at which addresses are re-resolved
  std::chrono::milliseconds down_initial{5000};      // first cool-down of a failed address
  std::chrono::milliseconds down_max{30'000};        // the cool-down doubles up to this
  std::size_t max_attempts = 3;  // upstream addresses tried per request (at most their count)
};

// The addresses of the stream replicas and their health: which to try, in which order. Pure
// logic with the time passed in; thread-safe.
class UpstreamPool {
 public:
  using Endpoint = boost::asio::ip::tcp::endpoint;
  using Clock = std::chrono::steady_clock;

  UpstreamPool(std::chrono::milliseconds down_initial, std::chrono::milliseconds down_max);

  // Replaces the addresses (a new resolution); an address still present keeps its health.
  void update(std::vector<Endpoint> endpoints);
  std::vector<Endpoint> endpoints() const;

  // The addresses to try for one request, at most `limit`: those up, in round-robin order
  // starting one further than the previous request's, then those down, the least recently
  // failed first. So an address that is down is only tried when fewer than `limit` are up.
  std::vector<Endpoint> plan(std::size_t limit, Clock::time_point now);

  // A connection to `endpoint` failed: it is down for the cool-down, which doubles with each
  // failure in a row up to the maximum.
  void failed(const Endpoint& endpoint, Clock::time_point now);
  // `endpoint` answered: it is up and its cool-down starts over.
  void succeeded(const Endpoint& endpoint);
  std::size_t down(Clock::time_point now) const;

 private:
  struct State {
    Endpoint endpoint;
    Clock::time_point down_until{};
    Clock::time_point failed_at{};
    std::chrono::milliseconds cool_down{0};
  };
  State* find(const Endpoint& endpoint);  // under mutex_

  const std::chrono::milliseconds down_initial_;
  const std::chrono::milliseconds down_max_;
  mutable std::mutex mutex_;
  std::vector<State> states_;
  std::size_t next_ = 0;
};

// Where an SSE stream may end without cutting an event: the offset just past the last blank
// line ("\n\n" or "\r\n\r\n") in `bytes`, 0 when there is none.
std::size_t complete_events(std::string_view bytes);

// Registers GET (and so HEAD) /v1/stream/markets/{product} and
// /v1/stream/sessions/{profile_id}, forwarded to config.stream_url: "http://host:port", or
// several joined by commas. Every host is resolved (again every resolve_interval, in the
// background) and requests go round robin over all the addresses, skipping those that failed
// recently. Throws std::invalid_argument if stream_url is malformed.
void add_proxy_routes(http::Router& router, const config::Config& config,
                      prometheus::Registry& registry, ProxyOptions options = {});

}  // namespace mesh::sse
