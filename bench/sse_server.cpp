// The stream fan-out benchmark's server: a Hub behind mesh's HTTP server (--mode=hub), or, as
// the baseline, a bare Asio loop writing the same frames to the same kind of sockets with the
// same bounded queue and gather limit but no locks, strands or metrics (--mode=bare). One io
// thread; a publisher thread publishes `--rate` trade events per second to one product.
//
// Schedule: print "PORT <n>", wait for --clients subscribers, measure RSS, publish for
// --seconds, then print one JSON line with the figures and exit. Loopback only.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "mesh/core/log.hpp"
#include "mesh/http/server.hpp"
#include "mesh/market/events.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/sse/hub.hpp"

using namespace mesh;
using tcp = asio::ip::tcp;

namespace {

struct Options {
  std::string mode = "hub";
  std::size_t clients = 10'000;
  double rate = 500;
  double seconds = 10;
  std::size_t queue = 256;
};

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string trade_json(std::int64_t sequence) {
  return market::encode(market::Trade{"BTC-USD", sequence, "27012.35", "0.00120000",
                                      market::Side::buy, "2026-11-30T14:03:07.123456Z", sequence});
}

const std::string kHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";

// The baseline: everything on the one io thread, no locks.
class BareFanout {
 public:
  BareFanout(asio::io_context& io, std::size_t queue) : io_(io), acceptor_(io), queue_(queue) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen(asio::socket_base::max_listen_connections);
    accept();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::size_t clients() const { return clients_.load(); }
  std::uint64_t delivered() const { return delivered_.load(); }
  std::uint64_t dropped() const { return dropped_.load(); }

  // From any thread: the fan-out runs on the io thread.
  void publish(std::int64_t id, const std::string& data) {
    auto frame = std::make_shared<const std::string>(sse::format_event("trade", id, data));
    asio::post(io_, [this, frame] {
      for (auto& connection : connections_) {
        if (connection->closed) continue;
        if (connection->queue.size() >= queue_) {
          connection->queue.pop_front();
          ++dropped_;
        }
        connection->queue.push_back(frame);
        if (!connection->writing) write(connection);
      }
    });
  }

  void close_all() {
    asio::post(io_, [this] {
      for (auto& connection : connections_) {
        error_code ignored;
        connection->socket.close(ignored);
      }
      acceptor_.close();
    });
  }

 private:
  struct Connection {
    explicit Connection(tcp::socket socket) : socket(std::move(socket)) {}
    tcp::socket socket;
    std::deque<sse::Frame> queue;
    std::vector<sse::Frame> batch;
    std::vector<asio::const_buffer> buffers;
    bool writing = false;
    bool closed = false;
  };

