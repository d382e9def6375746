#pragma once
// A loopback websocket server speaking the exchange feed protocol, for the ingester tests:
// plain or TLS (with a certificate made at test time), port 0. Each accepted connection runs a
// script written by the test.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mesh/core/asio.hpp"

namespace mesh::ingest::test {

// A self-signed certificate (also its own CA) for `host`, made with the openssl CLI.
struct Certificate {
  std::filesystem::path certificate;  // PEM; pass it as config.ingester_ca_file
  std::filesystem::path key;
};
Certificate make_certificate(const std::filesystem::path& directory, const std::string& host);

class FeedConnection {
 public:
  struct Impl;
  explicit FeedConnection(std::unique_ptr<Impl> impl, std::size_t index);
  ~FeedConnection();

  std::size_t index() const { return index_; }
  // The next message from the client; nullopt once it closed or broke.
  Task<std::optional<std::string>> read();
  // False when the connection is gone.
  Task<bool> send(std::string message);
  Task<bool> send_binary(std::string message);
  // Closes the TCP connection without a websocket close.
  void drop();
  // Reads until the client closes the connection (or it breaks).
  Task<void> wait_closed();

 private:
  std::unique_ptr<Impl> impl_;
  std::size_t index_;
};

class FeedServer {
 public:
  // Connection i (from 0) runs script(connection); when the script returns the connection is
  // dropped. The first client message (the subscribe request) is read before the script runs
  // and recorded in subscribes().
  using Script = std::function<Task<void>(FeedConnection&)>;

  FeedServer(asio::io_context& io, Script script, std::optional<Certificate> tls = {});
  ~FeedServer();

  // ws://localhost:PORT or wss://localhost:PORT
  std::string url() const;
  std::size_t connections() const;
  std::vector<std::string> subscribes() const;
  // Closes the listener and every connection.
  void stop();

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace mesh::ingest::test
