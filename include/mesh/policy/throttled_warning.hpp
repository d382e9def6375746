#pragma once
// A warning that repeats on every request of a degraded path (Redis down) would flood the log:
// this lets one through per interval and counts the ones it held back.
#include <atomic>
#include <chrono>
#include <string_view>

#include "mesh/core/log.hpp"

namespace mesh::policy {

class ThrottledWarning {
 public:
  explicit ThrottledWarning(std::chrono::milliseconds interval = std::chrono::seconds(5))
      : interval_ms_(interval.count()) {}

  // Logs `message` (with the number of warnings suppressed since the last one) unless one
  // was logged less than the interval ago. Safe from any thread.
  void warn(spdlog::logger& logger, std::string_view message, std::string_view reason);

 private:
  const long long interval_ms_;
  std::atomic<long long> last_ms_{-1'000'000'000};
  std::atomic<long long> suppressed_{0};
};

}  // namespace mesh::policy
