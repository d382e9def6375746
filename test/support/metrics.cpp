#include "mesh/testing/metrics.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mesh::testing {

std::optional<double> metric(prometheus::Registry& registry, const std::string& name,
                             const std::map<std::string, std::string>& labels) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& sample : family.metric) {
      std::size_t matched = 0;
      for (const auto& label : sample.label) {
        const auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return sample.counter.value;
        case prometheus::MetricType::Gauge:
          return sample.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(sample.histogram.sample_count);
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

Task<bool> eventually(std::function<bool()> done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return done();
    timer.expires_after(std::chrono::milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return true;
}

}  // namespace mesh::testing
