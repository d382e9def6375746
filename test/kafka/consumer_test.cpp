// Consumer tests against the librdkafka 2.0.2 mock cluster. Its group coordinator differs from
// a real broker in ways these tests live with:
// - a new group waits a fixed 3 s for more members before its first assignment;
// - after a member leaves it waits session.timeout.ms - 1 s for the others to rejoin;
// - a member whose SyncGroup arrives after the leader's gets INVALID_REQUEST and rejoins, which
//   starts another round of that wait: two members joining at once may need a few rounds;
// - it refuses OffsetCommit with REBALANCE_IN_PROGRESS once a rebalance started, so with the
//   eager protocol a remaining member cannot commit from on_revoke (a real broker accepts that
//   commit); the leaving member commits before its LeaveGroup and succeeds.
#include <algorithm>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>

#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::kafka {
namespace {

using namespace std::chrono_literals;
using test::client_config;
using test::gather;
using test::metric;
using Partition = std::pair<std::string, int32_t>;

Task<void> produce_one(Producer& producer, std::string topic, int i, int& pending) {
  const auto result = co_await producer.produce(topic, "key-" + std::to_string(i % 7),
                                                "value-" + std::to_string(i));
  CHECK_FALSE(result);
  --pending;
}

// Produces value-<from> .. value-<to - 1> concurrently and waits for every acknowledgement.
Task<void> produce_all(Producer& producer, std::string topic, int from, int to) {
  int pending = to - from;
  for (int i = from; i < to; ++i) {
    asio::co_spawn(co_await asio::this_coro::executor, produce_one(producer, topic, i, pending),
                   asio::detached);
  }
  const bool acked = co_await test::eventually([&] { return pending == 0; });
  REQUIRE(acked);
}

std::set<std::string> values(const std::vector<Message>& messages) {
  std::set<std::string> out;
  for (const auto& message : messages) out.insert(message.value);
  return out;
}

TEST_CASE("produce then consume: keys, values, headers, partitions by key") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("roundtrip", 3);
  prometheus::Registry registry;
  const auto config = client_config(cluster);
  Producer producer(io.get_executor(), config, registry);
  testing::run(io, [](Producer& producer) -> Task<void> {
    for (int i = 0; i < 12; ++i) {
      const auto n = std::to_string(i);
      // Never co_await inside a Catch macro: GCC 12 evaluates it twice there.
      std::vector<Header> headers{{"request-id", "r-" + n}, {"n", n}};
      const auto result = co_await producer.produce("roundtrip", "key-" + std::to_string(i % 3),
                                                    "value-" + n, std::move(headers));
      REQUIRE_FALSE(result);
    }
    const auto empty = co_await producer.produce("roundtrip", "", "");
    REQUIRE_FALSE(empty);
  }(producer));

  Consumer consumer(io.get_executor(), config, "roundtrip-group", {"roundtrip"}, registry);
  const auto messages = testing::run(io, gather(consumer, 13));
  REQUIRE(messages.size() == 13);
  std::map<std::string, int32_t> partition_of_key;
  for (const auto& message : messages) {
    CHECK(message.topic == "roundtrip");
    CHECK(message.timestamp_ms > 0);
    if (message.value.empty()) {
      CHECK(message.key.empty());
      CHECK(message.headers.empty());
      continue;
    }
    const auto n = message.value.substr(6);
    CHECK(message.key == "key-" + std::to_string(std::stoi(n) % 3));
    INFO("value " << message.value << " key " << message.key << " partition " << message.partition
                  << " offset " << message.offset);
    REQUIRE(message.headers.size() == 2);
    CHECK(message.headers[0].key == "request-id");
    CHECK(message.headers[0].value == "r-" + n);
    CHECK(message.headers[1].key == "n");
    CHECK(message.headers[1].value == n);
    const auto [it, inserted] = partition_of_key.emplace(message.key, message.partition);
    CHECK(it->second == message.partition);  // one key, one partition
  }
  CHECK(metric(registry, "mesh_kafka_produced_total", {{"topic", "roundtrip"}}) == 13.0);
  CHECK(metric(registry, "mesh_kafka_consumed_total",
               {{"group", "roundtrip-group"}, {"topic", "roundtrip"}}) == 13.0);
  testing::run(io, consumer.close());
}

