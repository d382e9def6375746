#pragma once
#include "mesh/config/config.hpp"
#include "mesh/core/health.hpp"
#include "mesh/http/router.hpp"

#include <memory>

#include <prometheus/registry.h>

#include "mesh/core/lifecycle.hpp"
#include "mesh/core/runtime.hpp"
#include "mesh/http/server.hpp"
#include "mesh/kafka/config.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/redis/client.hpp"

namespace mesh::roles {

// /healthz, /readyz and /metrics, served by every role. /metrics also carries mesh_build_info
// (labels version and role), mesh_ready and mesh_readiness_changes_total.
void add_admin_routes(http::Router& router, core::Health& health, prometheus::Registry& registry,
                      std::string_view role);

class Background;
class GatewayApi;
class ExternalUsers;
}  // namespace mesh::roles
namespace mesh::ingest {
class Ingester;
}
namespace mesh::marketdb {
class TradeConsumer;
class MarketApi;
}  // namespace mesh::marketdb
namespace mesh::sse {
class StreamService;
}
namespace mesh::messages {
class MessageApi;
class MessageConsumer;
}  // namespace mesh::messages
namespace mesh::sessions {
class SessionService;
class SessionLocks;
class UserSessionsApi;
}  // namespace mesh::sessions
namespace mesh::auth {
class JwtCodec;
class OidcVerifier;
class JwksSource;
}  // namespace mesh::auth
namespace mesh::policy {
class Authenticator;
class GatewayPolicies;
}  // namespace mesh::policy
namespace mesh::roles {
class Worker;
class Updater;

// Everything one process runs, started in order and stopped in reverse by the lifecycle.
class App {
 public:
  App(const config::Config& config, core::Runtime& runtime);
  ~App();

  // Starts the configured role(s); a failure throws after stopping what had started.
  Task<void> start();
  // Fails readiness, then stops everything in reverse order.
  Task<void> stop();

  // The bound HTTP port (useful with --listen=...:0).
  unsigned short port() const;
  prometheus::Registry& metrics() { return *registry; }
  // Every route this process serves (after start()).
  const http::Router& routes() const { return *router; }
  // The in-process Kafka mock cluster with --kafka-brokers=embedded (for fault injection in
  // tests); null otherwise.
  kafka::MockCluster* embedded_kafka_cluster() { return embedded_kafka.get(); }

 private:
  Task<void> start_all();
  kafka::ClientConfig consumer_config() const;

  const config::Config& config;
  core::Runtime& runtime;
  std::shared_ptr<prometheus::Registry> registry;
  core::Lifecycle lifecycle;
  std::unique_ptr<kafka::MockCluster> embedded_kafka;
  kafka::ClientConfig kafka_config;
  std::map<std::string, std::string> consumer_config_properties;
  std::unique_ptr<pg::Pool> pg;
  std::unique_ptr<redis::Client> redis;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<GatewayApi> gateway;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Updater> updater;
  std::unique_ptr<Background> worker_loop;
  std::unique_ptr<Background> updater_loop;
  std::unique_ptr<marketdb::TradeConsumer> trade_consumer;
  std::unique_ptr<Background> consumer_loop;
  std::unique_ptr<sse::StreamService> stream;
  std::unique_ptr<Background> stream_loop;
  std::unique_ptr<sessions::SessionService> session_service;
  std::unique_ptr<ingest::Ingester> ingester;
  std::unique_ptr<Background> ingester_loop;
  std::unique_ptr<marketdb::MarketApi> market_api;
  std::unique_ptr<messages::MessageApi> message_api;
  std::unique_ptr<sessions::SessionLocks> session_locks;
  std::unique_ptr<sessions::UserSessionsApi> user_sessions_api;
  std::unique_ptr<messages::MessageConsumer> message_consumer;
  std::unique_ptr<Background> message_consumer_loop;
  // Bearer-token verification for every role that serves the API (gateway, stream).
  std::unique_ptr<auth::JwtCodec> jwt;
  std::unique_ptr<policy::Authenticator> authenticator;
  std::unique_ptr<auth::OidcVerifier> oidc;  // with --oidc-issuer
  std::unique_ptr<auth::JwksSource> jwks;
  std::unique_ptr<ExternalUsers> external_users;
  // CORS, rate limits and the market cache (gateway only).
  std::unique_ptr<policy::GatewayPolicies> policies;
  std::shared_ptr<http::Router> router;
  std::unique_ptr<http::Server> server;
};

// Runs the configured role(s) until SIGTERM/SIGINT; returns the process exit code.
int run(const config::Config& config);

}  // namespace mesh::roles
