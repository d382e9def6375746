#include "mesh/roles/offset_tracker.hpp"

#include <algorithm>

namespace mesh::roles {

void OffsetTracker::begin(const Partition& partition, std::int64_t offset) {
  partitions_[partition].in_flight.insert(offset);
}

void OffsetTracker::finish(const Partition& partition, std::int64_t offset) {
  const auto it = partitions_.find(partition);
  if (it == partitions_.end()) return;
  if (it->second.in_flight.erase(offset) == 1) {
    it->second.highest_finished = std::max(it->second.highest_finished, offset);
  }
}

std::int64_t OffsetTracker::next_offset(const State& state) {
  if (!state.in_flight.empty()) return *state.in_flight.begin();
  return state.highest_finished + 1;
}

std::vector<kafka::Consumer::Offset> OffsetTracker::take_committable() {
  std::vector<kafka::Consumer::Offset> out;
  for (auto& [partition, state] : partitions_) {
    const auto next = next_offset(state);
    if (next > 0 && next > state.committed) {
      out.push_back({partition.first, partition.second, next});
      state.committed = next;
    }
  }
  return out;
}

std::vector<kafka::Consumer::Offset> OffsetTracker::take_committable(
    const std::vector<Partition>& only) {
  std::vector<kafka::Consumer::Offset> out;
  for (const auto& partition : only) {
    const auto it = partitions_.find(partition);
    if (it == partitions_.end()) continue;
    const auto next = next_offset(it->second);
    if (next > 0 && next > it->second.committed) {
      out.push_back({partition.first, partition.second, next});
      it->second.committed = next;
    }
  }
  return out;
}

void OffsetTracker::forget(const std::vector<Partition>& partitions) {
  for (const auto& partition : partitions) partitions_.erase(partition);
}

std::size_t OffsetTracker::in_flight() const {
  std::size_t total = 0;
  for (const auto& [partition, state] : partitions_) total += state.in_flight.size();
  return total;
}

}  // namespace mesh::roles
