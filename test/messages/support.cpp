#include "support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/pg/migrate.hpp"
#include "mesh/schema/migrations.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::messages::test {
namespace {

template <class T>
T run_on(asio::io_context& io, Task<T> task) {
  return asio::co_spawn(io, std::move(task), asio::use_future).get();
}

Task<void> start_pool(pg::Pool& pool) {
  co_await pool.start();
  co_await pg::migrate(pool, schema::migrations());
}

http::Middleware test_principal() {
  return [](http::Request& request, const http::Next& next) -> Task<http::Response> {
    if (const auto user = request.header("x-test-user")) {
      const auto space = user->find(' ');
      request.principal = http::Principal{std::string(user->substr(0, space)), "tester",
                                          std::string(user->substr(space + 1))};
    }
    http::Response response = co_await next(request);
    co_return response;
  };
}

std::vector<std::pair<std::string, std::string>> caller(const std::optional<User>& user) {
  if (!user) return {};
  return {{"X-Test-User", user->id + " " + user->role}};
}

}  // namespace

User make_user(std::string role) { return User{core::uuid_v7(), std::move(role)}; }

Service::Service(ServiceOptions options) {
  pg::PoolOptions pool_options;
  pool_options.url = testing::fresh_pg_database();
  pool_options.size = 4;
  pool_ = std::make_unique<pg::Pool>(io_.io().get_executor(), pool_options, registry_);
  run_on(io_.io(), start_pool(*pool_));

  cluster_.create_topic(kMessagesTopic, 3);
  cluster_.create_topic(kMessagesDeadLetterTopic, 1);
  kafka_config_.brokers = cluster_.bootstrap();
  kafka_config_.client_id = "messages-test";
  kafka_config_.properties = kafka::MockCluster::client_properties();
  auto producer_config = kafka_config_;
  producer_config.properties["message.timeout.ms"] = std::to_string(options.ack_timeout.count());
  producer_ =
      std::make_unique<kafka::Producer>(io_.io().get_executor(), producer_config, registry_);
  config_.consumer_batch_size = 16;
  config_.pg_timeout = options.pg_timeout;

  api_ = std::make_unique<MessageApi>(MessageApiDeps{config_, *pool_, *producer_, registry_});
  auto router = std::make_shared<http::Router>();
  router->use(test_principal());
  api_->add_routes(*router);
  http::ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_ =
      std::make_unique<http::Server>(io_.io().get_executor(), server_options, router, registry_);
  server_->start();
  port_ = server_->local_endpoint().port();
  if (options.start_consumer) start_consumer();
}

Service::~Service() {
  stop_consumer();
  run_on(io_.io(), server_->stop(5s));
  producer_.reset();
  run_on(io_.io(), pool_->close(5s));
}

void Service::start_consumer() {
  consumer_registries_.push_back(std::make_unique<prometheus::Registry>());
  consumer_ = std::make_unique<MessageConsumer>(io_.io().get_executor(), config_, kafka_config_,
                                                *pool_, *producer_, *consumer_registries_.back());
  consumer_done_ = asio::co_spawn(io_.io(), consumer_->run(), asio::use_future);
}

void Service::stop_consumer() {
  if (!consumer_) return;
  consumer_->stop();
  REQUIRE(consumer_done_.wait_for(60s) == std::future_status::ready);
  consumer_done_.get();
  consumer_.reset();
}

testing::HttpReply Service::post(const std::string& body, const std::optional<User>& user) {
  return testing::http_json(port_, "POST", "/v1/messages", body, {}, caller(user));
}

testing::HttpReply Service::get(const std::string& target, const std::optional<User>& user) {
  testing::HttpCall call;
  call.target = target;
  call.headers = caller(user);
  return testing::http(port_, call);
}

testing::HttpReply Service::remove(const std::string& id, const std::optional<User>& user) {
  testing::HttpCall call;
  call.method = "DELETE";
  call.target = "/v1/messages/" + id;
  call.headers = caller(user);
  return testing::http(port_, call);
}

void Service::produce(const std::string& topic, const std::string& key, const std::string& value) {
  auto send = [&]() -> Task<error_code> {
    const error_code result = co_await producer_->produce(topic, key, value);
    co_return result;
  };
  REQUIRE_FALSE(run_on(io_.io(), send()));
}

pg::Result Service::sql(const std::string& statement) {
  auto call = [&]() -> Task<pg::Result> {
    pg::Result result = co_await pool_->query(statement);
    co_return result;
  };
  return run_on(io_.io(), call());
}

void Service::lock_messages() {
  auto lock = [&]() -> Task<void> {
    pg::Lease lease = co_await pool_->acquire();
    co_await lease.query("BEGIN");
    co_await lease.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
    lock_holder_.emplace(std::move(lease));
  };
  run_on(io_.io(), lock());
}

void Service::unlock_messages() {
  auto unlock = [&]() -> Task<void> {
    co_await lock_holder_->rollback();
    lock_holder_.reset();
  };
  run_on(io_.io(), unlock());
}

bool Service::wait_stored(const std::string& id) {
  const User reader = make_user();
  return testing::wait_until([&] { return get("/v1/messages/" + id, reader).status == 200; },
                             kStoreDeadline, 20ms);
}

std::vector<kafka::Message> Service::read_topic(const std::string& topic, std::size_t count) {
  auto read = [&]() -> Task<std::vector<kafka::Message>> {
    prometheus::Registry reader_registry;
    const std::vector<std::string> topics{topic};
    kafka::Consumer reader(io_.io().get_executor(), kafka_config_, "reader-" + core::uuid_v7(),
                           topics, reader_registry);
    std::vector<kafka::Message> records;
    const auto deadline = std::chrono::steady_clock::now() + kStoreDeadline;
    while (records.size() < count && std::chrono::steady_clock::now() < deadline) {
      auto batch = co_await reader.poll_batch(100, 200ms);
      for (auto& record : batch) records.push_back(std::move(record));
    }
    co_await reader.close();
    co_return records;
  };
  return run_on(io_.io(), read());
}

std::string invalid_field(const testing::HttpReply& reply) {
  const auto body = reply.json();
  const auto* errors = body.as_object().if_contains("errors");
  if (!errors || !errors->is_array() || errors->as_array().empty()) return "";
  return std::string(errors->as_array()[0].at("field").as_string());
}

}  // namespace mesh::messages::test
