#pragma once
// Test harness for the Redis client: an io_context run by background threads, as in
// production, with blocking helpers so that assertions stay on the Catch2 thread.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::redis::test {

class Harness {
 public:
  explicit Harness(unsigned threads = 2) : work_(io.get_executor()) {
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { io.run(); });
  }

  ~Harness() {
    work_.reset();
    io.stop();
    for (auto& thread : threads_) thread.join();
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Runs `task` on the io threads and waits for its outcome.
  template <class T>
  T run(Task<T> task, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto future = asio::co_spawn(io, std::move(task), asio::use_future);
    if (future.wait_for(timeout) != std::future_status::ready) {
      throw std::runtime_error("Harness::run: task did not finish in time");
    }
    return future.get();
  }

  std::unique_ptr<Client> client(Options options) {
    return std::make_unique<Client>(io.get_executor(), std::move(options), registry);
  }

  // A client of the throwaway server, connected.
  std::unique_ptr<Client> connected_client(Options options = parse_url(testing::redis_url())) {
    auto result = client(std::move(options));
    run(result->connect());
    return result;
  }

  Result command(Client& client, std::vector<std::string> args) {
    return run(client.command(std::move(args)));
  }

  double metric(const std::string& name, const std::string& result_label = "") {
    for (const auto& family : registry.Collect()) {
      if (family.name != name) continue;
      for (const auto& metric : family.metric) {
        const bool matches = result_label.empty() ||
                             (!metric.label.empty() && metric.label[0].value == result_label);
        if (!matches) continue;
        switch (family.type) {
          case prometheus::MetricType::Counter:
            return metric.counter.value;
          case prometheus::MetricType::Gauge:
            return metric.gauge.value;
          case prometheus::MetricType::Histogram:
            return static_cast<double>(metric.histogram.sample_count);
          default:
            return 0;
        }
      }
    }
    return 0;
  }

  // Before io: clients destroyed with the io_context still report to it.
  prometheus::Registry registry;
  asio::io_context io;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// The server shows the client named `name` blocked in `command` (CLIENT LIST).
inline bool server_shows(Harness& h, Client& observer, const std::string& name,
                         const std::string& command) {
  const std::string clients = h.command(observer, {"CLIENT", "LIST"}).reply.string;
  const auto start = clients.find("name=" + name + " ");
  if (start == std::string::npos) return false;
  const auto end = clients.find('\n', start);
  return clients.substr(start, end - start).find("cmd=" + command + " ") != std::string::npos;
}

// Keys unique to this process and call, so reruns against one server never collide.
inline std::string unique_key(const std::string& name) {
  static std::atomic<int> counter{0};
  return "mesh:test:" + std::to_string(::getpid()) + ":" + std::to_string(counter++) + ":" + name;
}

}  // namespace mesh::redis::test
