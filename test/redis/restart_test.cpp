// Against a redis-server of the test's own, killed and restarted on the same port.
#include <chrono>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "harness.hpp"

extern char** environ;

namespace mesh::redis::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
  return probe.local_endpoint().port();
}

bool accepting(int port) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  return !ec;
}

class RedisServer {
 public:
  RedisServer(int port, std::vector<std::string> extra) : port_(port), extra_(std::move(extra)) {}
  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    std::vector<std::string> args{"redis-server",
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--dir",
                                  "/tmp",
                                  "--logfile",
                                  ""};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(rc == 0);
    REQUIRE(testing::wait_until([&] { return accepting(port_); }, 10s));
  }

  // Like a crash: no chance to close connections politely.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

std::string client_info(Harness& h, Client& client) {
  return h.command(client, {"CLIENT", "INFO"}).reply.string;
}

TEST_CASE("the client reconnects after a server restart, with AUTH and SELECT again",
          "[redis][restart]") {
  const int port = free_port();
  RedisServer server(port, {"--requirepass", "s3cret"});
  server.start();

  Harness h;
  const std::string url = "redis://:s3cret@127.0.0.1:" + std::to_string(port) + "/3";
  Options options = parse_url(url);
  options.command_timeout = 500ms;
  auto client = h.connected_client(options);
  CHECK(client_info(h, *client).find(" db=3 ") != std::string::npos);
  const Script script("return redis.call('INCR', KEYS[1])");
  CHECK(h.run(script.run(*client, {"restarts"}, {})).reply.integer == 1);

  SECTION("a wrong password fails connect() with the server's reason") {
    auto intruder = h.client(parse_url("redis://:wrong@127.0.0.1:" + std::to_string(port)));
    CHECK_THROWS_WITH(h.run(intruder->connect()), Catch::Contains("AUTH: WRONGPASS"));
  }

  server.kill();
  REQUIRE(testing::wait_until([&] { return !client->connected(); }, 5s));
  CHECK(h.metric("mesh_redis_connected") == 0);
  CHECK(h.metric("mesh_redis_disconnects_total") == 1);
  const auto started = Clock::now();
  const auto failed = h.command(*client, {"PING"});
  CHECK(failed.error == Errc::not_connected);
  CHECK(Clock::now() - started < 100ms);
  // Reconnection keeps trying, with backoff, while the server is down.
  const double failures_before = h.metric("mesh_redis_connect_failures_total");
  REQUIRE(testing::wait_until(
      [&] { return h.metric("mesh_redis_connect_failures_total") >= failures_before + 2; }, 10s));
  CHECK_FALSE(client->connected());

  server.start();
  REQUIRE(testing::wait_until([&] { return h.command(*client, {"PING"}).ok(); }, 10s));
  CHECK(client->connected());
  CHECK(h.metric("mesh_redis_connected") == 1);
  CHECK(client_info(h, *client).find(" db=3 ") != std::string::npos);
  // A fresh server has no scripts: NOSCRIPT, then SCRIPT LOAD and EVALSHA again.
  CHECK(h.run(script.run(*client, {"restarts"}, {})).reply.integer == 1);

  h.run(client->close());
}

TEST_CASE("commands in flight when the server dies fail with a transport error",
          "[redis][restart]") {
  const int port = free_port();
  RedisServer server(port, {});
  server.start();
  Harness h;
  Options options;
  options.port = port;
  options.command_timeout = 5s;
  auto client = h.connected_client(options);

  auto helper = h.connected_client(options);
  REQUIRE(h.command(*client, {"CLIENT", "SETNAME", "doomed"}).ok());
  auto blocked = asio::co_spawn(h.io, client->command({"BLPOP", "never", "10"}), asio::use_future);
  REQUIRE(testing::wait_until([&] { return server_shows(h, *helper, "doomed", "blpop"); }));
  const auto killed = Clock::now();
  server.kill();
  REQUIRE(blocked.wait_for(5s) == std::future_status::ready);
  CHECK(blocked.get().error == Errc::connection_lost);
  CHECK(Clock::now() - killed < 2s);
  h.run(client->close());
  h.run(helper->close());
}

}  // namespace
}  // namespace mesh::redis::test
