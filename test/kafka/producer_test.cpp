#include <atomic>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "mesh/kafka/error.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::kafka {
namespace {

using namespace std::chrono_literals;
using test::client_config;
using test::metric;

Task<void> produce_and_count(Producer& producer, std::string topic, int i, std::atomic<int>& acked,
                             std::atomic<int>& failed) {
  const auto key = "key-" + std::to_string(i);
  const auto result = co_await producer.produce(topic, key, "value-" + std::to_string(i));
  ++(result ? failed : acked);
}

Task<void> produce_into(Producer& producer, std::string topic, std::vector<error_code>& results) {
  results.push_back(co_await producer.produce(topic, "k", "v"));
}

// Produces until a record is acknowledged or `timeout` passes; returns the last result.
Task<error_code> produce_until_acked(Producer& producer, std::string topic,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  error_code result;
  do {
    result = co_await producer.produce(topic, "k", "v");
  } while (result && std::chrono::steady_clock::now() < deadline);
  co_return result;
}

TEST_CASE("1,000 concurrent produce() calls are all acknowledged") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("many", 6);
  prometheus::Registry registry;
  Producer producer(io.get_executor(), client_config(cluster), registry);
  std::atomic<int> acked{0}, failed{0};
  for (int i = 0; i < 1000; ++i) {
    asio::co_spawn(io, produce_and_count(producer, "many", i, acked, failed), asio::detached);
  }
  testing::run(io, test::eventually([&] { return acked + failed == 1000; }));
  CHECK(failed == 0);
  CHECK(acked == 1000);
  CHECK(metric(registry, "mesh_kafka_produced_total", {{"topic", "many"}}) == 1000.0);
  CHECK(metric(registry, "mesh_kafka_produce_seconds") == 1000.0);
  CHECK(metric(registry, "mesh_kafka_produce_errors_total", {{"topic", "many"}}).value_or(0) == 0);
}

TEST_CASE("produce() is safe from several threads of one executor") {
  auto& cluster = test::shared_cluster();
  cluster.create_topic("threads", 3);
  prometheus::Registry registry;
  asio::thread_pool pool(3);
  std::atomic<int> acked{0}, failed{0};
  {
    Producer producer(pool.get_executor(), client_config(cluster), registry);
    for (int i = 0; i < 300; ++i) {
      asio::co_spawn(pool, produce_and_count(producer, "threads", i, acked, failed),
                     asio::detached);
    }
    REQUIRE(testing::wait_until([&] { return acked + failed == 300; }, 15s));
    auto flushed = asio::co_spawn(pool, producer.flush(5s), asio::use_future);
    CHECK_FALSE(flushed.get());
  }
  pool.join();
  CHECK(acked == 300);
}

