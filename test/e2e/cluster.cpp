#include "cluster.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mesh/testing/env.hpp"

namespace mesh::e2e {
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr std::string_view kJwtSecret = "e2e-jwt-secret-of-forty-bytes-0123456789";
static_assert(kJwtSecret.size() == 40);

// Polls the mock's stdout for its "bootstrap=" line.
std::optional<std::string> bootstrap_line(const std::filesystem::path& path) {
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) {
    // A line without its newline may still be being written.
    if (line.rfind("bootstrap=", 0) == 0 && !file.eof()) return line.substr(10);
  }
  return std::nullopt;
}

// warn keeps the logs short; MESH_E2E_LOG_LEVEL=info (or debug) shows more when investigating.
std::string log_level() {
  const char* level = std::getenv("MESH_E2E_LOG_LEVEL");
  return level != nullptr && *level != '\0' ? level : "warn";
}

}  // namespace

Cluster::Cluster(const std::string& name) : log_dir_(make_temp_dir("mesh-e2e-" + name + "-")) {
  kafka_ = std::make_unique<Process>(
      "kafka-mock",
      std::vector<std::string>{MESH_KAFKA_MOCK_BINARY, "--brokers", "3", "--topic",
                               "tasks.pending:12", "--topic", "tasks.completed:12", "--topic",
                               "tasks.dlq:12", "--topic", "market.trades:12", "--topic",
                               "market.ticker:12", "--topic", "market.dlq:12", "--topic",
                               "messages:12", "--topic", "messages.dlq:12"},
      Process::Env{}, log_dir_);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (true) {
    if (auto line = bootstrap_line(kafka_->stdout_path())) {
      bootstrap_ = *line;
      break;
    }
    if (!kafka_->running() || std::chrono::steady_clock::now() > deadline) {
      keep_logs_ = true;
      throw std::runtime_error("mesh-kafka-mock printed no bootstrap line (" +
                               (kafka_->status() ? kafka_->status()->describe() : "still running") +
                               ")\n" + kafka_->log_tail());
    }
    std::this_thread::sleep_for(20ms);
  }
  pg_url_ = testing::fresh_pg_database();
}

Cluster::~Cluster() {
  // Children first (their destructors SIGKILL whatever still runs), then the logs.
  nodes_.clear();
  retired_.clear();
  kafka_.reset();
  const char* keep = std::getenv("MESH_E2E_KEEP_LOGS");
  if (!keep_logs_ && (keep == nullptr || *keep == '\0' || *keep == '0')) {
    std::error_code ignored;
    std::filesystem::remove_all(log_dir_, ignored);
  }
}

Node& Cluster::start(const std::string& name, const std::string& role,
                     std::vector<std::string> extra_args) {
  auto node = std::make_unique<Node>();
  node->name = name;
  node->role = role;
  node->extra_args = std::move(extra_args);
  spawn(*node, 1);
  nodes_.push_back(std::move(node));
  return *nodes_.back();
}

Node& Cluster::start_with_redis(const std::string& name, const std::string& role,
                                const std::string& redis_url, std::vector<std::string> extra_args) {
  auto node = std::make_unique<Node>();
  node->name = name;
  node->role = role;
  node->extra_args = std::move(extra_args);
  node->redis_url = redis_url;
  spawn(*node, 1);
  nodes_.push_back(std::move(node));
  return *nodes_.back();
}

std::string jwt_secret() { return std::string(kJwtSecret); }

RedisServer::RedisServer(const std::filesystem::path& log_dir)
    : log_dir_(log_dir), port_(free_port()) {
  start();
}

RedisServer::~RedisServer() {
  if (process_) process_->kill_now();
}

void RedisServer::restart() {
  process_->kill_now();
  start();
}

void RedisServer::start() {
  std::vector<std::string> argv{"/usr/bin/redis-server",
                                "--port",
                                std::to_string(port_),
                                "--bind",
                                "127.0.0.1",
                                "--save",
                                "",
                                "--appendonly",
                                "no",
                                "--dir",
                                log_dir_.string()};
  process_ = std::make_unique<Process>("redis." + std::to_string(++starts_), std::move(argv),
                                       Process::Env{}, log_dir_);
  const bool up = testing::wait_until(
      [&] {
        try {
          return testing::raw_exchange(port_, "PING\r\n", 1s, true).bytes.starts_with("+PONG");
        } catch (const std::exception&) {
          return false;
        }
      },
      20s, 20ms);
  if (!up) throw std::runtime_error("redis-server did not start: " + process_->log_tail());
}

void Cluster::spawn(Node& node, int attempt) {
  if (node.process) retired_.push_back(std::move(node.process));
  node.port = free_port();
  std::vector<std::string> argv{
      MESH_BINARY,
      "--role=" + node.role,
      "--listen=127.0.0.1:" + std::to_string(node.port),
      "--kafka-brokers=" + bootstrap_,
      "--pg-url=" + pg_url_,
      "--redis-url=" + (node.redis_url.empty() ? testing::redis_url() : node.redis_url),
      "--log-level=" + log_level(),
      "--kafka-session-timeout-ms=" + std::to_string(kSessionTimeout.count()),
      "--password-ops-limit=1",
      "--password-mem-kib=8",
      "--drain-timeout-ms=" + std::to_string(std::chrono::milliseconds(kDrainTimeout).count())};
  argv.insert(argv.end(), node.extra_args.begin(), node.extra_args.end());
  const std::string process_name =
      attempt == 1 ? node.name : node.name + ".try" + std::to_string(attempt);
  node.process = std::make_unique<Process>(
      process_name, std::move(argv), Process::Env{{"MESH_JWT_SECRET", std::string(kJwtSecret)}},
      log_dir_);
}

