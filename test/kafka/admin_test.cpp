#include <algorithm>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "mesh/kafka/admin.hpp"
#include "mesh/kafka/error.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::kafka {
namespace {

using namespace std::chrono_literals;

TEST_CASE("ensure_topics creates missing topics and is idempotent") {
  asio::io_context io;
  auto& cluster = test::shared_cluster();
  cluster.create_topic("existing", 5);
  const auto config = test::client_config(cluster);
  const std::vector<TopicSpec> topics{
      {"tasks.pending", 6, 3}, {"tasks.completed", 3, 1}, {"existing", 5, 1}};
  testing::run(io, ensure_topics(config, topics, 5s));
  testing::run(io, ensure_topics(config, topics, 5s));
  const auto partitions = test::topic_partitions(cluster.bootstrap());
  CHECK(partitions.at("tasks.pending") == 6);
  CHECK(partitions.at("tasks.completed") == 3);
  CHECK(partitions.at("existing") == 5);
}

TEST_CASE("ensure_topics fails with a clear message when the cluster is unreachable") {
  asio::io_context io;
  const ClientConfig config{"127.0.0.1:1", "mesh-test", {}};
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(testing::run(io, ensure_topics(config, {{"t", 1, 1}}, 500ms)),
                    Catch::Contains("cannot ensure topics [t]") && Catch::Contains("127.0.0.1:1"));
  CHECK(std::chrono::steady_clock::now() - started < 2s);
}

TEST_CASE("mock cluster: one address per broker; creating a topic twice is an error") {
  MockCluster cluster(2);
  const auto bootstrap = cluster.bootstrap();
  CHECK(std::count(bootstrap.begin(), bootstrap.end(), ',') == 1);
  cluster.create_topic("once", 1);
  CHECK_THROWS_WITH(cluster.create_topic("once", 1),
                    Catch::Contains("once") && Catch::Contains("already exists"));
}

TEST_CASE("kafka errors read well") {
  const auto timed_out = make_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
  CHECK(std::string(timed_out.category().name()) == "kafka");
  CHECK(timed_out.message() == "Local: Message timed out");
  CHECK_FALSE(make_error(RD_KAFKA_RESP_ERR_NO_ERROR));
}

TEST_CASE("make_conf rejects unknown properties with librdkafka's reason") {
  ClientConfig config{"127.0.0.1:9092", "mesh", {{"no.such.property", "1"}}};
  CHECK_THROWS_WITH(make_conf(config), Catch::Contains("no.such.property") &&
                                           Catch::Contains("No such configuration property"));
}

}  // namespace
}  // namespace mesh::kafka
