#include "mesh/testing/env.hpp"

#include <atomic>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <thread>

#include <libpq-fe.h>
#include <unistd.h>

namespace mesh::testing {
namespace {
std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) +
                             " is not set: run the tests through scripts/test.sh, which starts "
                             "throwaway Postgres and Redis servers");
  }
  return value;
}
}  // namespace

std::string pg_url() { return required_env("MESH_TEST_PG_URL"); }
std::string redis_url() { return required_env("MESH_TEST_REDIS_URL"); }

std::string fresh_pg_database() {
  static std::atomic<int> counter{0};
  const std::string name = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  const std::string base = pg_url();
  PGconn* conn = PQconnectdb(base.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("fresh_pg_database: " + message);
  }
  PGresult* res = PQexec(conn, ("CREATE DATABASE " + name).c_str());
  const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  std::string message = ok ? "" : PQerrorMessage(conn);
  PQclear(res);
  PQfinish(conn);
  if (!ok) throw std::runtime_error("fresh_pg_database: " + message);
  // The base URL names the maintenance database as its path: swap it for the new one.
  const auto query = base.find('?');
  const auto slash = base.rfind('/', query);
  return base.substr(0, slash + 1) + name + (query == std::string::npos ? "" : base.substr(query));
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(step);
  }
}

void run(asio::io_context& io, Task<void> task, std::chrono::milliseconds timeout) {
  std::exception_ptr error;
  bool finished = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
    error = e;
    finished = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  if (!finished) throw std::runtime_error("testing::run: task did not finish in time");
  if (error) std::rethrow_exception(error);
}

}  // namespace mesh::testing
