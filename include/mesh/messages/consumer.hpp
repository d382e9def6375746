#pragma once
// The consumer role's message logic: the messages topic (group mesh-consumer-messages) ->
// Postgres through MessageStore, in batches of up to config.consumer_batch_size records.
// Offsets are committed only after the database commit, so a crash or restart redelivers and
// the store's ON CONFLICT makes a redelivered message change nothing. Undecodable records and
// messages Postgres refuses go to messages.dlq with the reason; a failing database is retried
// with backoff and nothing is committed meanwhile.
#include <atomic>
#include <span>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/messages/store.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::messages {

inline constexpr const char* kConsumerGroup = "mesh-consumer-messages";

class MessageConsumer {
 public:
  MessageConsumer(asio::any_io_executor executor, const config::Config& config,
                  kafka::ClientConfig kafka_config, pg::Pool& pool, kafka::Producer& producer,
                  prometheus::Registry& registry);

  // Consumes until stop(); then abandons the batch in hand (its records are not committed and
  // come back), commits what was stored, and leaves the group.
  Task<void> run();
  // Safe from any thread.
  void stop();

 private:
  enum class StoreOutcome { stored, rejected, stopped };
  // Retries transient failures with backoff; `rejected` when Postgres refuses the data itself.
  Task<StoreOutcome> store_with_retry(std::span<const Message> messages);
  // Stores a refused batch one message at a time, dead-lettering the refused ones.
  Task<StoreOutcome> store_one_by_one(const std::vector<Message>& messages,
                                      const std::vector<const kafka::Message*>& sources);
  // Publishes to messages.dlq until acknowledged; false when stopping first.
  Task<bool> dead_letter(const kafka::Message& source, std::string_view reason);

  asio::any_io_executor executor_;
  const config::Config& config_;
  kafka::ClientConfig kafka_config_;
  kafka::Producer& producer_;
  prometheus::Registry& registry_;
  MessageStore store_;
  std::atomic<bool> stopping_{false};
  prometheus::Counter& stored_;
  prometheus::Counter& duplicates_;
  prometheus::Family<prometheus::Counter>& dead_lettered_;
  prometheus::Counter& store_failures_;
  prometheus::Histogram& batch_seconds_;
};

}  // namespace mesh::messages
