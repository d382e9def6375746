#pragma once
// Pieces shared by the clients of this module; not part of its interface.
#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/core/log.hpp"
#include "mesh/kafka/config.hpp"

namespace mesh::kafka::detail {

const log::Logger& logger();

// Throws std::invalid_argument when config.properties sets one of `keys` to a value outside
// `allowed`: the delivery rules depend on these settings.
void require_property(const ClientConfig& config, std::initializer_list<std::string_view> keys,
                      std::initializer_list<std::string_view> allowed);

// The level for an error_cb report: connection errors are debug, because librdkafka's own log
// line (forwarded by make_conf) already said it; anything else is a warning.
spdlog::level::level_enum client_error_level(int err);

// librdkafka's error string of an rd_kafka_error_t, which it then destroys.
std::string take_error(rd_kafka_error_t* error);

// Wakes Asio when a librdkafka queue becomes non-empty: librdkafka writes to an eventfd only on
// the empty -> non-empty transition, so after a wake-up the owner drains the eventfd first and
// then serves the queue until it is empty. A slow timer covers anything missed.
class QueueSignal {
 public:
  explicit QueueSignal(asio::any_io_executor executor);
  QueueSignal(const QueueSignal&) = delete;
  QueueSignal& operator=(const QueueSignal&) = delete;

  // The eventfd must stay open while attached: detach before destroying this object.
  void attach(rd_kafka_queue_t* queue);
  static void detach(rd_kafka_queue_t* queue);

  void drain();
  // Returns when the eventfd is readable, `max` has passed, or cancel() was called.
  Task<void> wait(std::chrono::steady_clock::duration max);
  void cancel();

 private:
  asio::posix::stream_descriptor descriptor_;
  asio::steady_timer timer_;
};

// A librdkafka queue whose io events go to its own QueueSignal, detached before either dies.
class SignalledQueue {
 public:
  SignalledQueue(asio::any_io_executor executor, QueuePtr queue);
  ~SignalledQueue() { reset(); }
  SignalledQueue(const SignalledQueue&) = delete;
  SignalledQueue& operator=(const SignalledQueue&) = delete;

  rd_kafka_queue_t* get() const { return queue_.get(); }
  QueueSignal& signal() { return signal_; }
  // Detaches and destroys the queue now (it must go before its rd_kafka_t); the eventfd stays
  // open until this object dies, so pending waits complete normally.
  void reset();

 private:
  QueueSignal signal_;
  QueuePtr queue_;
};

// Creates a topic on a MockCluster of this process whose bootstrap shares a broker with
// `brokers`; nullopt when there is none.
std::optional<rd_kafka_resp_err_t> create_topic_on_local_mock(std::string_view brokers,
                                                              const std::string& topic,
                                                              int partitions, int replication);

}  // namespace mesh::kafka::detail
