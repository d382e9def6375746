#include "support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/market/events.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/pg/migrate.hpp"
#include "mesh/roles/schema.hpp"

namespace mesh::sessions::test {

unsigned short closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
  return probe.local_endpoint().port();
}

Services::Services(bool connect_redis) : registry_(metrics::make_registry()) {
  if (!connect_redis) return;
  redis_ = std::make_unique<redis::Client>(executor(), redis::parse_url(testing::redis_url()),
                                           *registry_);
  run(redis_->connect());
}

Services::~Services() {
  if (redis_) run(redis_->close());
}

void Services::run(Task<void> task, std::chrono::milliseconds timeout) {
  auto future = asio::co_spawn(io_.io(), std::move(task), asio::use_future);
  if (future.wait_for(timeout) != std::future_status::ready) {
    throw std::runtime_error("Services::run: task did not finish in time");
  }
  future.get();
}

SseClient::SseClient(unsigned short port, const std::string& target,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error("connect: " + error);
  }
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
  request += "Accept: text/event-stream\r\n\r\n";
  if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd_);
    throw std::runtime_error("send failed");
  }
  reader_ = std::thread([this] { read_loop(); });
}

SseClient::~SseClient() { close(); }

void SseClient::close() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void SseClient::read_loop() {
  std::vector<char> buffer(16 * 1024);
  while (!stop_) {
    pollfd entry{fd_, POLLIN, 0};
    const int ready = ::poll(&entry, 1, 20);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    std::lock_guard lock(mutex_);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      closed_ = true;
      changed_.notify_all();
      return;
    }
    pending_.append(buffer.data(), static_cast<std::size_t>(n));
    parse();
    changed_.notify_all();
  }
}

void SseClient::parse() {
  if (!head_done_) {
    const auto end = pending_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    head_ = pending_.substr(0, end + 4);
    pending_.erase(0, end + 4);
    head_done_ = true;
    if (head_.size() > 12) status_ = static_cast<unsigned>(std::stoi(head_.substr(9, 3)));
  }
  if (status_ != 200) return;  // a problem+json body stays in pending_
  while (true) {
    const auto end = pending_.find("\n\n");
    if (end == std::string::npos) return;
    const std::string block = pending_.substr(0, end + 1);
    pending_.erase(0, end + 2);
    Event event;
    std::size_t start = 0;
    while (start < block.size()) {
      const auto line_end = block.find('\n', start);
      const std::string line = block.substr(start, line_end - start);
      start = line_end + 1;
      if (line.starts_with("event: ")) event.name = line.substr(7);
      if (line.starts_with("data: ")) event.data += line.substr(6);
    }
    if (!event.name.empty()) events_.push_back(std::move(event));
  }
}

bool SseClient::wait_head(std::chrono::milliseconds timeout) {
  return wait([](const SseClient& c) { return c.head_done_ || c.closed_; }, timeout) &&
         status() != 0;
}

bool SseClient::wait(const std::function<bool(const SseClient&)>& done,
                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return done(*this); });
}

unsigned SseClient::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

std::string SseClient::body() const {
  std::lock_guard lock(mutex_);
  return pending_;
}

std::vector<Event> SseClient::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

bool SseClient::has_event(const std::string& name) const {
  for (const auto& event : events_) {
    if (event.name == name) return true;
  }
  return false;
}

std::string Fixtures::insert_user(pg::Pool& pool, Services& services, const std::string& role) {
  const std::string id = core::uuid_v7();
  pg::Params params{id, "user-" + id, role};
  services.run(
      pool.query("INSERT INTO users (id, username, password_hash, role) VALUES "
                 "($1, $2, 'x', $3)",
                 std::move(params)));
  return id;
}

std::string Fixtures::insert_profile(pg::Pool& pool, Services& services, const std::string& owner,
                                     const std::vector<std::string>& watchlist) {
  const std::string id = core::uuid_v7();
  std::string array = "{";
  for (std::size_t i = 0; i < watchlist.size(); ++i) array += (i ? "," : "") + watchlist[i];
  array += "}";
  pg::Params params{id, owner, array};
  services.run(
      pool.query("INSERT INTO profiles (id, name, watchlist, created_by) VALUES ($1, 'p', $3, $2)",
                 std::move(params)));
  return id;
}

