#pragma once
// A Kafka producer whose produce() completes when the broker acknowledged the record: the
// gateway answers 202 only after that (acks=all, idempotent).
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>

#include "mesh/core/asio.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/header.hpp"

namespace mesh::kafka {

namespace detail {
struct ProducerState;
}

class Producer {
 public:
  // Defaults, each overridable through config.properties: linger.ms=1 (callers wait for acks),
  // message.timeout.ms=5000, partitioner=murmur2_random (the Java client's, so other
  // languages pick the same partition for a key). acks=all and enable.idempotence=true are
  // delivery rules: a property contradicting them throws std::invalid_argument. Throws
  // std::runtime_error when librdkafka rejects the configuration.
  //
  // Delivery reports are served on a strand of `executor`, woken by librdkafka through an
  // eventfd, with a slow timer as a fallback.
  Producer(asio::any_io_executor executor, ClientConfig config, prometheus::Registry& registry);
  // Purges what is still queued or in flight: those produce() calls complete with
  // RD_KAFKA_RESP_ERR__PURGE_QUEUE or __PURGE_INFLIGHT. Call flush() first to deliver them.
  // Destroy the producer before the io_context its executor belongs to.
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Sends one record and completes, on the awaiting coroutine's executor, once its delivery
  // report arrived: success means every in-sync replica has it. Otherwise a kafka error
  // (error_category()): RD_KAFKA_RESP_ERR__MSG_TIMED_OUT when no ack came within
  // message_timeout(), RD_KAFKA_RESP_ERR__QUEUE_FULL at once when the local queue is full
  // (never blocks). There is no per-call timeout: librdkafka only has a producer-wide
  // message.timeout.ms, and abandoning the wait earlier would leave a record that may still be
  // written after the caller reported failure. Cancelling the awaiting coroutine does not
  // cancel the send either.
  //
  // An empty key is sent as a null key (partition chosen at random); an empty value as an
  // empty, non-null value. Safe to call concurrently from any threads.
  Task<error_code> produce(std::string_view topic, std::string_view key, std::string_view value,
                           std::vector<Header> headers = {});

  // Waits until everything produced so far has its delivery report, or `timeout` passes
  // (returns RD_KAFKA_RESP_ERR__TIMED_OUT, with the count left logged). For shutdown.
  Task<error_code> flush(std::chrono::milliseconds timeout);

  // The deadline of one record from produce() to its delivery report (message.timeout.ms).
  std::chrono::milliseconds message_timeout() const;

  // False once the client statistics (every second) show no broker connection up: for
  // readiness. True before the first statistics.
  bool broker_up() const;

 private:
  std::unique_ptr<detail::ProducerState> state_;
};

}  // namespace mesh::kafka
