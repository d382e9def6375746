#pragma once
// The HTTP/1.1 server every role runs: a listener, one coroutine per connection on its own
// strand, a fresh parser per request with body and header limits, a deadline on every read and
// write, request ids, access logs and metrics. Beast stays inside server.cpp.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/registry.h>
#include <boost/asio/ip/tcp.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/http/router.hpp"

namespace mesh::http {

struct ServerOptions {
  std::string listen = "0.0.0.0:8080";  // host:port; port 0 picks a free one
  std::size_t body_limit = 1024 * 1024;
  std::size_t header_limit = 16 * 1024;
  std::chrono::milliseconds read_timeout{10'000};  // a whole request, headers and body
  std::chrono::milliseconds idle_timeout{60'000};  // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{10'000};
  std::size_t max_connections = 10'000;
};

// Parses "host:port", "[v6]:port" or ":port". Throws std::invalid_argument.
asio::ip::tcp::endpoint parse_endpoint(std::string_view text);

class Server {
 public:
  Server(asio::any_io_executor executor, ServerOptions options, std::shared_ptr<Router> router,
         prometheus::Registry& registry);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. Throws with the address on failure.
  void start();
  // The bound address (useful with port 0).
  asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting, lets in-flight requests finish (their connections then close) and closes
  // idle connections; connections still busy at the deadline are closed.
  Task<void> stop(std::chrono::milliseconds deadline);

  std::size_t connections() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace mesh::http
