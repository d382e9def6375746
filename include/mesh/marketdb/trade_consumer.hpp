#pragma once
// The consumer role's logic: market.trades (group mesh-consumer) -> Postgres through Store, in
// batches of up to config.consumer_batch_size records. Offsets are committed only after the
// database commit, so a crash or restart redelivers, and the Store's de-duplication makes a
// redelivered trade change nothing. Undecodable records and trades Postgres refuses go to
// market.dlq with the reason; a failing database is retried with backoff and nothing is
// committed meanwhile.
#include <atomic>
#include <optional>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/marketdb/store.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::marketdb {

inline constexpr const char* kConsumerGroup = "mesh-consumer";

class TradeConsumer {
 public:
  TradeConsumer(asio::any_io_executor executor, const config::Config& config,
                kafka::ClientConfig kafka_config, pg::Pool& pool, kafka::Producer& producer,
                prometheus::Registry& registry);

  // Consumes until stop(); then finishes or abandons the batch in hand (abandoned records are
  // not committed and come back), commits, and leaves the group.
  Task<void> run();
  // Safe from any thread.
  void stop();

 private:
  enum class StoreOutcome { stored, rejected, stopped };
  // Retries transient failures with backoff; `rejected` when Postgres refuses the data itself.
  Task<StoreOutcome> store_with_retry(std::span<const market::Trade> trades);
  // Publishes to market.dlq until acknowledged; false when stopping first.
  Task<bool> dead_letter(const kafka::Message& message, std::string_view reason);
  // Stores a batch Postgres refused one trade at a time, dead-lettering the refused ones.
  Task<StoreOutcome> store_one_by_one(const std::vector<market::Trade>& trades,
                                      const std::vector<const kafka::Message*>& sources);

  asio::any_io_executor executor_;
  const config::Config& config_;
  kafka::ClientConfig kafka_config_;
  kafka::Producer& producer_;
  prometheus::Registry& registry_;
  Store store_;
  std::atomic<bool> stopping_{false};
  prometheus::Counter& stored_;
  prometheus::Counter& duplicates_;
  prometheus::Family<prometheus::Counter>& dead_letters_;
  prometheus::Counter& store_failures_;
  prometheus::Histogram& batch_seconds_;
};

}  // namespace mesh::marketdb
