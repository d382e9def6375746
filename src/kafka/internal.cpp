#include "internal.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <system_error>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mesh::kafka::detail {

const log::Logger& logger() {
  static const log::Logger instance = log::get("kafka");
  return instance;
}

void require_property(const ClientConfig& config, std::initializer_list<std::string_view> keys,
                      std::initializer_list<std::string_view> allowed) {
  for (const auto key : keys) {
    const auto it = config.properties.find(std::string(key));
    if (it == config.properties.end()) continue;
    bool ok = false;
    for (const auto value : allowed) ok = ok || it->second == value;
    if (!ok) {
      throw std::invalid_argument(
          "kafka property " + it->first + "=" + it->second +
          " contradicts the delivery rules (allowed: " + std::string(*allowed.begin()) + ")");
    }
  }
}

spdlog::level::level_enum client_error_level(int err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
      return spdlog::level::debug;
    default:
      return spdlog::level::warn;
  }
}

std::string take_error(rd_kafka_error_t* error) {
  const ErrorPtr owned(error);
  return owned ? rd_kafka_error_string(owned.get()) : "no error";
}

namespace {
int make_eventfd() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "kafka: eventfd");
  return fd;
}
}  // namespace

QueueSignal::QueueSignal(asio::any_io_executor executor)
    : descriptor_(executor, make_eventfd()), timer_(executor) {}

void QueueSignal::attach(rd_kafka_queue_t* queue) {
  // An eventfd only accepts 8-byte writes.
  static constexpr std::uint64_t kOne = 1;
  rd_kafka_queue_io_event_enable(queue, descriptor_.native_handle(), &kOne, sizeof(kOne));
}

void QueueSignal::detach(rd_kafka_queue_t* queue) {
  rd_kafka_queue_io_event_enable(queue, -1, nullptr, 0);
}

void QueueSignal::drain() {
  std::uint64_t count = 0;
  // Non-blocking: EAGAIN just means nothing was signalled since the last drain.
  [[maybe_unused]] const auto n = ::read(descriptor_.native_handle(), &count, sizeof(count));
}

Task<void> QueueSignal::wait(std::chrono::steady_clock::duration max) {
  using namespace asio::experimental::awaitable_operators;
  timer_.expires_after(max);
  const auto token = asio::as_tuple(asio::use_awaitable);
  co_await (descriptor_.async_wait(asio::posix::descriptor_base::wait_read, token) ||
            timer_.async_wait(token));
}

void QueueSignal::cancel() {
  descriptor_.cancel();
  timer_.cancel();
}

SignalledQueue::SignalledQueue(asio::any_io_executor executor, QueuePtr queue)
    : signal_(std::move(executor)), queue_(std::move(queue)) {
  signal_.attach(queue_.get());
}

void SignalledQueue::reset() {
  if (!queue_) return;
  QueueSignal::detach(queue_.get());
  queue_.reset();
}

}  // namespace mesh::kafka::detail
