#include "mesh/core/runtime.hpp"

#include <csignal>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/log.hpp"

namespace mesh::core {

Runtime::Runtime(unsigned io_threads, unsigned cpu_threads)
    : io_(static_cast<int>(std::max(1u, io_threads))),
      cpu_(std::max(1u, cpu_threads)),
      io_threads_(std::max(1u, io_threads)),
      signals_(io_, SIGTERM, SIGINT),
      stop_requested_(io_, asio::steady_timer::time_point::max()) {
  // A peer closing a socket mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  signals_.async_wait([this](const error_code& ec, int signal) {
    if (ec) return;
    log::get("core")->info("received signal {}, stopping", signal);
    request_stop();
  });
}

Runtime::~Runtime() { cpu_.join(); }

void Runtime::request_stop() {
  asio::post(io_, [this] { stop_requested_.cancel(); });
}

Task<void> Runtime::wait_for_stop() {
  error_code ec;
  co_await stop_requested_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

int Runtime::run(std::function<Task<int>()> main) {
  int exit_code = 1;
  asio::co_spawn(io_, main(), [this, &exit_code](std::exception_ptr error, int code) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        log::get("core")->critical("fatal: {}", e.what());
      }
      code = 1;
    }
    exit_code = code;
    signals_.cancel();
    io_.stop();
  });
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < io_threads_; ++i) threads.emplace_back([this] { io_.run(); });
  io_.run();
  for (auto& thread : threads) thread.join();
  return exit_code;
}

}  // namespace mesh::core
