#pragma once
// Helpers for the stream tests: a blocking Server-Sent Events client on loopback that parses
// frames on a reader thread, a hub served by a real HTTP server, and metric reads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>

#include "mesh/http/server.hpp"
#include "mesh/sse/hub.hpp"
#include "mesh/testing/http_client.hpp"
#include "mesh/testing/metrics.hpp"

namespace mesh::sse::test {

using namespace std::chrono_literals;

struct Event {
  std::string name;
  std::string id;
  std::string data;
};

class SseClient {
 public:
  // Connects to 127.0.0.1:port and sends GET `target`. With `receive_buffer` > 0, SO_RCVBUF is
  // set before connecting (a slow client). Reading starts at once unless `read` is false.
  SseClient(unsigned short port, const std::string& target, int receive_buffer = 0,
            bool read = true);
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  void start_reading();
  // Closes the connection (the server sees end of stream or a reset).
  void close();

  // Waits until the response head arrived; false at the deadline.
  bool wait_head(std::chrono::milliseconds timeout = 20s);
  // Waits until `done` holds (checked under the client's lock); false at the deadline.
  bool wait(const std::function<bool(const SseClient&)>& done,
            std::chrono::milliseconds timeout = 20s);

  // Under wait() or after the reader stopped; copies otherwise.
  unsigned status() const;
  std::string head() const;
  std::vector<Event> events() const;
  std::size_t event_count() const;
  std::size_t heartbeats() const;
  bool closed() const;  // the server closed the connection

  // Unlocked views for wait() predicates.
  const std::vector<Event>& events_unlocked() const { return events_; }
  std::size_t heartbeats_unlocked() const { return heartbeats_; }
  bool closed_unlocked() const { return closed_; }
  const std::string& head_unlocked() const { return head_; }
  const std::string& body_unlocked() const { return body_; }

 private:
  void read_loop();
  void parse();  // under mutex_

  int fd_ = -1;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  std::string head_;
  std::string body_;  // the non-event body of a non-stream answer
  bool head_done_ = false;
  std::vector<Event> events_;
  std::size_t heartbeats_ = 0;
  bool closed_ = false;
};

using testing::metric;

// A hub behind a real HTTP server on 127.0.0.1:0 with the route
// GET /v1/stream/markets/{product} (the product "NOPE-USD" answers 404), on a two-thread
// io_context.
class HubServer {
 public:
  explicit HubServer(HubOptions options = {});
  ~HubServer();

  unsigned short port() const { return port_; }
  Hub& hub() { return *hub_; }
  prometheus::Registry& registry() { return *registry_; }

 private:
  testing::IoThread io_{2};
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<http::Server> server_;
  unsigned short port_ = 0;
};

// A loopback port nothing listens on.
unsigned short closed_port();

}  // namespace mesh::sse::test
