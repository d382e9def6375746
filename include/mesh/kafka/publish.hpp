#pragma once
// Publishing a record whose source offset is committed only once it is acknowledged.
#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/core/asio.hpp"
#include "mesh/kafka/producer.hpp"

namespace mesh::kafka {

// Produces one record and retries with backoff (50 ms, doubling to 2 s) until Kafka
// acknowledges it: giving up would only block the source partition's commits. Returns false,
// unpublished, once `stopping` is set (never when it is null); the source record is then not
// committed and comes back after a restart.
Task<bool> publish_until_acked(Producer& producer, std::string_view topic, std::string_view key,
                               const std::string& value, const std::vector<Header>& headers,
                               const std::atomic<bool>* stopping = nullptr);

}  // namespace mesh::kafka
