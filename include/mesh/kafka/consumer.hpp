#pragma once
// A group consumer that commits offsets only when its owner says the work is done
// (enable.auto.commit=false, enable.auto.offset.store=false): a crash means redelivery, never
// loss.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/registry.h>

#include "mesh/core/asio.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/header.hpp"

namespace mesh::kafka {

struct Message {
  std::string topic;
  int32_t partition;
  int64_t offset;
  std::string key;  // empty for a null key
  std::string value;
  std::vector<Header> headers;
  int64_t timestamp_ms;  // -1 when the record has none
};

namespace detail {
struct ConsumerState;
}

class Consumer {
 public:
  // Offsets to commit: next_offset is the last processed offset + 1.
  struct Offset {
    std::string topic;
    int32_t partition;
    int64_t next_offset;
  };
  using Partitions = std::vector<std::pair<std::string, int32_t>>;
  using RebalanceHook = std::function<void(const Partitions&)>;

  // Subscribes `group_id` to `topics`. Defaults, overridable through config.properties:
  // auto.offset.reset=earliest, statistics.interval.ms=5000 (feeds the lag gauge). Setting
  // enable.auto.commit or enable.auto.offset.store to anything but false throws
  // std::invalid_argument; a configuration librdkafka rejects throws std::runtime_error.
  Consumer(asio::any_io_executor executor, ClientConfig config, std::string group_id,
           std::vector<std::string> topics, prometheus::Registry& registry);
  // Leaves the group if close() was not awaited (blocking up to session.timeout.ms, without
  // calling the hooks). Destroy the consumer before the io_context its executor belongs to.
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Not thread-safe: one coroutine owns the consumer and calls everything below.

  // Returns as soon as at least one message is available, with whatever else is already
  // fetched (up to max_messages), or empty after max_wait. Rebalances, statistics and commit
  // results are served here, so the owner must keep calling it (at least every
  // max.poll.interval.ms, also while paused). Non-fatal consumer errors are logged and counted;
  // a fatal one throws std::runtime_error.
  Task<std::vector<Message>> poll_batch(std::size_t max_messages,
                                        std::chrono::milliseconds max_wait);

  // Commits explicit offsets. A synchronous commit blocks the calling thread for one broker
  // round trip and returns its result; an asynchronous one returns at once (its result is served
  // by a later poll_batch()). Failures are logged and counted either way. An empty list is a
  // no-op. Committing from on_revoke is the way to hand finished work over in a rebalance.
  error_code commit(const std::vector<Offset>& offsets, bool async = false);

  // Stops (resumes) fetching from every assigned partition, including partitions assigned
  // while paused. Messages fetched but not yet returned are discarded and fetched again after
  // resume(), so nothing is skipped. For backpressure.
  void pause();
  void resume();

  // Called from inside poll_batch() (or close()) during a rebalance: on_revoke before the
  // partitions are taken away, so the owner can commit what it finished (synchronously), and
  // on_assign before the new partitions start fetching. Works with both the default eager
  // protocol and cooperative-sticky. Exceptions are logged and swallowed.
  RebalanceHook on_revoke;
  RebalanceHook on_assign;

  // Leaves the group cleanly (revoking through on_revoke, then LeaveGroup) without blocking
  // the io thread: librdkafka closes in the background and this coroutine serves the queue
  // until it is done. Messages fetched but not returned are dropped (they were not committed).
  Task<void> close();

 private:
  std::unique_ptr<detail::ConsumerState> state_;
};

}  // namespace mesh::kafka
