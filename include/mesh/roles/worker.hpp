#pragma once
// The worker role: consumes tasks.pending, runs each task (CPU-bound ones on the bounded CPU
// pool, sleeps on timers), publishes the outcome to tasks.completed, and commits a record's
// offset only after that outcome's delivery report. Undecodable records and tasks that keep
// failing go to tasks.dlq with the reason.
#include <atomic>
#include <memory>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "mesh/config/config.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/roles/offset_tracker.hpp"

#include "mesh/tasks/records.hpp"

namespace mesh::roles {

// Runs one decoded task to its completed record, retrying a throwing execution up to
// `max_attempts` times. Deterministic: the same task gives the same result.
Task<tasks::CompletedTask> run_task(const tasks::PendingTask& task, asio::thread_pool& cpu,
                                    int max_attempts);

class Worker {
 public:
  Worker(asio::any_io_executor executor, const config::Config& config,
         kafka::ClientConfig kafka_config, kafka::Producer& producer, asio::thread_pool& cpu,
         prometheus::Registry& registry);

  // Consumes until stop(); then lets in-flight tasks finish up to `drain` and commits.
  Task<void> run();
  void stop();

 private:
  Task<void> process(kafka::Message message);

  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer room_;  // cancelled whenever a task finishes
  const config::Config& config_;
  kafka::ClientConfig kafka_config_;
  kafka::Producer& producer_;
  asio::thread_pool& cpu_;
  prometheus::Registry& registry_;
  OffsetTracker tracker_;
  std::size_t in_flight_ = 0;
  std::atomic<bool> stopping_{false};
  prometheus::Family<prometheus::Counter>& tasks_done_;
  prometheus::Counter& dead_lettered_;
  prometheus::Gauge& in_flight_gauge_;
};

}  // namespace mesh::roles
