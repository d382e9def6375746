#pragma once
// The message service as the gateway and the consumer role run it, in one process: MessageApi
// behind a real HTTP server on 127.0.0.1:0, MessageConsumer on librdkafka's mock cluster, and a
// fresh Postgres database. The test thread is the client. A request's caller comes from the
// test header X-Test-User: "<user id> <role>" (the authentication middleware's job in the
// product).
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/http/server.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/messages/api.hpp"
#include "mesh/messages/consumer.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/testing/http_client.hpp"

namespace mesh::messages::test {

using namespace std::chrono_literals;

// The first consumer group join on the mock cluster alone takes about 3 s.
inline constexpr std::chrono::milliseconds kStoreDeadline = 60s;

struct User {
  std::string id;
  std::string role = "user";
};
User make_user(std::string role = "user");

struct ServiceOptions {
  bool start_consumer = true;
  // The producer's message.timeout.ms: how long POST waits for an ack before 503.
  std::chrono::milliseconds ack_timeout = 5000ms;
  // config.pg_timeout: bounds each statement of the consumer's store.
  std::chrono::milliseconds pg_timeout = 5000ms;
};

class Service {
 public:
  explicit Service(ServiceOptions options = {});
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  unsigned short port() const { return port_; }
  kafka::MockCluster& cluster() { return cluster_; }
  pg::Pool& pool() { return *pool_; }
  prometheus::Registry& registry() { return registry_; }
  // The registry of the consumer started last (each start gets a fresh one).
  prometheus::Registry& consumer_registry() { return *consumer_registries_.back(); }

  void start_consumer();
  void stop_consumer();

  // HTTP as `user` (none: no caller).
  testing::HttpReply post(const std::string& body, const std::optional<User>& user);
  testing::HttpReply get(const std::string& target, const std::optional<User>& user);
  testing::HttpReply remove(const std::string& id, const std::optional<User>& user);

  // Publishes a raw record to `topic` and waits for the ack.
  void produce(const std::string& topic, const std::string& key, const std::string& value);
  // Runs a statement on the test database.
  pg::Result sql(const std::string& statement);
  // Holds an ACCESS EXCLUSIVE lock on messages in an open transaction until unlock_messages():
  // Postgres cannot store messages meanwhile.
  void lock_messages();
  void unlock_messages();
  // Waits until GET /v1/messages/{id} answers 200 (as a fresh user); false at the deadline.
  bool wait_stored(const std::string& id);
  // Everything on `topic`, read by a fresh group until `count` records arrived or the deadline.
  std::vector<kafka::Message> read_topic(const std::string& topic, std::size_t count);

 private:
  testing::IoThread io_{2};
  prometheus::Registry registry_;
  std::vector<std::unique_ptr<prometheus::Registry>> consumer_registries_;
  std::unique_ptr<pg::Pool> pool_;
  kafka::MockCluster cluster_{1};
  kafka::ClientConfig kafka_config_;
  std::unique_ptr<kafka::Producer> producer_;
  config::Config config_;
  std::unique_ptr<MessageApi> api_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<MessageConsumer> consumer_;
  std::future<void> consumer_done_;
  std::optional<pg::Lease> lock_holder_;
  unsigned short port_ = 0;
};

// The problem+json "errors"[0].field of a 400 answer, or "" when absent.
std::string invalid_field(const testing::HttpReply& reply);

}  // namespace mesh::messages::test
