#include "mesh/roles/app.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <future>

#include "mesh/auth/jwks_source.hpp"
#include "mesh/auth/oidc.hpp"
#include "mesh/core/lifecycle.hpp"
#include "mesh/core/log.hpp"
#include "mesh/core/runtime.hpp"
#include "mesh/http/server.hpp"
#include "mesh/ingest/ingester.hpp"
#include "mesh/kafka/admin.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/market/events.hpp"
#include "mesh/marketdb/market_api.hpp"
#include "mesh/marketdb/trade_consumer.hpp"
#include "mesh/messages/api.hpp"
#include "mesh/messages/consumer.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/policy/gateway_policies.hpp"
#include "mesh/roles/gateway.hpp"
#include "mesh/roles/profiles.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/roles/updater.hpp"
#include "mesh/roles/worker.hpp"
#include "mesh/sessions/session_service.hpp"
#include "mesh/sessions/users_api.hpp"
#include "mesh/sse/proxy.hpp"
#include "mesh/sse/stream_service.hpp"
#include "mesh/web/routes.hpp"

namespace mesh::roles {
using config::Role;

// Runs a long-lived coroutine (a consumer loop) and lets stop() await its end.
class Background {
 public:
  Background(asio::any_io_executor executor, Task<void> task)
      : done_(asio::co_spawn(executor, std::move(task), asio::use_future)) {}
  // Waits for the loop without blocking an io thread.
  Task<void> join() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (done_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(asio::use_awaitable);
    }
    done_.get();
  }

 private:
  std::future<void> done_;
};

