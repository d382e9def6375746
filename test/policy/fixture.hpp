#pragma once
// A real HTTP server on 127.0.0.1:0 with a small test API behind the real authenticator, and a
// real Redis client, for driving the traffic policies end to end.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/auth/jwt.hpp"
#include "mesh/http/server.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/http_client.hpp"
#include "mesh/testing/metrics.hpp"

namespace mesh::policy::test {

// Keys unique to this process and call, so reruns against one server never collide.
inline std::string unique_prefix(const std::string& name) {
  static std::atomic<int> counter{0};
  return "mesh:test:" + std::to_string(::getpid()) + ":" + std::to_string(counter++) + ":" + name +
         ":";
}

// A loopback port nobody listens on.
inline unsigned short closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

class Fixture {
 public:
  // `connect`: connect the Redis client first (false: it stays unconnected, as when Redis was
  // down at start).
  explicit Fixture(redis::Options options = redis::parse_url(testing::redis_url()),
                   bool connect = true)
      : jwt(std::string(48, 'k'), "mesh", std::chrono::hours(1)), authenticator(jwt) {
    options.connect_timeout = std::chrono::milliseconds(500);
    redis = std::make_unique<redis::Client>(io.io().get_executor(), options, registry);
    if (connect) run(redis->connect());
  }

  ~Fixture() {
    if (server) run(server->stop(std::chrono::seconds(5)));
    run(redis->close());
  }

  template <class T>
  T run(Task<T> task) {
    return asio::co_spawn(io.io(), std::move(task), asio::use_future).get();
  }

  // Installs `before` (CORS), the authenticator, then `after` (rate limits, cache), adds the
  // test routes and starts the server.
  void start(std::vector<http::Middleware> before, std::vector<http::Middleware> after) {
    for (auto& middleware : before) router->use(std::move(middleware));
    router->use(authenticator.middleware());
    for (auto& middleware : after) router->use(std::move(middleware));
    add_routes();
    http::ServerOptions options;
    options.listen = "127.0.0.1:0";
    server = std::make_unique<http::Server>(io.io().get_executor(), options, router, registry);
    server->start();
    port = server->local_endpoint().port();
  }

  std::string token(const std::string& user_id) const {
    return jwt.issue(user_id, "user-" + user_id, "user", std::chrono::system_clock::now());
  }

  testing::HttpReply get(const std::string& target,
                         std::vector<std::pair<std::string, std::string>> headers = {}) {
    testing::HttpCall call;
    call.target = target;
    call.headers = std::move(headers);
    return testing::http(port, call);
  }

  double metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    return testing::metric(registry, name, labels).value_or(0);
  }

  // Before io: clients destroyed with the io_context still report to it.
  prometheus::Registry registry;
  testing::IoThread io{2};
  auth::JwtCodec jwt;
  Authenticator authenticator;
  std::unique_ptr<redis::Client> redis;
  std::shared_ptr<http::Router> router = std::make_shared<http::Router>();
  std::unique_ptr<http::Server> server;
  unsigned short port = 0;

  std::atomic<int> api_calls{0};     // /v1/things and /v1/private
  std::atomic<int> market_calls{0};  // /v1/markets...

 private:
  void add_routes() {
    using http::Request;
    using http::Response;
    router->add("GET", "/healthz",
                [](Request&) -> Task<Response> { co_return Response::text(200, "ok"); });
    router->add("GET", "/v1/things", [this](Request&) -> Task<Response> {
      ++api_calls;
      co_return Response::text(200, "things");
    });
    router->add("POST", "/v1/things", [this](Request&) -> Task<Response> {
      ++api_calls;
      co_return Response::text(201, "created");
    });
    router->add("GET", "/v1/private", require_user([this](Request&) -> Task<Response> {
                  ++api_calls;
                  co_return Response::text(200, "private");
                }));
    // Every answer differs (the call number), so a cached answer is recognizable.
    router->add("GET", "/v1/markets", [this](Request& request) -> Task<Response> {
      const int call = ++market_calls;
      co_return Response::text(
          200, "{\"call\":" + std::to_string(call) + ",\"query\":\"" + request.query + "\"}",
          "application/json");
    });
    router->add("GET", "/v1/markets/{product}/trades", [this](Request& request) -> Task<Response> {
      const int call = ++market_calls;
      if (request.param("product") == "NOPE") co_return http::problem(404, "unknown product");
      if (request.param("product") == "BIG") {
        co_return Response::text(200, std::string(2 * 1024 * 1024, 'x'), "application/json");
      }
      co_return Response::text(200, "{\"call\":" + std::to_string(call) + "}", "application/json");
    });
  }
};

}  // namespace mesh::policy::test
