#pragma once
// Shared by the pg tests: pools over fresh databases, failures as values, metric samples.
#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/pg/pool.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::pg::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline PoolOptions options_for(std::string url, std::size_t size = 4) {
  PoolOptions options;
  options.url = std::move(url);
  options.size = size;
  return options;
}

// The pg::Error a task ends with, or nullopt when it succeeds.
template <class T>
Task<std::optional<Error>> failure_of(Task<T> task) {
  try {
    co_await std::move(task);
  } catch (const Error& e) {
    co_return e;
  }
  co_return std::nullopt;
}

// Waits, on the io the caller runs on, until `done()` holds; throws after `timeout`.
inline Task<void> until(std::function<bool()> done, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!done()) {
    if (Clock::now() >= deadline) throw std::runtime_error("condition not met in time");
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// Runs tasks concurrently on `io` until all finish; returns how each ended.
inline std::vector<std::exception_ptr> run_all(asio::io_context& io, std::vector<Task<void>> tasks,
                                               std::chrono::milliseconds timeout = 30s) {
  std::vector<std::exception_ptr> outcomes(tasks.size());
  std::size_t finished = 0;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    asio::co_spawn(io, std::move(tasks[i]), [&outcomes, &finished, i](std::exception_ptr e) {
      outcomes[i] = e;
      ++finished;
    });
  }
  const auto deadline = Clock::now() + timeout;
  while (finished < outcomes.size() && Clock::now() < deadline) {
    io.restart();
    io.run_for(10ms);
  }
  if (finished < outcomes.size()) throw std::runtime_error("run_all: tasks did not finish in time");
  return outcomes;
}

// One sample of a metric: a counter's or gauge's value, a histogram's count. `label_value`
// picks the series with a label of that value.
inline double sample(prometheus::Registry& registry, std::string_view name,
                     std::string_view label_value = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      const bool matches =
          label_value.empty() || std::any_of(metric.label.begin(), metric.label.end(),
                                             [&](const prometheus::ClientMetric::Label& label) {
                                               return label.value == label_value;
                                             });
      if (!matches) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(metric.histogram.sample_count);
        default:
          return 0;
      }
    }
  }
  return 0;
}

}  // namespace mesh::pg::test