void Fixtures::add_member(pg::Pool& pool, Services& services, const std::string& profile,
                          const std::string& user) {
  pg::Params params{profile, user};
  services.run(pool.query("INSERT INTO profile_members (profile_id, user_id) VALUES ($1, $2)",
                          std::move(params)));
}

StreamHarness::StreamHarness(StreamOptions options) {
  config.session_lock_ttl = options.ttl;
  config.session_refresh = options.refresh;
  config.node_name = options.node;
  config.ingester_products = {"BTC-USD", "ETH-USD"};
  config.stream_heartbeat = 15s;

  cluster = std::make_unique<kafka::MockCluster>(1);
  for (const char* topic :
       {market::kTradesTopic, market::kTickerTopic, roles::kTasksPending, roles::kTasksCompleted}) {
    cluster->create_topic(topic, 1);  // one partition: records keep their order
  }
  kafka::ClientConfig kafka_config;
  kafka_config.brokers = cluster->bootstrap();
  kafka_config.client_id = "mesh-sessions-test";
  kafka_config.properties = kafka::MockCluster::client_properties();

  pg::PoolOptions pg_options;
  pg_options.url = testing::fresh_pg_database();
  pg_options.size = 4;
  pg = std::make_unique<pg::Pool>(services.executor(), pg_options, services.registry());
  services.run(pg->start());
  services.run(pg::migrate(*pg, roles::migrations()));

  auto redis_options = redis::parse_url(testing::redis_url());
  if (!options.redis_reachable) redis_options.port = closed_port();
  redis_options.command_timeout = 500ms;
  redis = std::make_unique<redis::Client>(services.executor(), redis_options, services.registry());
  if (options.redis_reachable) services.run(redis->connect());

  stream = std::make_unique<sse::StreamService>(services.executor(), config, kafka_config,
                                                services.registry());
  sessions = std::make_unique<SessionService>(services.executor(), config, *pg, *redis, *stream,
                                              services.registry());
  users_api = std::make_unique<UserSessionsApi>(sessions->locks());
  jwt_ = std::make_unique<auth::JwtCodec>(std::string(kJwtSecret), "mesh", 3600s);
  authenticator_ = std::make_unique<policy::Authenticator>(*jwt_);
  auto router = std::make_shared<http::Router>();
  router->use(authenticator_->middleware());
  stream->add_routes(*router);
  sessions->add_routes(*router);
  users_api->add_routes(*router);
  http::ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_ = std::make_unique<http::Server>(services.executor(), server_options, router,
                                           services.registry());
  server_->start();
  port_ = server_->local_endpoint().port();
  producer_ =
      std::make_unique<kafka::Producer>(services.executor(), kafka_config, services.registry());
  running_ = asio::co_spawn(services.executor(), stream->run(), asio::use_future);
}

StreamHarness::~StreamHarness() {
  stop_sessions();
  stream->stop();
  if (running_.valid()) running_.wait_for(30s);
  services.run(server_->stop(5s));
  testing::wait_until([this] { return stream->hub().quiescent(); });
  producer_.reset();
  services.run(redis->close());
  services.run(pg->close(5s));
}

void StreamHarness::stop_sessions() {
  if (sessions_stopped_) return;
  sessions_stopped_ = true;
  services.run(sessions->stop(5s));
}

std::string StreamHarness::token(const std::string& user_id, const std::string& role) const {
  return jwt_->issue(user_id, "user-" + user_id, role, std::chrono::system_clock::now());
}

std::vector<std::pair<std::string, std::string>> StreamHarness::bearer(
    const std::string& user_id) const {
  return {{"Authorization", "Bearer " + token(user_id)}};
}

std::string StreamHarness::new_user(const std::string& role) {
  return fixtures_.insert_user(*pg, services, role);
}

std::string StreamHarness::new_profile(const std::vector<std::string>& members,
                                       const std::vector<std::string>& watchlist) {
  const std::string id = fixtures_.insert_profile(*pg, services, members.at(0), watchlist);
  for (const auto& member : members) fixtures_.add_member(*pg, services, id, member);
  return id;
}

void StreamHarness::produce(const std::string& topic, const std::string& key,
                            const std::string& value) {
  const auto ec = services.run(producer_->produce(topic, key, value));
  REQUIRE_FALSE(ec);
}

double StreamHarness::metric(const std::string& name,
                             const std::map<std::string, std::string>& labels) {
  return testing::metric(services.registry(), name, labels).value_or(0.0);
}

}  // namespace mesh::sessions::test
