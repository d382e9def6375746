#include "mesh/kafka/publish.hpp"

#include <algorithm>

#include "mesh/core/log.hpp"
#include "mesh/core/sleep.hpp"

namespace mesh::kafka {

Task<bool> publish_until_acked(Producer& producer, std::string_view topic, std::string_view key,
                               const std::string& value, const std::vector<Header>& headers,
                               const std::atomic<bool>* stopping) {
  auto backoff = std::chrono::milliseconds(50);
  while (true) {
    // Awaited into a local (see docs/development.md on GCC 12 coroutines).
    const auto failed = co_await producer.produce(topic, key, value, headers);
    if (!failed) co_return true;
    if (stopping != nullptr && *stopping) co_return false;
    log::get("kafka")->warn("publishing to {} failed: {}; retrying", topic, failed.message());
    co_await core::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

}  // namespace mesh::kafka
