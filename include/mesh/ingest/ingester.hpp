#pragma once
// The ingester role's logic: reads the exchange feed (websocket), a recorded feed (replay) or a
// synthetic one, parses every message with FeedParser and publishes trades to market.trades and
// tickers to market.ticker, keyed by product.
//
// The feed cannot be paused, so publishing never waits: at most kMaxInFlight records await
// their Kafka acknowledgement, and a record arriving when that many are outstanding is dropped
// and counted (mesh_ingester_dropped_total{reason="backpressure"}). Failed deliveries are
// counted and not retried (the consumer tolerates the gap; the feed moves on).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/core/asio.hpp"
#include "mesh/core/log.hpp"
#include "mesh/ingest/feed.hpp"
#include "mesh/kafka/producer.hpp"

namespace mesh::ingest {

struct IngesterMetrics;
struct PublishState;
struct StopControl;

class Ingester {
 public:
  static constexpr std::size_t kMaxInFlight = 10'000;

  Ingester(asio::any_io_executor executor, const config::Config& config, kafka::Producer& producer,
           prometheus::Registry& registry);
  ~Ingester();
  Ingester(const Ingester&) = delete;
  Ingester& operator=(const Ingester&) = delete;

  // Runs the configured source until stop(); never throws for feed problems (a source that
  // cannot be used, such as a missing replay file, is logged and the ingester idles).
  Task<void> run();
  // Thread-safe; run() returns soon after.
  void stop();
  // Always true: the ingester serves no traffic, and a broken feed is retried forever.
  bool healthy() const;

 private:
  // run()'s body, spawned on the ingester's strand so that every continuation (not only the
  // first step) runs there, serialized with stop()'s cancellation handler.
  Task<void> run_on_strand();
  Task<void> run_source();
  Task<void> run_websocket(std::string url);
  Task<void> run_replay(std::string path);
  Task<void> run_synthetic();
  Task<void> idle_until_stopped();
  Task<void> update_trade_ages();
  // Waits `delay` unless stop() comes first; false when stopping.
  Task<bool> wait(std::chrono::steady_clock::duration delay);
  // Parses, counts and publishes one raw feed message; false for an exchange `error` message.
  bool handle(std::string_view message);
  bool handle(FeedEvent event);
  // To market.trades (trade) or market.ticker, unless kMaxInFlight records are in flight.
  void publish(bool trade, const std::string& key, std::string value);

  asio::any_io_executor executor_;  // a strand: everything below runs on it
  log::Logger logger_;
  const config::Config& config_;
  kafka::Producer& producer_;
  std::unique_ptr<IngesterMetrics> metrics_;
  std::shared_ptr<PublishState> publish_state_;  // shared with produce calls still in flight
  FeedParser parser_;
  std::atomic<bool> stopping_{false};
  std::shared_ptr<StopControl> control_;  // what stop() cancels; outlives this for its post
  bool delivered_ = false;                // the current connection delivered usable data
};

}  // namespace mesh::ingest
