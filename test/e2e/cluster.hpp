#pragma once
// A whole mesh deployment as real processes for the end-to-end test: one mesh-kafka-mock, a fresh
// Postgres database, and mesh role processes started on free ports and awaited on /readyz. Also
// a keep-alive HTTP client and a small libpq connection for reading results straight from the
// database.
#include <libpq-fe.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "mesh/testing/http_client.hpp"
#include "process.hpp"

namespace mesh::e2e {

using namespace std::chrono_literals;

// Mesh processes drain this long after SIGTERM (--drain-timeout-ms).
inline constexpr auto kDrainTimeout = 10s;

// Consumer group session timeout (--kafka-session-timeout-ms): a killed consumer's partitions
// move to the others after about this long. Not 3000: the librdkafka 2.0.2 mock waits a fixed
// 3000 ms before answering the first JoinGroup of an empty group, and with a session timeout of
// 3000 ms a member joining then (the updater restarted after a crash) is often evicted while it
// waits, under CPU load, which leaves its JoinGroup unanswered for up to max.poll.interval.ms.
inline constexpr std::chrono::milliseconds kSessionTimeout{4000};

// One mesh process of a role, listening on `port`.
struct Node {
  std::string name;  // "worker-2"
  std::string role;  // "worker"
  std::vector<std::string> extra_args;
  std::string redis_url;  // empty: the test server's (testing::redis_url())
  unsigned short port = 0;
  std::unique_ptr<Process> process;
};

class Cluster {
 public:
  // Starts the Kafka mock (the task and market topics with 12 partitions each on 3
  // brokers) and creates a fresh database. Logs go to a temporary directory, removed by the
  // destructor unless keep_logs() was called.
  explicit Cluster(const std::string& name);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  const std::string& pg_url() const { return pg_url_; }
  const std::filesystem::path& log_dir() const { return log_dir_; }
  Process& kafka() { return *kafka_; }

  // Starts `mesh --role=<role>` on a free port; wait_ready() awaits it.
  Node& start(const std::string& name, const std::string& role,
              std::vector<std::string> extra_args = {});
  // The same with a Redis of its own (a RedisServer the test can restart).
  Node& start_with_redis(const std::string& name, const std::string& role,
                         const std::string& redis_url, std::vector<std::string> extra_args = {});
  // Waits until the node's /readyz answers 200. If the process exits first (another program
  // may have taken its port), it is started again on a new port, a few times at most. Throws
  // with the logs when it never gets ready.
  void wait_ready(Node& node, std::chrono::milliseconds timeout = 90s);
  Node& node(const std::string& name);
  // Nodes whose process is still running.
  std::vector<Node*> live_nodes();
  // Names of nodes that were expected to run (not deliberately killed) but have exited.
  std::vector<std::string> unexpected_exits();
  void mark_killed(const Node& node);

  // Log tails of every process ever started, for failure messages.
  std::string diagnostics(std::size_t lines = 30) const;
  void keep_logs() { keep_logs_ = true; }

 private:
  void spawn(Node& node, int attempt);

  std::filesystem::path log_dir_;
  bool keep_logs_ = false;
  std::unique_ptr<Process> kafka_;
  std::string bootstrap_;
  std::string pg_url_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Process>> retired_;  // earlier attempts, kept for their logs
  std::vector<std::string> killed_;
};

// MESH_JWT_SECRET of every process the cluster starts (to mint bearer tokens in tests).
std::string jwt_secret();

// A redis-server of the test's own on a fixed loopback port, without persistence, so a restart
// loses every key (as a crashed Redis without AOF does).
class RedisServer {
 public:
  explicit RedisServer(const std::filesystem::path& log_dir);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // SIGKILL (no chance to close connections politely), then start again on the same port.
  void restart();

 private:
  void start();
  std::filesystem::path log_dir_;
  unsigned short port_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

// An HTTP/1.1 client that keeps its connection open between requests and reconnects when the
// server closed it. Callers retry only requests that are safe to repeat.
class HttpSession {
 public:
  explicit HttpSession(unsigned short port, std::chrono::milliseconds timeout = 20s);
  ~HttpSession();
  testing::HttpReply request(const std::string& method, const std::string& target,
                             const std::string& body = {},
                             const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  unsigned short port_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context io_;
  std::optional<boost::beast::tcp_stream> stream_;
};

// The sum of every sample of a Prometheus metric family served on /metrics (0 when absent).
double scrape_metric(unsigned short port, const std::string& name);

// A libpq connection with text results, for reading what the product stored.
class PgConnection {
 public:
  explicit PgConnection(const std::string& url);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  using Row = std::vector<std::optional<std::string>>;
  std::vector<Row> query(const std::string& sql);
  long long count(const std::string& sql);  // a query returning one integer

 private:
  PGconn* conn_ = nullptr;
};

}  // namespace mesh::e2e