Task<void> App::start_all() {
  auto executor = runtime.io().get_executor();
  auto& health = runtime.health();
  const bool needs_pg = config.runs(Role::gateway) || config.runs(Role::updater) ||
                        config.runs(Role::consumer) || config.runs(Role::stream);

  kafka_config.brokers = config.kafka_brokers;
  kafka_config.client_id = "mesh-" + std::string(config::to_string(config.role));
  // Consumers only (librdkafka warns about consumer properties on producers).
  consumer_config_properties["session.timeout.ms"] =
      std::to_string(config.kafka_session_timeout.count());
  consumer_config_properties["heartbeat.interval.ms"] =
      std::to_string(std::max<long long>(config.kafka_session_timeout.count() / 4, 100));
  if (config.kafka_brokers == "embedded") {
    co_await lifecycle.start(
        "embedded kafka",
        [&]() -> Task<void> {
          if (config.role != Role::all) {
            log::get("kafka")->warn(
                "embedded Kafka lives inside this process only: other "
                "processes cannot reach it");
          }
          embedded_kafka = std::make_unique<kafka::MockCluster>(3);
          kafka_config.brokers = embedded_kafka->bootstrap();
          log::get("kafka")->info("embedded Kafka mock cluster (not durable) at {}",
                                  kafka_config.brokers);
          co_return;
        },
        [&]() -> Task<void> {
          embedded_kafka.reset();
          co_return;
        });
  }
  co_await lifecycle.start(
      "kafka topics",
      [&]() -> Task<void> {
        std::vector<kafka::TopicSpec> topics;
        for (const char* name :
             {kTasksPending, kTasksCompleted, kTasksDeadLetter, messages::kMessagesTopic,
              messages::kMessagesDeadLetterTopic, market::kTradesTopic, market::kTickerTopic,
              market::kDeadLetterTopic}) {
          topics.push_back({name, config.kafka_partitions, config.kafka_replication});
        }
        co_await kafka::ensure_topics(kafka_config, topics, std::chrono::seconds(30));
      },
      []() -> Task<void> { co_return; });

  if (needs_pg) {
    co_await lifecycle.start(
        "postgres",
        [&]() -> Task<void> {
          pg::PoolOptions options;
          options.url = config.pg_url;
          options.size = config.pg_pool_size;
          options.query_timeout = config.pg_timeout;
          pg = std::make_unique<pg::Pool>(executor, options, *registry);
          co_await pg->start();
          co_await pg::migrate(*pg, migrations());
          health.add_check("postgres", [p = pg.get()] { return p->healthy(); });
        },
        [&]() -> Task<void> { co_await pg->close(std::chrono::seconds(5)); });
  }
  if (config.runs(Role::gateway) || config.runs(Role::stream)) {
    co_await lifecycle.start(
        "redis",
        [&]() -> Task<void> {
          auto options = redis::parse_url(config.redis_url);
          options.command_timeout = config.redis_timeout;
          redis = std::make_unique<redis::Client>(executor, options, *registry);
          co_await redis->connect();
          health.add_check("redis", [r = redis.get()] { return r->connected(); });
        },
        [&]() -> Task<void> { co_await redis->close(); });
  }
  co_await lifecycle.start(
      "kafka producer",
      [&]() -> Task<void> {
        auto producer_config = kafka_config;
        producer_config.properties["message.timeout.ms"] =
            std::to_string(config.kafka_ack_timeout.count());
        // Room for a task record holding a body of the full HTTP limit, re-serialized.
        producer_config.properties["message.max.bytes"] =
            std::to_string(std::max<std::size_t>(1'000'000, 2 * config.http_body_limit + 65536));
        producer = std::make_unique<kafka::Producer>(executor, producer_config, *registry);
        // The HTTP server stops before the producer goes, so /readyz never sees it gone.
        health.add_check("kafka", [this] { return producer && producer->broker_up(); });
        co_return;
      },
      [&]() -> Task<void> {
        // Destroyed here, while the brokers (perhaps embedded) are still up.
        co_await producer->flush(config.drain_timeout);
        producer.reset();
      });

  if (config.runs(Role::worker)) {
    co_await lifecycle.start(
        "worker",
        [&]() -> Task<void> {
          worker = std::make_unique<Worker>(executor, config, consumer_config(), *producer,
                                            runtime.cpu(), *registry);
          worker_loop = std::make_unique<Background>(executor, worker->run());
          co_return;
        },
        [&]() -> Task<void> {
          worker->stop();
          co_await worker_loop->join();
        });
  }
  if (config.runs(Role::updater)) {
    co_await lifecycle.start(
        "updater",
        [&]() -> Task<void> {
          updater = std::make_unique<Updater>(executor, config, consumer_config(), *pg, *producer,
                                              *registry);
          updater_loop = std::make_unique<Background>(executor, updater->run());
          co_return;
        },
        [&]() -> Task<void> {
          updater->stop();
          co_await updater_loop->join();
        });
  }

  if (config.runs(Role::consumer)) {
    co_await lifecycle.start(
        "consumer",
        [&]() -> Task<void> {
          trade_consumer = std::make_unique<marketdb::TradeConsumer>(
              executor, config, consumer_config(), *pg, *producer, *registry);
          consumer_loop = std::make_unique<Background>(executor, trade_consumer->run());
          co_return;
        },
        [&]() -> Task<void> {
          trade_consumer->stop();
          co_await consumer_loop->join();
        });
  }
  if (config.runs(Role::consumer)) {
    co_await lifecycle.start(
        "message consumer",
        [&]() -> Task<void> {
          message_consumer = std::make_unique<messages::MessageConsumer>(
              executor, config, consumer_config(), *pg, *producer, *registry);
          message_consumer_loop = std::make_unique<Background>(executor, message_consumer->run());
          co_return;
        },
        [&]() -> Task<void> {
          message_consumer->stop();
          co_await message_consumer_loop->join();
        });
  }
  if (config.runs(Role::stream)) {
    co_await lifecycle.start(
        "stream",
        [&]() -> Task<void> {
          stream =
              std::make_unique<sse::StreamService>(executor, config, consumer_config(), *registry);
          // Before run(): it adds the task topics to the stream's consumer.
          session_service = std::make_unique<sessions::SessionService>(executor, config, *pg,
                                                                       *redis, *stream, *registry);
          stream_loop = std::make_unique<Background>(executor, stream->run());
          co_return;
        },
        [&]() -> Task<void> {
          // Sessions first: their locks are released while Redis is still up.
          co_await session_service->stop(config.drain_timeout);
          stream->stop();
          co_await stream_loop->join();
        });
  }
  if (config.runs(Role::ingester)) {
    co_await lifecycle.start(
        "ingester",
        [&]() -> Task<void> {
          ingester = std::make_unique<ingest::Ingester>(executor, config, *producer, *registry);
          health.add_check("ingester", [i = ingester.get()] { return i->healthy(); });
          ingester_loop = std::make_unique<Background>(executor, ingester->run());
          co_return;
        },
        [&]() -> Task<void> {
          ingester->stop();
          co_await ingester_loop->join();
        });
  }

  add_admin_routes(*router, health, *registry, mesh::config::to_string(config.role));
  if (config.runs(Role::gateway) || config.runs(Role::stream)) {
    jwt = std::make_unique<auth::JwtCodec>(config.jwt_secret, config.jwt_issuer, config.jwt_ttl);
    if (!config.oidc_issuer.empty()) {
      co_await lifecycle.start(
          "oidc keys",
          [&]() -> Task<void> {
            oidc = std::make_unique<auth::OidcVerifier>(auth::OidcOptions{
                config.oidc_issuer, config.oidc_audience, std::chrono::seconds(60)});
            jwks = std::make_unique<auth::JwksSource>(executor, config, *oidc, *registry);
            co_await jwks->start();
          },
          [&]() -> Task<void> { co_await jwks->stop(); });
      authenticator = std::make_unique<policy::Authenticator>(*jwt, oidc->as_external_verifier());
    } else {
      authenticator = std::make_unique<policy::Authenticator>(*jwt);
    }
    // Middlewares run in the order added: CORS before authentication (preflights carry no
    // token), rate limits and the market cache after it (they need the user).
    if (config.runs(Role::gateway)) {
      policies = std::make_unique<policy::GatewayPolicies>(config, *redis, *registry);
      policies->install_before_auth(*router);
    }
    router->use(authenticator->middleware());
    if (oidc && pg) {
      external_users = std::make_unique<ExternalUsers>(*pg);
      router->use(external_users->middleware());
    }
    if (policies) policies->install_after_auth(*router);
  }
  if (config.runs(Role::gateway)) {
    session_locks = std::make_unique<sessions::SessionLocks>(
        *redis, sessions::LockOptions{config.session_lock_ttl, config.node_name});
    user_sessions_api = std::make_unique<sessions::UserSessionsApi>(*session_locks);
    user_sessions_api->add_routes(*router);
    SessionLister list_sessions =
        [locks =
             session_locks.get()](std::string user_id) -> Task<std::optional<boost::json::array>> {
      auto listed = co_await locks->list(std::move(user_id));
      if (!listed) co_return std::nullopt;
      boost::json::array sessions;
      for (const auto& session : *listed) sessions.push_back(sessions::to_json(session));
      co_return sessions;
    };
    gateway = std::make_unique<GatewayApi>(GatewayDeps{
        config, *pg, *redis, *producer, runtime.cpu(), *registry, std::move(list_sessions)});
    gateway->add_routes(*router);
    message_api = std::make_unique<messages::MessageApi>(
        messages::MessageApiDeps{config, *pg, *producer, *registry});
    message_api->add_routes(*router);
    market_api = std::make_unique<marketdb::MarketApi>(config, *pg, *registry);
    market_api->add_routes(*router);
    web::add_routes(*router);
    if (!config.runs(Role::stream)) {
      if (config.stream_url.empty()) {
        log::get("gateway")->warn(
            "--stream-url is not set: /v1/stream/* answers 404 in this gateway");
      } else {
        sse::add_proxy_routes(*router, config, *registry);
      }
    }
  }
  if (stream) stream->add_routes(*router);
  if (session_service) session_service->add_routes(*router);
  co_await lifecycle.start(
      "http server",
      [&]() -> Task<void> {
        http::ServerOptions options;
        options.listen = config.listen;
        options.body_limit = config.http_body_limit;
        options.header_limit = config.http_header_limit;
        options.read_timeout = config.http_read_timeout;
        options.idle_timeout = config.http_idle_timeout;
        options.max_connections = config.http_max_connections;
        server = std::make_unique<http::Server>(executor, options, router, *registry);
        server->start();
        co_return;
      },
      [&]() -> Task<void> { co_await server->stop(config.drain_timeout); });
}

