#pragma once
// The process runtime: one io_context run by N threads, a CPU pool, signal handling and the
// health state that /healthz and /readyz report.
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/core/health.hpp"

namespace mesh::core {

class Runtime {
 public:
  Runtime(unsigned io_threads, unsigned cpu_threads);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  asio::io_context& io() { return io_; }
  asio::thread_pool& cpu() { return cpu_; }
  Health& health() { return health_; }

  // Runs `main` on the io threads until it finishes and returns its exit code. An exception
  // escaping `main` is logged and gives exit code 1.
  int run(std::function<Task<int>()> main);

  // Completes once SIGTERM or SIGINT arrives or request_stop() is called.
  Task<void> wait_for_stop();
  void request_stop();

 private:
  asio::io_context io_;
  asio::thread_pool cpu_;
  unsigned io_threads_;
  asio::signal_set signals_;
  asio::steady_timer stop_requested_;
  Health health_;
};

}  // namespace mesh::core
