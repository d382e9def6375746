#pragma once
// Topic creation at start-up, so every role can create what it needs and start in any order.
#include <chrono>
#include <string>
#include <vector>

#include "mesh/core/asio.hpp"
#include "mesh/kafka/config.hpp"

namespace mesh::kafka {

struct TopicSpec {
  std::string name;
  int partitions;
  int replication;
};

// Makes sure every topic in `topics` exists. It first reads the cluster metadata and only
// creates the missing topics (TOPIC_ALREADY_EXISTS from a concurrent creator counts as
// success). An existing topic whose partition count differs from its spec is logged at warn,
// never changed. Throws std::runtime_error naming the topics and the reason when the cluster
// cannot be reached, a creation fails, or `timeout` passes.
//
// Mock clusters: the librdkafka 2.0.2 mock cannot serve CreateTopics. When `config.brokers`
// names a MockCluster of this process, missing topics are created through it directly. Against
// an out-of-process mesh-kafka-mock, create the topics with its --topic flags: ensure_topics
// then finds them in the metadata and succeeds without creating anything.
//
// The metadata request of librdkafka 2.0.2 only exists as a blocking call; it runs on a
// short-lived helper thread so no io thread blocks.
Task<void> ensure_topics(const ClientConfig& config, std::vector<TopicSpec> topics,
                         std::chrono::milliseconds timeout);

}  // namespace mesh::kafka
