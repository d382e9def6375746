#pragma once
// Helpers shared by the kafka tests: client settings tuned for a fast mock cluster, gathering
// messages with a deadline, reading metrics and topic metadata.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include "mesh/testing/metrics.hpp"

#include <prometheus/registry.h>

#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/mock_cluster.hpp"

namespace mesh::kafka::test {

using namespace std::chrono_literals;

// One mock cluster for every test that leaves the brokers alone: librdkafka 2.0.2 often takes a
// second to shut a mock cluster down. Tests keep apart through their own topic and group names.
// Destroyed when the test run ends.
MockCluster& shared_cluster();

// MockCluster::client_properties() plus `extra`.
ClientConfig client_config(const MockCluster& cluster, Properties extra = {});

// Polls until `count` messages arrived or `timeout` passed.
Task<std::vector<Message>> gather(Consumer& consumer, std::size_t count,
                                  std::chrono::milliseconds timeout = 25s);

using testing::eventually;
using testing::metric;

// Partition count of every topic, read with a blocking metadata request (tests only).
std::map<std::string, int> topic_partitions(const std::string& bootstrap);

}  // namespace mesh::kafka::test
