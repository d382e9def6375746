#include "support.hpp"

#include <stdexcept>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
// The listener interface of Catch2 v2 is only declared with this.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

namespace mesh::kafka::test {
namespace {

std::unique_ptr<MockCluster>& shared_cluster_slot() {
  static std::unique_ptr<MockCluster> cluster;
  return cluster;
}

// Destroys the shared cluster while the rest of the process (loggers) is still alive.
struct SharedClusterReaper : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats&) override { shared_cluster_slot().reset(); }
};
CATCH_REGISTER_LISTENER(SharedClusterReaper)

}  // namespace

MockCluster& shared_cluster() {
  auto& cluster = shared_cluster_slot();
  if (!cluster) cluster = std::make_unique<MockCluster>();
  return *cluster;
}

ClientConfig client_config(const MockCluster& cluster, Properties extra) {
  ClientConfig config;
  config.brokers = cluster.bootstrap();
  config.client_id = "mesh-test";
  config.properties = MockCluster::client_properties();
  for (auto& [key, value] : extra) config.properties[key] = value;
  return config;
}

Task<std::vector<Message>> gather(Consumer& consumer, std::size_t count,
                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Message> all;
  while (all.size() < count && std::chrono::steady_clock::now() < deadline) {
    auto batch = co_await consumer.poll_batch(count - all.size(), 200ms);
    for (auto& message : batch) all.push_back(std::move(message));
  }
  co_return all;
}

std::map<std::string, int> topic_partitions(const std::string& bootstrap) {
  auto conf = make_conf(ClientConfig{bootstrap, "mesh-test-metadata", {}});
  char errstr[512];
  HandlePtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr)));
  if (!rk) throw std::runtime_error(errstr);
  conf.release();
  const struct rd_kafka_metadata* metadata = nullptr;
  if (const auto err = rd_kafka_metadata(rk.get(), 1, nullptr, &metadata, 5000); err) {
    throw std::runtime_error(rd_kafka_err2str(err));
  }
  std::map<std::string, int> out;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    out[metadata->topics[i].topic] = metadata->topics[i].partition_cnt;
  }
  rd_kafka_metadata_destroy(metadata);
  return out;
}

}  // namespace mesh::kafka::test
