#include "mesh/policy/throttled_warning.hpp"

namespace mesh::policy {

void ThrottledWarning::warn(spdlog::logger& logger, std::string_view message,
                            std::string_view reason) {
  const long long now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
  long long last = last_ms_.load(std::memory_order_relaxed);
  if (now - last < interval_ms_ ||
      !last_ms_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const long long suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
  log::event(
      logger, spdlog::level::warn, message,
      {{"reason", reason}, {"suppressed_since_last", static_cast<std::int64_t>(suppressed)}});
}

}  // namespace mesh::policy