TEST_CASE("a new consumer resumes exactly after the committed offsets") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("commits", 2);
  prometheus::Registry registry;
  const auto config = client_config(cluster);
  Producer producer(io.get_executor(), config, registry);
  testing::run(io, produce_all(producer, "commits", 0, 20));

  std::map<int32_t, int64_t> committed;  // partition -> next offset
  std::set<std::string> processed;
  {
    Consumer first(io.get_executor(), config, "commit-group", {"commits"}, registry);
    auto messages = testing::run(io, gather(first, 20));
    REQUIRE(messages.size() == 20);
    // "Process" the first half of each partition and commit that, nothing more.
    std::map<int32_t, std::vector<Message>> by_partition;
    for (auto& message : messages) by_partition[message.partition].push_back(message);
    REQUIRE(by_partition.size() == 2);
    std::vector<Consumer::Offset> offsets;
    for (auto& [partition, list] : by_partition) {
      std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
      const auto half = list.size() / 2;
      for (std::size_t i = 0; i < half; ++i) processed.insert(list[i].value);
      committed[partition] = list[half].offset;
      offsets.push_back({"commits", partition, list[half].offset});
    }
    REQUIRE_FALSE(first.commit(offsets));
    testing::run(io, first.close());
  }

  Consumer second(io.get_executor(), config, "commit-group", {"commits"}, registry);
  const auto redelivered = testing::run(io, gather(second, 20 - processed.size()));
  REQUIRE(redelivered.size() == 20 - processed.size());
  for (const auto& message : redelivered) {
    CHECK(message.offset >= committed.at(message.partition));
    CHECK(processed.count(message.value) == 0);
  }
  // Exactly once more each: nothing beyond what was left uncommitted.
  CHECK(values(redelivered).size() == redelivered.size());
  CHECK(testing::run(io, second.poll_batch(10, 300ms)).empty());
  testing::run(io, second.close());
}

struct Member;
Task<void> poll_until_stopped(Consumer& consumer, Member& member);

struct Member {
  std::set<Partition> assigned;
  std::vector<std::vector<Partition>> revocations;
  std::vector<error_code> commits;  // one per revocation
  std::vector<Message> received;
  bool stop = false;
  bool stopped = false;

  // on_revoke commits everything received so far: the pattern for an owner that finished its
  // work before the partitions go.
  void watch(Consumer& consumer) {
    consumer.on_assign = [this](const Consumer::Partitions& partitions) {
      assigned.insert(partitions.begin(), partitions.end());
    };
    consumer.on_revoke = [this, &consumer](const Consumer::Partitions& partitions) {
      revocations.push_back(partitions);
      for (const auto& partition : partitions) assigned.erase(partition);
      std::map<Partition, int64_t> next;
      for (const auto& message : received) {
        auto& offset = next[{message.topic, message.partition}];
        offset = std::max(offset, message.offset + 1);
      }
      std::vector<Consumer::Offset> offsets;
      for (const auto& [partition, offset] : next) {
        offsets.push_back({partition.first, partition.second, offset});
      }
      commits.push_back(consumer.commit(offsets));
    };
  }

  // The poll loop must have returned before its consumer is closed: one owner at a time.
  void stop_polling(asio::io_context& io) {
    stop = true;
    REQUIRE(testing::run(io, test::eventually([this] { return stopped; })));
  }
};

Task<void> poll_until_stopped(Consumer& consumer, Member& member) {
  while (!member.stop) {
    auto batch = co_await consumer.poll_batch(100, 50ms);
    for (auto& message : batch) member.received.push_back(std::move(message));
  }
  member.stopped = true;
}

// Two members split four partitions; b leaves, committing what it processed from on_revoke, so
// a takes over b's partitions exactly after that work.
void split_then_leave(const std::string& name, const Properties& strategy) {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic(name, 4);
  prometheus::Registry registry;
  const auto config = client_config(cluster, strategy);
  Producer producer(io.get_executor(), config, registry);

  Member a, b;
  Consumer consumer_a(io.get_executor(), config, name + "-group", {name}, registry);
  a.watch(consumer_a);
  asio::co_spawn(io, poll_until_stopped(consumer_a, a), asio::detached);
  {
    Consumer consumer_b(io.get_executor(), config, name + "-group", {name}, registry);
    b.watch(consumer_b);
    asio::co_spawn(io, poll_until_stopped(consumer_b, b), asio::detached);

    // Forming a two-member group can take a few rounds on the mock (see the top of this file).
    REQUIRE(testing::run(
        io, test::eventually([&] { return a.assigned.size() == 2 && b.assigned.size() == 2; }, 45s),
        50s));
    for (const auto& partition : a.assigned) CHECK(b.assigned.count(partition) == 0);

    testing::run(io, produce_all(producer, name, 0, 40));
    REQUIRE(testing::run(
        io, test::eventually([&] { return a.received.size() + b.received.size() == 40; })));
    CHECK_FALSE(a.received.empty());
    CHECK_FALSE(b.received.empty());

    // Forming the group may have taken more than one round, each revoking once: only the
    // revocation of leaving counts here.
    const auto b_partitions = b.assigned;
    const auto revocations_before = b.revocations.size();
    b.stop_polling(io);
    testing::run(io, consumer_b.close());
    REQUIRE(b.revocations.size() == revocations_before + 1);
    CHECK(std::set<Partition>(b.revocations.back().begin(), b.revocations.back().end()) ==
          b_partitions);
    REQUIRE(b.commits.size() == b.revocations.size());
    CHECK_FALSE(b.commits.back());
  }
  REQUIRE(testing::run(io, test::eventually([&] { return a.assigned.size() == 4; })));

  // a's own commit from on_revoke fails on the mock (see the header of this file), so a may
  // read its own records again: at least once. b's committed work never comes back, and the
  // records produced now arrive from all four partitions.
  const auto before = a.received.size();
  testing::run(io, produce_all(producer, name, 40, 80));
  std::set<std::string> wanted;
  for (int i = 40; i < 80; ++i) wanted.insert("value-" + std::to_string(i));
  const auto received_since = [&] {
    return std::vector<Message>(a.received.begin() + static_cast<std::ptrdiff_t>(before),
                                a.received.end());
  };
  REQUIRE(testing::run(io, test::eventually([&] {
                         const auto got = values(received_since());
                         return std::includes(got.begin(), got.end(), wanted.begin(), wanted.end());
                       })));
  const auto b_values = values(b.received);
  std::set<int32_t> partitions;
  for (const auto& message : received_since()) {
    CHECK(b_values.count(message.value) == 0);
    if (wanted.count(message.value) != 0) partitions.insert(message.partition);
  }
  CHECK(partitions.size() == 4);
  a.stop_polling(io);
  testing::run(io, consumer_a.close());
}