TEST_CASE("all brokers down: produce() fails within message.timeout.ms, then recovers") {
  asio::io_context io;
  MockCluster cluster(3);
  cluster.create_topic("down", 2, 3);
  prometheus::Registry registry;
  Producer producer(io.get_executor(), client_config(cluster, {{"message.timeout.ms", "1000"}}),
                    registry);
  REQUIRE(producer.message_timeout() == 1000ms);
  testing::run(io, [](Producer& producer, MockCluster& cluster) -> Task<void> {
    // The first record also waits for the idempotent producer id, which can take about a
    // second: retry it rather than lengthen the timeout under test.
    const auto before = co_await produce_until_acked(producer, "down", 15s);
    REQUIRE_FALSE(before);
    for (int broker = 1; broker <= 3; ++broker) cluster.set_broker_down(broker, true);

    const auto started = std::chrono::steady_clock::now();
    const auto result = co_await producer.produce("down", "k", "while down");
    const auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK(result == make_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
    CHECK(result.message() == "Local: Message timed out");
    // librdkafka scans for timed-out records about once a second.
    CHECK(elapsed < 2500ms);

    for (int broker = 1; broker <= 3; ++broker) cluster.set_broker_down(broker, false);
    const auto after = co_await produce_until_acked(producer, "down", 15s);
    CHECK_FALSE(after);
  }(producer, cluster));
  CHECK(metric(registry, "mesh_kafka_produce_errors_total", {{"topic", "down"}}) >= 1.0);
}

TEST_CASE("request errors injected on the mock: retriable ones are retried, others returned") {
  asio::io_context io;
  MockCluster cluster;
  cluster.create_topic("faults", 1);
  prometheus::Registry registry;
  Producer producer(io.get_executor(), client_config(cluster), registry);
  testing::run(io, [](Producer& producer, MockCluster& cluster) -> Task<void> {
    const auto warm_up = co_await producer.produce("faults", "k", "warm-up");
    REQUIRE_FALSE(warm_up);
    cluster.push_request_errors(api_key::kProduce, {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
    const auto retried = co_await producer.produce("faults", "k", "retried");
    CHECK_FALSE(retried);
    cluster.push_request_errors(api_key::kProduce, {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE});
    const auto denied = co_await producer.produce("faults", "k", "denied");
    CHECK(denied == make_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
    CHECK(std::string(denied.category().name()) == "kafka");
    const auto fine_again = co_await producer.produce("faults", "k", "fine again");
    CHECK_FALSE(fine_again);
  }(producer, cluster));
}

TEST_CASE("a full local queue fails produce() at once") {
  asio::io_context io;
  MockCluster cluster;
  cluster.create_topic("full", 1);
  cluster.set_broker_down(1, true);
  cluster.set_broker_down(2, true);
  cluster.set_broker_down(3, true);
  prometheus::Registry registry;
  auto producer = std::make_unique<Producer>(
      io.get_executor(), client_config(cluster, {{"queue.buffering.max.messages", "2"}}), registry);
  std::vector<error_code> results;
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(io, produce_into(*producer, "full", results), asio::detached);
  testing::run(io, test::eventually([&] { return !results.empty(); }));
  REQUIRE(results.size() == 1);
  CHECK(results[0] == make_error(RD_KAFKA_RESP_ERR__QUEUE_FULL));

  // Destroying the producer completes the two queued records with a purge error.
  producer.reset();
  testing::run(io, test::eventually([&] { return results.size() == 3; }));
  CHECK(results[1] == make_error(RD_KAFKA_RESP_ERR__PURGE_QUEUE));
  CHECK(results[2] == make_error(RD_KAFKA_RESP_ERR__PURGE_QUEUE));
  // The mock cluster takes a second to shut down with brokers down.
  for (int broker = 1; broker <= 3; ++broker) cluster.set_broker_down(broker, false);
}

TEST_CASE("flush() waits for the delivery reports of everything produced") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("flush", 2);
  prometheus::Registry registry;
  Producer producer(io.get_executor(), client_config(cluster, {{"linger.ms", "200"}}), registry);
  std::vector<error_code> results;
  for (int i = 0; i < 20; ++i)
    asio::co_spawn(io, produce_into(producer, "flush", results), asio::detached);
  testing::run(io, [](Producer& producer) -> Task<void> {
    const auto flushed = co_await producer.flush(5s);
    CHECK_FALSE(flushed);
  }(producer));
  // The completions are posted: let them run.
  testing::run(io, test::eventually([&] { return results.size() == 20; }));
  for (const auto& result : results) CHECK_FALSE(result);
}

TEST_CASE("delivery rules cannot be configured away") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  prometheus::Registry registry;
  CHECK_THROWS_AS(Producer(io.get_executor(), client_config(cluster, {{"acks", "1"}}), registry),
                  std::invalid_argument);
  CHECK_THROWS_AS(Producer(io.get_executor(),
                           client_config(cluster, {{"enable.idempotence", "false"}}), registry),
                  std::invalid_argument);
  CHECK_THROWS_WITH(
      Producer(io.get_executor(), client_config(cluster, {{"linger.ms", "soon"}}), registry),
      Catch::Contains("linger.ms=soon"));
}

}  // namespace
}  // namespace mesh::kafka