  void accept() {
    acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec) return;
      auto connection = std::make_shared<Connection>(std::move(socket));
      auto request = std::make_shared<asio::streambuf>(16 * 1024);
      asio::async_read_until(connection->socket, *request, "\r\n\r\n",
                             [this, connection, request](const error_code& ec, std::size_t) {
                               if (ec) return;
                               asio::async_write(
                                   connection->socket, asio::buffer(kHead),
                                   [this, connection](const error_code& ec, std::size_t) {
                                     if (ec) return;
                                     connections_.push_back(connection);
                                     ++clients_;
                                   });
                             });
      accept();
    });
  }

  void write(const std::shared_ptr<Connection>& connection) {
    const std::size_t n = std::min(connection->queue.size(), sse::Hub::kMaxGather);
    connection->batch.clear();
    connection->buffers.clear();
    for (std::size_t i = 0; i < n; ++i) {
      connection->batch.push_back(std::move(connection->queue.front()));
      connection->queue.pop_front();
      connection->buffers.push_back(asio::buffer(*connection->batch.back()));
    }
    connection->writing = true;
    asio::async_write(connection->socket, connection->buffers,
                      [this, connection, n](const error_code& ec, std::size_t) {
                        connection->writing = false;
                        if (ec) {
                          connection->closed = true;
                          connection->queue.clear();
                          return;
                        }
                        delivered_ += n;
                        if (!connection->queue.empty()) write(connection);
                      });
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  std::size_t queue_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::atomic<std::size_t> clients_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (key == "--mode") {
      options.mode = value;
    } else if (key == "--clients") {
      options.clients = std::stoul(value);
    } else if (key == "--rate") {
      options.rate = std::stod(value);
    } else if (key == "--seconds") {
      options.seconds = std::stod(value);
    } else if (key == "--queue") {
      options.queue = std::stoul(value);
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (options.mode != "hub" && options.mode != "bare")
    throw std::invalid_argument("--mode is hub or bare");
  return options;
}

// Publishes `rate` events per second for `seconds` through `publish`; returns the count.
template <class Publish>
std::int64_t publish_for(const Options& options, Publish publish) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(options.seconds);
  std::int64_t published = 0;
  while (Clock::now() < end) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const auto due = static_cast<std::int64_t>(elapsed * options.rate);
    while (published < due) {
      ++published;
      publish(published, trade_json(published));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return published;
}

bool wait_for(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  log::set_level("warn");
  asio::io_context io(1);
  auto guard = asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  auto registry = metrics::make_registry();

  std::unique_ptr<sse::Hub> hub;
  std::unique_ptr<http::Server> server;
  std::unique_ptr<BareFanout> bare;
  unsigned short port = 0;
  if (options.mode == "hub") {
    sse::HubOptions hub_options;
    hub_options.client_queue = options.queue;
    hub_options.heartbeat = std::chrono::minutes(10);
    hub_options.max_clients = options.clients * 2;
    hub = std::make_unique<sse::Hub>(io.get_executor(), hub_options, *registry);
    hub->start();
    auto router = std::make_shared<http::Router>();
    router->add("GET", "/v1/stream/markets/{product}",
                [&hub](http::Request& request) -> Task<http::Response> {
                  co_return hub->subscribe(std::string(request.param("product")));
                });
    http::ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.max_connections = options.clients * 2;
    server = std::make_unique<http::Server>(io.get_executor(), server_options, router, *registry);
    server->start();
    port = server->local_endpoint().port();
  } else {
    bare = std::make_unique<BareFanout>(io, options.queue);
    port = bare->port();
  }
  auto clients = [&] { return hub ? hub->clients() : bare->clients(); };
  auto delivered = [&] { return hub ? hub->delivered() : bare->delivered(); };
  auto dropped = [&] { return hub ? hub->dropped() : bare->dropped(); };

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const double rss_idle = static_cast<double>(metrics::resident_memory_bytes());
  std::cout << "PORT " << port << std::endl;

  const bool all_connected =
      wait_for([&] { return clients() >= options.clients; }, std::chrono::seconds(300));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double rss_connected = static_cast<double>(metrics::resident_memory_bytes());

  const double cpu_before = cpu_seconds();
  const auto delivered_before = delivered();
  const auto dropped_before = dropped();
  const auto started = std::chrono::steady_clock::now();
  const auto published = publish_for(options, [&](std::int64_t id, const std::string& data) {
    if (hub) {
      hub->publish("BTC-USD", "trade", id, data);
    } else {
      bare->publish(id, data);
    }
  });
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double cpu = cpu_seconds() - cpu_before;
  const auto delivered_window = delivered() - delivered_before;
  const double rss_loaded = static_cast<double>(metrics::resident_memory_bytes());
  // Let the queues drain so the clients can count what they got, then close.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto connected = clients();

  std::printf(
      "{\"mode\":\"%s\",\"clients\":%zu,\"all_connected\":%s,\"rate\":%.0f,\"seconds\":%.2f,"
      "\"published\":%lld,\"delivered\":%llu,\"delivered_total\":%llu,\"dropped\":%llu,"
      "\"cpu_seconds\":%.3f,\"events_per_cpu_second\":%.0f,\"events_per_second\":%.0f,"
      "\"rss_idle_bytes\":%.0f,\"rss_connected_bytes\":%.0f,\"rss_loaded_bytes\":%.0f,"
      "\"rss_per_connection_bytes\":%.1f,\"rss_per_connection_loaded_bytes\":%.1f,"
      "\"max_queue_length\":%zu,\"connected_at_end\":%zu}\n",
      options.mode.c_str(), options.clients, all_connected ? "true" : "false", options.rate, wall,
      static_cast<long long>(published), static_cast<unsigned long long>(delivered_window),
      static_cast<unsigned long long>(delivered() - delivered_before),
      static_cast<unsigned long long>(dropped() - dropped_before), cpu,
      cpu > 0 ? static_cast<double>(delivered_window) / cpu : 0.0,
      static_cast<double>(delivered_window) / wall, rss_idle, rss_connected, rss_loaded,
      (rss_connected - rss_idle) / static_cast<double>(options.clients),
      (rss_loaded - rss_idle) / static_cast<double>(options.clients),
      hub ? hub->max_queue_length() : options.queue, connected);
  std::fflush(stdout);

  if (hub) {
    hub->stop();
    wait_for([&] { return hub->quiescent(); }, std::chrono::seconds(30));
  } else {
    bare->close_all();
  }
  guard.reset();
  io.stop();
  io_thread.join();
  return 0;
}
