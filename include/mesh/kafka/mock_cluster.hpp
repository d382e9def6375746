#pragma once
// librdkafka's in-memory mock cluster (rdkafka_mock.h): Kafka-protocol brokers on loopback for
// `--kafka-brokers=embedded`, tests and mesh-kafka-mock. It is not durable and not real Kafka.
//
// What the librdkafka 2.0.2 mock supports, as found by this module's tests and probes:
// - Produce (idempotent too), Fetch, ListOffsets, Metadata, consumer groups (JoinGroup,
//   SyncGroup, Heartbeat, LeaveGroup) with offset commits, rebalances when members join or
//   leave, and fault injection (brokers down, request errors, latency).
// - No CreateTopics: the admin request fails with "Failed while waiting for controller"
//   because the mock reports no controller. Topics are made with create_topic() (or
//   mesh-kafka-mock --topic) instead; ensure_topics() does that by itself for a MockCluster
//   living in the same process.
// - Auto-creation: a Metadata request that allows it (producers do; consumers do not by
//   default) creates a missing topic with 4 partitions. Create topics explicitly, with their
//   real partition counts, before anything produces to them.
#include <cstdint>
#include <string>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "mesh/kafka/config.hpp"
#include "mesh/kafka/handles.hpp"

namespace mesh::kafka {

// Kafka protocol request numbers for push_request_errors() (librdkafka keeps its own private).
namespace api_key {
inline constexpr int16_t kProduce = 0;
inline constexpr int16_t kFetch = 1;
inline constexpr int16_t kListOffsets = 2;
inline constexpr int16_t kMetadata = 3;
inline constexpr int16_t kOffsetCommit = 8;
inline constexpr int16_t kOffsetFetch = 9;
inline constexpr int16_t kFindCoordinator = 10;
inline constexpr int16_t kJoinGroup = 11;
inline constexpr int16_t kHeartbeat = 12;
inline constexpr int16_t kLeaveGroup = 13;
inline constexpr int16_t kSyncGroup = 14;
inline constexpr int16_t kInitProducerId = 22;
}  // namespace api_key

class MockCluster {
 public:
  // Starts `brokers` brokers (ids 1..brokers) on 127.0.0.1 with random ports. Throws
  // std::runtime_error if librdkafka cannot create them.
  explicit MockCluster(int brokers = 3);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  // "127.0.0.1:port,..." for ClientConfig::brokers.
  std::string bootstrap() const;

  // ClientConfig::properties for clients of a mock cluster (in this process or
  // mesh-kafka-mock). The mock group coordinator waits session.timeout.ms - 1 s after a member
  // joins or leaves, and a group of several members may need a few such rounds: with the
  // default 45 s a rebalance takes minutes. 5 s is the floor, because the mock also expires
  // members silent for a session while their first JoinGroup waits its fixed 3 s. Reconnect
  // backoffs are shortened so brokers set up again are used at once.
  static Properties client_properties();

  // Throws std::runtime_error on failure, including when the topic already exists.
  void create_topic(const std::string& name, int partitions, int replication = 1);

  // A down broker closes its connections and refuses new ones until it is set up again.
  void set_broker_down(int32_t broker_id, bool down);

  // The next requests with `api_key` (api_key::kProduce, ...) fail with these errors, one per
  // request, in order, on whichever broker receives them.
  void push_request_errors(int16_t api_key, std::vector<rd_kafka_resp_err_t> errors);

 private:
  HandlePtr host_;  // the mock cluster needs a client handle for its own bookkeeping
  rd_kafka_mock_cluster_t* cluster_ = nullptr;  // owned; destroyed before host_
  std::string bootstrap_;
};

}  // namespace mesh::kafka
