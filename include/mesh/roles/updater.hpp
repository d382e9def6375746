#pragma once
// The updater role, the only writer of the tasks table: consumes tasks.pending and
// tasks.completed in batches, upserts each batch in one transaction whose status only moves
// forward, and commits offsets only after the database commit. Duplicates and reordering
// change nothing.
#include <atomic>
#include <map>
#include <optional>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/json/object.hpp>

#include "mesh/config/config.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::roles {

// One poll's records reduced to one row per task, ready for the two upsert statements.
class TaskBatch {
 public:
  // Each returns the reason when the record cannot be used (then it is dead-lettered).
  std::optional<std::string> add_pending(std::string_view record);
  std::optional<std::string> add_completed(std::string_view record);

  bool empty() const { return pending_.empty() && completed_.empty(); }
  bool has_pending() const { return !pending_.empty(); }
  bool has_completed() const { return !completed_.empty(); }
  std::size_t size() const { return pending_.size() + completed_.size(); }
  // JSON arrays for jsonb_to_recordset.
  std::string pending_rows() const;
  std::string completed_rows() const;

 private:
  std::map<std::string, boost::json::object> pending_;
  std::map<std::string, boost::json::object> completed_;
};

// Writes one batch in one transaction.
Task<void> store(pg::Pool& pool, const TaskBatch& batch);

class Updater {
 public:
  Updater(asio::any_io_executor executor, const config::Config& config,
          kafka::ClientConfig kafka_config, pg::Pool& pool, kafka::Producer& producer,
          prometheus::Registry& registry);

  Task<void> run();
  void stop();

 private:
  enum class StoreOutcome { stored, rejected, stopped };
  // Retries transient failures; `rejected` when Postgres refuses the data itself.
  Task<StoreOutcome> store_with_retry(const TaskBatch& batch);
  // Publishes to tasks.dlq, retrying; false when stopping first.
  Task<bool> dead_letter(const kafka::Message& message, std::string_view reason);

  asio::any_io_executor executor_;
  const config::Config& config_;
  kafka::ClientConfig kafka_config_;
  pg::Pool& pool_;
  kafka::Producer& producer_;
  prometheus::Registry& registry_;
  std::atomic<bool> stopping_{false};
  prometheus::Counter& rows_written_;
  prometheus::Counter& dead_lettered_;
  prometheus::Counter& store_failures_;
};

}  // namespace mesh::roles
