// Locked streaming sessions across two stream processes sharing one Redis (a redis-server of the
// test's own, so it can be restarted), Postgres and mesh-kafka-mock: a pair opens on one replica
// only; a replica killed with SIGKILL keeps its pairs locked until the TTL runs out, then they
// open elsewhere; after a Redis restart every session recovers its lock or ends cleanly, and no
// pair stays stuck.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "cluster.hpp"
#include "mesh/auth/jwt.hpp"
#include "mesh/core/ids.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::e2e {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kLockTtl = 3000ms;
constexpr auto kRefresh = 300ms;

// A raw session stream: the head, then whatever the server writes, read on demand.
class Stream {
 public:
  Stream(unsigned short port, const std::string& target, const std::string& token) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    const std::string request = "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
                                "\r\nAccept: text/event-stream\r\n\r\n";
    REQUIRE(::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));
  }
  ~Stream() { close(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until `text` was received, the server closed, or the deadline.
  bool read_until(const std::string& text, std::chrono::milliseconds timeout = 20s) {
    const auto deadline = Clock::now() + timeout;
    while (received_.find(text) == std::string::npos) {
      if (closed_ || Clock::now() >= deadline) return false;
      pump(20ms);
    }
    return true;
  }
  // Reads until the server closed the connection or the deadline.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_ && Clock::now() < deadline) pump(20ms);
    return closed_;
  }
  // Reads what arrived without waiting; true while the connection is open.
  bool open() {
    pump(0ms);
    return !closed_;
  }

  unsigned status() {
    read_until("\r\n\r\n");
    return received_.size() > 12 ? static_cast<unsigned>(std::stoi(received_.substr(9, 3))) : 0;
  }
  const std::string& received() const { return received_; }

 private:
  void pump(std::chrono::milliseconds wait) {
    pollfd entry{fd_, POLLIN, 0};
    if (::poll(&entry, 1, static_cast<int>(wait.count())) <= 0) return;
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) {
      closed_ = true;
      return;
    }
    received_.append(buffer, static_cast<std::size_t>(n));
  }

  int fd_ = -1;
  std::string received_;
  bool closed_ = false;
};

// One inline command to `redis` (RESP inline form); the raw reply.
std::string redis_command(unsigned short port, const std::string& command) {
  return testing::raw_exchange(port, command + "\r\n", 2s, true).bytes;
}

unsigned short port_of(const std::string& redis_url) {
  return static_cast<unsigned short>(std::stoi(redis_url.substr(redis_url.rfind(':') + 1)));
}

std::string lock_key(const std::string& user, const std::string& profile) {
  return "mesh:session:{" + user + "}:" + profile;
}

}  // namespace

TEST_CASE("e2e: sessions are locked across stream replicas, survive crashes and Redis restarts",
          "[e2e][sessions]") {
  Cluster cluster("sessions");
  RedisServer redis(cluster.log_dir());
  const auto redis_port = port_of(redis.url());
  const std::vector<std::string> args{"--session-lock-ttl-ms=" + std::to_string(kLockTtl.count()),
                                      "--session-refresh-ms=" + std::to_string(kRefresh.count())};
  auto with_name = [&](const std::string& name) {
    auto all = args;
    all.push_back("--node-name=" + name);
    return all;
  };
  auto* one = &cluster.start_with_redis("stream-1", "stream", redis.url(), with_name("stream-1"));
  auto* two = &cluster.start_with_redis("stream-2", "stream", redis.url(), with_name("stream-2"));
  cluster.wait_ready(*one);
  cluster.wait_ready(*two);
  INFO(cluster.diagnostics());

  PgConnection db(cluster.pg_url());
  const std::string user = core::uuid_v7();
  db.query("INSERT INTO users (id, username, password_hash) VALUES ('" + user + "', 'u-" + user +
           "', 'x') RETURNING id");
  std::vector<std::string> profiles;
  for (int i = 0; i < 3; ++i) {
    profiles.push_back(core::uuid_v7());
    db.query("INSERT INTO profiles (id, name, watchlist, created_by) VALUES ('" + profiles[i] +
             "', 'p', '{BTC-USD}', '" + user + "') RETURNING id");
    db.query("INSERT INTO profile_members (profile_id, user_id) VALUES ('" + profiles[i] + "', '" +
             user + "') RETURNING user_id");
  }
  const auth::JwtCodec jwt(jwt_secret(), "mesh", std::chrono::seconds(3600));
  const std::string token = jwt.issue(user, "u", "user", std::chrono::system_clock::now());
  const std::string target = "/v1/stream/sessions/" + profiles[0];

  // The same pair opened on both replicas at once: exactly one opens.
  auto on_one = std::make_unique<Stream>(one->port, target, token);
  auto on_two = std::make_unique<Stream>(two->port, target, token);
  const unsigned status_one = on_one->status();
  const unsigned status_two = on_two->status();
  CHECK(std::min(status_one, status_two) == 200);
  CHECK(std::max(status_one, status_two) == 409);
  Node* holder = status_one == 200 ? one : two;
  Node* survivor = status_one == 200 ? two : one;
  auto& held = status_one == 200 ? on_one : on_two;
  REQUIRE(held->read_until("event: session"));
  CHECK(held->received().find(holder->name) != std::string::npos);

  // The holder crashes: its lock outlives it until the TTL, then the pair opens elsewhere.
  holder->process->kill_now();
  cluster.mark_killed(*holder);
  CHECK(Stream(survivor->port, target, token).status() == 409);
  std::unique_ptr<Stream> reopened;
  REQUIRE(testing::wait_until(
      [&] {
        auto attempt = std::make_unique<Stream>(survivor->port, target, token);
        if (attempt->status() != 200) return false;
        reopened = std::move(attempt);
        return true;
      },
      30s, 100ms));
  REQUIRE(reopened->read_until(survivor->name));

  // More sessions, then Redis restarts empty: each recovers its lock or ends cleanly.
  auto second =
      std::make_unique<Stream>(survivor->port, "/v1/stream/sessions/" + profiles[1], token);
  REQUIRE(second->read_until("event: session"));
  redis.restart();
  std::vector<std::pair<std::string, Stream*>> open{{profiles[0], reopened.get()},
                                                    {profiles[1], second.get()}};
  for (auto& [profile, stream] : open) {
    INFO("profile " << profile);
    const bool settled = testing::wait_until(
        [&, &profile = profile, &stream = stream] {
          const bool locked =
              redis_command(redis_port, "EXISTS " + lock_key(user, profile)).starts_with(":1");
          return locked || !stream->open();
        },
        30s, 50ms);
    CHECK(settled);
    if (!stream->open()) CHECK(stream->received().find("event: end") != std::string::npos);
  }
  // Once the clients are gone, every pair opens again.
  reopened->close();
  second->close();
  for (const auto& profile : {profiles[0], profiles[1], profiles[2]}) {
    std::unique_ptr<Stream> fresh;
    CHECK(testing::wait_until(
        [&] {
          auto attempt =
              std::make_unique<Stream>(survivor->port, "/v1/stream/sessions/" + profile, token);
          if (attempt->status() != 200) return false;
          fresh = std::move(attempt);
          return true;
        },
        30s, 100ms));
  }
  CHECK(cluster.unexpected_exits().empty());
}

}  // namespace mesh::e2e
