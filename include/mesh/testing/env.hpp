#pragma once
// Helpers for tests: the throwaway servers started by scripts/test-env.sh, and waiting on
// conditions with deadlines instead of sleeping.
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "mesh/core/asio.hpp"

namespace mesh::testing {

// Postgres libpq URI of the throwaway server (env MESH_TEST_PG_URL). Fails the test if unset:
// a test that needs a server never passes without one.
std::string pg_url();
// redis://127.0.0.1:PORT of the throwaway server (env MESH_TEST_REDIS_URL).
std::string redis_url();
// A fresh database on the throwaway server, dropped by nobody: names are unique per call.
std::string fresh_pg_database();

// Polls `done` until it returns true or `timeout` passes; returns the last result.
bool wait_until(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(20),
                std::chrono::milliseconds step = std::chrono::milliseconds(5));

// Runs `task` on `io` until it finishes (rethrowing its exception) or `timeout` passes
// (throws std::runtime_error). Other work already queued on `io` runs too.
template <class T>
T run(asio::io_context& io, Task<T> task,
      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::exception_ptr error;
  std::optional<T> result;
  bool finished = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) result.emplace(std::move(value));
    finished = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  if (!finished) throw std::runtime_error("testing::run: task did not finish in time");
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

void run(asio::io_context& io, Task<void> task,
         std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mesh::testing