TEST_CASE("two consumers split the partitions; a leaving member commits from on_revoke") {
  split_then_leave("split-eager", {});
}

// The 2.0.2 mock group coordinator serves the cooperative protocol too, but every incremental
// rebalance costs another session timeout: run on demand with [cooperative].
TEST_CASE("the same with the cooperative-sticky protocol", "[.][cooperative]") {
  split_then_leave("split-cooperative", {{"partition.assignment.strategy", "cooperative-sticky"}});
}

TEST_CASE("pause() stops delivery, resume() restarts it without skipping") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("pause", 1);
  prometheus::Registry registry;
  const auto config = client_config(cluster);
  Producer producer(io.get_executor(), config, registry);
  Consumer consumer(io.get_executor(), config, "pause-group", {"pause"}, registry);

  testing::run(io, produce_all(producer, "pause", 0, 5));
  REQUIRE(testing::run(io, gather(consumer, 5)).size() == 5);

  consumer.pause();
  testing::run(io, produce_all(producer, "pause", 5, 10));
  CHECK(testing::run(io, consumer.poll_batch(100, 500ms)).empty());
  consumer.resume();
  auto resumed = testing::run(io, gather(consumer, 2));
  REQUIRE(resumed.size() >= 1);
  CHECK(resumed[0].offset == 5);

  // Pause with records fetched but not yet returned: they come back after resume.
  const auto next = resumed.back().offset + 1;
  consumer.pause();
  CHECK(testing::run(io, consumer.poll_batch(100, 300ms)).empty());
  consumer.resume();
  const auto rest = testing::run(io, gather(consumer, static_cast<std::size_t>(10 - next)));
  REQUIRE(rest.size() == static_cast<std::size_t>(10 - next));
  for (std::size_t i = 0; i < rest.size(); ++i)
    CHECK(rest[i].offset == next + static_cast<int64_t>(i));
  testing::run(io, consumer.close());
}

TEST_CASE("the lag gauge follows the committed offsets") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("lag", 1);
  prometheus::Registry registry;
  const auto config = client_config(cluster, {{"statistics.interval.ms", "100"}});
  Producer producer(io.get_executor(), config, registry);
  Consumer consumer(io.get_executor(), config, "lag-group", {"lag"}, registry);
  testing::run(io, produce_all(producer, "lag", 0, 10));
  const auto messages = testing::run(io, gather(consumer, 10));
  REQUIRE(messages.size() == 10);
  REQUIRE_FALSE(consumer.commit({{"lag", 0, 4}}));
  const std::map<std::string, std::string> labels{
      {"group", "lag-group"}, {"topic", "lag"}, {"partition", "0"}};
  bool settled = false;
  testing::run(io,
               [](Consumer& consumer, prometheus::Registry& registry,
                  const std::map<std::string, std::string>& labels, bool& settled) -> Task<void> {
                 const auto deadline = std::chrono::steady_clock::now() + 10s;
                 while (!settled && std::chrono::steady_clock::now() < deadline) {
                   const auto batch = co_await consumer.poll_batch(10, 100ms);
                   REQUIRE(batch.empty());
                   settled = metric(registry, "mesh_kafka_consumer_lag", labels) == 6.0;
                 }
               }(consumer, registry, labels, settled));
  CHECK(settled);
  testing::run(io, consumer.close());
}

TEST_CASE("consumer delivery rules cannot be configured away") {
  asio::io_context io;
  prometheus::Registry registry;
  CHECK_THROWS_AS(Consumer(io.get_executor(),
                           client_config(test::shared_cluster(), {{"enable.auto.commit", "true"}}),
                           "g", {"t"}, registry),
                  std::invalid_argument);
}

}  // namespace
}  // namespace mesh::kafka
