#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "mesh/roles/offset_tracker.hpp"

using mesh::kafka::Consumer;
using mesh::roles::OffsetTracker;

namespace {

using Row = std::tuple<std::string, std::int32_t, std::int64_t>;

// Offsets as sortable tuples, so comparisons do not depend on the tracker's iteration order.
std::vector<Row> rows(const std::vector<Consumer::Offset>& offsets) {
  std::vector<Row> out;
  for (const auto& offset : offsets)
    out.emplace_back(offset.topic, offset.partition, offset.next_offset);
  std::sort(out.begin(), out.end());
  return out;
}

const OffsetTracker::Partition p0{"tasks.pending", 0};
const OffsetTracker::Partition p1{"tasks.pending", 1};
const OffsetTracker::Partition q0{"tasks.completed", 0};

}  // namespace

TEST_CASE("offset tracker: records finishing out of order commit only below the oldest in flight") {
  OffsetTracker tracker;
  for (std::int64_t offset = 0; offset < 4; ++offset) tracker.begin(p0, offset);
  CHECK(tracker.in_flight() == 4);
  // Nothing finished: offset 0 is still in flight, there is nothing to commit.
  CHECK(tracker.take_committable().empty());

  tracker.finish(p0, 2);
  tracker.finish(p0, 1);
  CHECK(tracker.take_committable().empty());  // 0 still runs: 1 and 2 must not be committed
  CHECK(tracker.in_flight() == 2);

  tracker.finish(p0, 0);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 3}});

  tracker.finish(p0, 3);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 4}});
  CHECK(tracker.in_flight() == 0);
}

TEST_CASE("offset tracker: a partition resumed at a later offset commits from there") {
  OffsetTracker tracker;
  tracker.begin(p0, 100);
  tracker.begin(p0, 101);
  // Everything below 100 was committed before (the consumer resumed there): 100 is committable.
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 100}});
  tracker.finish(p0, 101);
  CHECK(tracker.take_committable().empty());
  tracker.finish(p0, 100);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 102}});
}

TEST_CASE("offset tracker: partitions and topics are tracked independently") {
  OffsetTracker tracker;
  tracker.begin(p0, 0);
  tracker.begin(p0, 1);
  tracker.begin(p1, 0);
  tracker.begin(p1, 1);
  tracker.begin(q0, 7);
  tracker.finish(p1, 0);
  tracker.finish(p1, 1);
  tracker.finish(p0, 1);  // p0 still waits for 0
  tracker.finish(q0, 7);
  CHECK(rows(tracker.take_committable()) ==
        std::vector<Row>{{"tasks.completed", 0, 8}, {"tasks.pending", 1, 2}});
  CHECK(tracker.in_flight() == 1);
  tracker.finish(p0, 0);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 2}});
}

TEST_CASE("offset tracker: only offsets that moved since the last call are returned") {
  OffsetTracker tracker;
  tracker.begin(p0, 0);
  tracker.begin(p1, 0);
  tracker.finish(p0, 0);
  tracker.finish(p1, 0);
  CHECK(rows(tracker.take_committable()) ==
        std::vector<Row>{{"tasks.pending", 0, 1}, {"tasks.pending", 1, 1}});
  CHECK(tracker.take_committable().empty());

  tracker.begin(p1, 1);
  tracker.finish(p1, 1);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 1, 2}});
  CHECK(tracker.take_committable().empty());

  SECTION("take_committable(only) returns the listed partitions and leaves the others due") {
    tracker.begin(p0, 1);
    tracker.begin(p1, 2);
    tracker.finish(p0, 1);
    tracker.finish(p1, 2);
    CHECK(rows(tracker.take_committable({p1})) == std::vector<Row>{{"tasks.pending", 1, 3}});
    CHECK(tracker.take_committable({p1}).empty());
    // An unknown partition in the list is skipped.
    CHECK(rows(tracker.take_committable({q0, p0})) == std::vector<Row>{{"tasks.pending", 0, 2}});
    CHECK(tracker.take_committable().empty());
  }
}

TEST_CASE("offset tracker: forget drops revoked partitions and their in-flight records") {
  OffsetTracker tracker;
  tracker.begin(p0, 0);
  tracker.begin(p0, 1);
  tracker.begin(p1, 5);
  tracker.finish(p0, 0);
  CHECK(rows(tracker.take_committable({p0})) == std::vector<Row>{{"tasks.pending", 0, 1}});

  tracker.forget({p0});
  CHECK(tracker.in_flight() == 1);
  // A record of the revoked partition finishing late changes nothing and commits nothing.
  tracker.finish(p0, 1);
  CHECK(tracker.in_flight() == 1);
  CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 1, 5}});
  CHECK(tracker.take_committable({p0}).empty());

  // Assigned again later: tracked from scratch.
  tracker.begin(p0, 1);
  CHECK(rows(tracker.take_committable({p0})) == std::vector<Row>{{"tasks.pending", 0, 1}});
  tracker.finish(p0, 1);
  CHECK(rows(tracker.take_committable({p0})) == std::vector<Row>{{"tasks.pending", 0, 2}});
}

TEST_CASE("offset tracker: finishing something never begun is ignored") {
  OffsetTracker tracker;
  SECTION("an unknown partition") {
    tracker.finish({"elsewhere", 3}, 10);
    CHECK(tracker.in_flight() == 0);
    CHECK(tracker.take_committable().empty());
  }
  SECTION("an offset that was never begun on a known partition") {
    tracker.begin(p0, 5);
    tracker.finish(p0, 9);  // never begun: must not raise what may be committed
    CHECK(tracker.in_flight() == 1);
    CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 5}});
    tracker.finish(p0, 5);
    CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 6}});
  }
  SECTION("an offset finished twice") {
    tracker.begin(p0, 0);
    tracker.begin(p0, 1);
    tracker.finish(p0, 0);
    tracker.finish(p0, 0);
    CHECK(tracker.in_flight() == 1);
    CHECK(rows(tracker.take_committable()) == std::vector<Row>{{"tasks.pending", 0, 1}});
  }
}