void Cluster::wait_ready(Node& node, std::chrono::milliseconds timeout) {
  constexpr int kAttempts = 3;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int attempt = 1;
  std::string last_answer = "no answer yet";
  while (std::chrono::steady_clock::now() < deadline) {
    if (!node.process->running()) {
      if (attempt == kAttempts) break;
      spawn(node, ++attempt);
      continue;
    }
    try {
      testing::HttpCall call;
      call.target = "/readyz";
      call.timeout = 2s;
      const auto reply = testing::http(node.port, call);
      if (reply.status == 200) return;
      last_answer = std::to_string(reply.status) + " " + reply.body;
    } catch (const std::exception& e) {
      last_answer = e.what();
    }
    std::this_thread::sleep_for(50ms);
  }
  keep_logs_ = true;
  throw std::runtime_error(
      node.name + " did not get ready on port " + std::to_string(node.port) + " (" +
      (node.process->status() ? node.process->status()->describe() : "still running") +
      "; last /readyz: " + last_answer + ")\n" + diagnostics());
}

Node& Cluster::node(const std::string& name) {
  for (auto& node : nodes_) {
    if (node->name == name) return *node;
  }
  throw std::out_of_range("no node " + name);
}

std::vector<Node*> Cluster::live_nodes() {
  std::vector<Node*> result;
  for (auto& node : nodes_) {
    if (node->process->running()) result.push_back(node.get());
  }
  return result;
}

void Cluster::mark_killed(const Node& node) { killed_.push_back(node.name); }

std::vector<std::string> Cluster::unexpected_exits() {
  std::vector<std::string> result;
  for (auto& node : nodes_) {
    if (node->process->running()) continue;
    if (std::find(killed_.begin(), killed_.end(), node->name) != killed_.end()) continue;
    result.push_back(node->name + " (" + node->process->status()->describe() + ")");
  }
  if (!kafka_->running()) result.push_back("kafka-mock (" + kafka_->status()->describe() + ")");
  return result;
}

std::string Cluster::diagnostics(std::size_t lines) const {
  std::ostringstream out;
  out << "logs in " << log_dir_.string() << " (kept)\n";
  auto describe = [&](const Process& process) {
    out << process.log_tail(lines);
    if (process.status())
      out << "---- " << process.name() << ": " << process.status()->describe() << "\n";
  };
  describe(*kafka_);
  for (const auto& process : retired_) describe(*process);
  for (const auto& node : nodes_) describe(*node->process);
  return out.str();
}

HttpSession::HttpSession(unsigned short port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout) {}

HttpSession::~HttpSession() {
  if (stream_) {
    boost::system::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
}

testing::HttpReply HttpSession::request(
    const std::string& method, const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  bhttp::request<bhttp::string_body> request{bhttp::string_to_verb(method), target, 11};
  request.set(bhttp::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) request.set(bhttp::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  request.keep_alive(true);

  // A kept connection may have been closed by the server meanwhile: then one more try on a
  // fresh connection. Any error on a fresh connection is the caller's.
  for (int attempt = 0;; ++attempt) {
    const bool reused = stream_.has_value();
    try {
      if (!stream_) {
        stream_.emplace(io_);
        stream_->expires_after(timeout_);
        stream_->connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
      }
      stream_->expires_after(timeout_);
      bhttp::write(*stream_, request);
      beast::flat_buffer buffer;
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(64 * 1024 * 1024);
      bhttp::read(*stream_, buffer, parser);
      auto response = parser.release();
      testing::HttpReply reply;
      reply.status = response.result_int();
      for (const auto& field : response) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        reply.headers.emplace_back(std::move(name), std::string(field.value()));
      }
      reply.body = std::move(response.body());
      if (!response.keep_alive()) stream_.reset();
      return reply;
    } catch (const boost::system::system_error&) {
      stream_.reset();
      if (!reused || attempt > 0) throw;
    }
  }
}

double scrape_metric(unsigned short port, const std::string& name) {
  testing::HttpCall call;
  call.target = "/metrics";
  call.timeout = 10s;
  const auto reply = testing::http(port, call);
  if (reply.status != 200) {
    throw std::runtime_error("GET /metrics answered " + std::to_string(reply.status));
  }
  double sum = 0;
  std::istringstream lines(reply.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name, 0) != 0 || line.size() == name.size()) continue;
    if (line[name.size()] != '{' && line[name.size()] != ' ') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

PgConnection::PgConnection(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    const std::string message = PQerrorMessage(conn_);
    PQfinish(conn_);
    throw std::runtime_error("connecting to " + url + ": " + message);
  }
}

PgConnection::~PgConnection() { PQfinish(conn_); }

std::vector<PgConnection::Row> PgConnection::query(const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(conn_, sql.c_str()), &PQclear);
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    throw std::runtime_error("query failed: " + sql + ": " + PQerrorMessage(conn_));
  }
  std::vector<Row> rows(static_cast<std::size_t>(PQntuples(result.get())));
  const int columns = PQnfields(result.get());
  for (int r = 0; r < static_cast<int>(rows.size()); ++r) {
    for (int c = 0; c < columns; ++c) {
      if (PQgetisnull(result.get(), r, c)) {
        rows[r].emplace_back(std::nullopt);
      } else {
        rows[r].emplace_back(
            std::string(PQgetvalue(result.get(), r, c),
                        static_cast<std::size_t>(PQgetlength(result.get(), r, c))));
      }
    }
  }
  return rows;
}

long long PgConnection::count(const std::string& sql) {
  const auto rows = query(sql);
  if (rows.size() != 1 || rows[0].size() != 1 || !rows[0][0]) {
    throw std::runtime_error("expected one integer from: " + sql);
  }
  return std::stoll(*rows[0][0]);
}

}  // namespace mesh::e2e