App::App(const config::Config& config, core::Runtime& runtime)
    : config(config), runtime(runtime), registry(metrics::make_registry()) {}

App::~App() = default;

Task<void> App::start() {
  router = std::make_shared<http::Router>();
  std::exception_ptr failure;
  try {
    co_await start_all();
    runtime.health().set_started();
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    co_await lifecycle.stop_all();
    std::rethrow_exception(failure);
  }
}

Task<void> App::stop() {
  // Readiness fails first so load balancers move away, then everything drains in reverse.
  runtime.health().set_draining();
  co_await lifecycle.stop_all();
}

kafka::ClientConfig App::consumer_config() const {
  auto result = kafka_config;
  for (const auto& [key, value] : consumer_config_properties) result.properties[key] = value;
  return result;
}

unsigned short App::port() const { return server ? server->local_endpoint().port() : 0; }

namespace {

// Every connection is a descriptor. Container runtimes may start a process with a soft limit of
// 1024 under a far higher hard limit; the stream role needs about two per SSE client.
void raise_open_file_limit(spdlog::logger& logger) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    logger.warn("getrlimit(RLIMIT_NOFILE) failed: {}", std::strerror(errno));
    return;
  }
  if (limit.rlim_cur >= limit.rlim_max) return;
  const auto before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    logger.warn("setrlimit(RLIMIT_NOFILE, {}) failed: {}",
                static_cast<std::uint64_t>(limit.rlim_max), std::strerror(errno));
    return;
  }
  log::event(logger, spdlog::level::info, "raised the open file limit",
             {{"from", static_cast<std::uint64_t>(before)},
              {"to", static_cast<std::uint64_t>(limit.rlim_cur)}});
}

}  // namespace

int run(const config::Config& config) {
  log::set_level(config.log_level);
  auto logger = log::get("core");
  raise_open_file_limit(*logger);
  core::Runtime runtime(config.threads, config.cpu_threads);
  return runtime.run([&]() -> Task<int> {
    App app(config, runtime);
    int exit_code = 0;
    try {
      const auto started = std::chrono::steady_clock::now();
      co_await app.start();
      const auto elapsed =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started);
      log::event(*logger, spdlog::level::info, "ready",
                 {{"role", config::to_string(config.role)},
                  {"listen", config.listen},
                  {"startup_ms", elapsed.count()}});
      co_await runtime.wait_for_stop();
    } catch (const std::exception& e) {
      logger->critical("start failed: {}", e.what());
      exit_code = 1;
    }
    co_await app.stop();
    logger->info("stopped");
    co_return exit_code;
  });
}

}  // namespace mesh::roles
