#pragma once
// The stream role: market events from Kafka fanned out to Server-Sent Events clients.
//
// A consumer in a group of its own ("mesh-stream-<random hex>", auto.offset.reset=latest, never
// committing) reads market.trades and market.ticker from the latest offsets, so every stream
// instance sees every event from its start on: the stream is a live view. Records that do not
// decode are counted and skipped (the consumer role dead-letters them). Each event is published
// to the hub as `trade` or `ticker` with id = its per-product sequence and data = its JSON, on
// the product's channel; tickers also on "ticker:<product>" (session streams listen there).
// Other topics can be added to the same consumer with add_topic() (session task events).
#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/core/asio.hpp"
#include "mesh/http/router.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/sse/hub.hpp"

namespace mesh::sse {

class StreamService {
 public:
  // Uses config.stream_client_queue, stream_heartbeat, http_max_connections (the client cap),
  // ingester_products (the products served) and consumer_batch_size.
  StreamService(asio::any_io_executor executor, const config::Config& config,
                kafka::ClientConfig kafka_config, prometheus::Registry& registry);
  StreamService(const StreamService&) = delete;
  StreamService& operator=(const StreamService&) = delete;

  // GET /v1/stream/markets/{product}: 400 problem+json for a malformed product id, 404 for a
  // product not in config.ingester_products, 503 at the client cap, else the event stream.
  void add_routes(http::Router& router);
  // Before run(): the consumer also reads `topic` and hands each record to `handler` (on the
  // consumer's strand; it must not block).
  void add_topic(std::string topic, std::function<void(const kafka::Message&)> handler);
  // The Kafka loop, until stop().
  Task<void> run();
  // Stops the loop (within one poll, 100 ms) and closes every SSE client.
  void stop();
  std::size_t clients() const;
  // True once the consumer was assigned its partitions; events published before that are not
  // streamed (readiness may wait for it).
  bool assigned() const { return assigned_; }

  Hub& hub() { return hub_; }

 private:
  Task<http::Response> subscribe(http::Request& request);
  void publish(const kafka::Message& message);

  asio::any_io_executor executor_;
  const config::Config& config_;
  kafka::ClientConfig kafka_config_;
  prometheus::Registry& registry_;
  std::set<std::string, std::less<>> products_;
  std::map<std::string, std::function<void(const kafka::Message&)>, std::less<>> extra_topics_;
  Hub hub_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> assigned_{false};
  prometheus::Counter& trades_;
  prometheus::Counter& tickers_;
  prometheus::Counter& bad_trades_;
  prometheus::Counter& bad_tickers_;
};

}  // namespace mesh::sse
