#pragma once
// Which offsets a consumer may commit when records finish out of order: for each partition,
// everything below the oldest record still in flight.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mesh/kafka/consumer.hpp"

namespace mesh::roles {

class OffsetTracker {
 public:
  using Partition = std::pair<std::string, std::int32_t>;

  void begin(const Partition& partition, std::int64_t offset);
  // Unknown partitions (revoked meanwhile) are ignored.
  void finish(const Partition& partition, std::int64_t offset);

  // Offsets that moved since the last call, for every tracked partition (or only `only`).
  std::vector<kafka::Consumer::Offset> take_committable();
  std::vector<kafka::Consumer::Offset> take_committable(const std::vector<Partition>& only);

  void forget(const std::vector<Partition>& partitions);
  std::size_t in_flight() const;

 private:
  struct State {
    std::set<std::int64_t> in_flight;
    std::int64_t highest_finished = -1;
    std::int64_t committed = -1;  // next offset last handed out for commit
  };
  static std::int64_t next_offset(const State& state);
  std::map<Partition, State> partitions_;
};

}  // namespace mesh::roles
