#pragma once
// Helpers for the session tests: an io_context with Redis (and, for the stream route, Postgres,
// a Kafka mock cluster and a stream role behind a real HTTP server), rows inserted straight into
// Postgres, bearer tokens, and a blocking Server-Sent Events client that sends headers.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/auth/jwt.hpp"
#include "mesh/config/config.hpp"
#include "mesh/http/server.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/sessions/session_service.hpp"
#include "mesh/sessions/users_api.hpp"
#include "mesh/sse/stream_service.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/http_client.hpp"
#include "mesh/testing/metrics.hpp"

namespace mesh::sessions::test {

using namespace std::chrono_literals;

inline constexpr std::string_view kJwtSecret = "sessions-test-secret-of-forty-bytes-01234";

// A loopback port nothing listens on.
unsigned short closed_port();

// Two io threads, a registry and (unless told otherwise) a Redis client of the test server.
class Services {
 public:
  explicit Services(bool connect_redis = true);
  ~Services();

  template <class T>
  T run(Task<T> task, std::chrono::milliseconds timeout = 30s) {
    auto future = asio::co_spawn(io_.io(), std::move(task), asio::use_future);
    if (future.wait_for(timeout) != std::future_status::ready) {
      throw std::runtime_error("Services::run: task did not finish in time");
    }
    return future.get();
  }
  void run(Task<void> task, std::chrono::milliseconds timeout = 30s);

  asio::any_io_executor executor() { return io_.io().get_executor(); }
  prometheus::Registry& registry() { return *registry_; }
  redis::Client& redis() { return *redis_; }

 private:
  testing::IoThread io_{2};
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<redis::Client> redis_;
};

struct Event {
  std::string name;
  std::string data;
};

// GET `target` with `headers` on 127.0.0.1:port; a reader thread collects the answer.
class SseClient {
 public:
  SseClient(unsigned short port, const std::string& target,
            const std::vector<std::pair<std::string, std::string>>& headers = {});
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  void close();
  bool wait_head(std::chrono::milliseconds timeout = 20s);
  // Waits until `done` holds (called under the client's lock); false at the deadline.
  bool wait(const std::function<bool(const SseClient&)>& done,
            std::chrono::milliseconds timeout = 20s);
  unsigned status() const;
  std::string body() const;  // the body of a non-stream answer
  std::vector<Event> events() const;

  // For wait() predicates.
  const std::vector<Event>& events_unlocked() const { return events_; }
  bool closed_unlocked() const { return closed_; }
  bool has_event(const std::string& name) const;  // unlocked

 private:
  void read_loop();
  void parse();

  int fd_ = -1;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  std::string head_;
  bool head_done_ = false;
  unsigned status_ = 0;
  std::vector<Event> events_;
  bool closed_ = false;
};

// Users, a profile and members inserted straight into a fresh, migrated database.
struct Fixtures {
  std::string insert_user(pg::Pool& pool, Services& services, const std::string& role = "user");
  std::string insert_profile(pg::Pool& pool, Services& services, const std::string& owner,
                             const std::vector<std::string>& watchlist);
  void add_member(pg::Pool& pool, Services& services, const std::string& profile,
                  const std::string& user);
};

struct StreamOptions {
  std::chrono::milliseconds ttl{60'000};
  std::chrono::milliseconds refresh{20'000};
  std::string node = "node-a";
  bool redis_reachable = true;
};

// A stream role in process: StreamService + SessionService behind authentication and a real
// HTTP server, a fresh database, and a producer for market and task records.
class StreamHarness {
 public:
  explicit StreamHarness(StreamOptions options = {});
  ~StreamHarness();

  unsigned short port() const { return port_; }
  std::string token(const std::string& user_id, const std::string& role = "user") const;
  std::vector<std::pair<std::string, std::string>> bearer(const std::string& user_id) const;
  std::string new_user(const std::string& role = "user");
  // A profile with `members` (its creator is the first).
  std::string new_profile(const std::vector<std::string>& members,
                          const std::vector<std::string>& watchlist);
  void produce(const std::string& topic, const std::string& key, const std::string& value);
  double metric(const std::string& name, const std::map<std::string, std::string>& labels = {});
  // Stops the session service (as SIGTERM would).
  void stop_sessions();

  Services services;
  config::Config config;
  std::unique_ptr<kafka::MockCluster> cluster;
  std::unique_ptr<pg::Pool> pg;
  std::unique_ptr<redis::Client> redis;  // the one the service uses
  std::unique_ptr<sse::StreamService> stream;
  std::unique_ptr<SessionService> sessions;
  std::unique_ptr<UserSessionsApi> users_api;

 private:
  std::unique_ptr<auth::JwtCodec> jwt_;
  std::unique_ptr<policy::Authenticator> authenticator_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<http::Server> server_;
  std::future<void> running_;
  unsigned short port_ = 0;
  Fixtures fixtures_;
  bool sessions_stopped_ = false;
};

}  // namespace mesh::sessions::test
