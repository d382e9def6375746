#pragma once
// A Postgres connection pool driven by Asio: libpq in non-blocking mode, every wait an
// async_wait on the connection's socket, so no io thread ever blocks on the database.
//
// Thread-safety: one Pool may be used by many coroutines on an io_context run by several
// threads. A Lease belongs to one coroutine at a time.
// Lifetime: the Pool must outlive its leases; await close() before destroying it.
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "mesh/core/asio.hpp"
#include "mesh/pg/error.hpp"
#include "mesh/pg/result.hpp"

namespace prometheus {
class Registry;
}

namespace mesh::pg {

struct PoolOptions {
  std::string url;  // libpq URI or key=value string
  std::size_t size = 8;
  std::size_t max_waiters = 1024;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds acquire_timeout{2000};
  std::chrono::milliseconds query_timeout{5000};
};

namespace detail {
class Connection;
}
class Pool;

// One connection taken from the pool, returned when the Lease is destroyed. A connection that
// broke, or is left inside a transaction, is closed instead and replaced on a later acquire.
//
// The SQL text passed to query() must stay alive until the returned task completes (it does
// when the call is awaited directly). Errors throw pg::Error.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  ~Lease();

  // One statement with parameters ($1, $2, ...). Statements are prepared once per connection
  // and reused. Past the timeout (default: PoolOptions::query_timeout) the connection is
  // closed and Error 57014 is thrown.
  Task<Result> query(std::string_view sql, Params params = {});
  Task<Result> query(std::string_view sql, Params params, std::chrono::milliseconds timeout);

  // Several statements separated by semicolons, without parameters and not prepared (the
  // simple query protocol); returns the result of the last one.
  Task<Result> execute_script(std::string_view sql);
  Task<Result> execute_script(std::string_view sql, std::chrono::milliseconds timeout);

  // COPY ... FROM STDIN (text or CSV, as `copy_sql` says) fed with `data`, which must be
  // complete rows in that format; returns the number of rows copied. A row the server refuses
  // fails the whole COPY with its SQLSTATE (class 22 for bad values, 23 for constraints) and
  // the connection stays usable. Past the timeout the connection is closed and Error 57014 is
  // thrown; a statement that is not COPY FROM STDIN throws Error 0A000.
  Task<std::uint64_t> copy_in(std::string_view copy_sql, std::string_view data);
  Task<std::uint64_t> copy_in(std::string_view copy_sql, std::string_view data,
                              std::chrono::milliseconds timeout);

  // ROLLBACK if a transaction is open; never throws: when the rollback fails the connection is
  // discarded, which ends the transaction on the server.
  Task<void> rollback();

  // Close the connection instead of returning it: for session state that must not leak
  // to the next user (advisory locks, SET without LOCAL).
  void discard() noexcept;

  int backend_pid() const;

 private:
  friend class Pool;
  Lease(Pool& pool, std::unique_ptr<detail::Connection> connection) noexcept;
  detail::Connection& connection() const;
  std::chrono::milliseconds default_timeout() const;
  void give_back() noexcept;

  Pool* pool_;
  std::unique_ptr<detail::Connection> connection_;
};

class Pool {
 public:
  Pool(asio::any_io_executor executor, PoolOptions options, prometheus::Registry& registry);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Opens one connection; the others open on demand. Throws Error 08001 naming the server
  // (without the password) when it cannot connect within connect_timeout.
  Task<void> start();

  // A statement on any free connection.
  Task<Result> query(std::string_view sql, Params params = {});
  Task<Result> execute_script(std::string_view sql);

  // Waits at most acquire_timeout for a free connection (Error 53000 after that), or throws
  // Error 53300 at once when max_waiters callers are already waiting, Error 08003 once closed,
  // Error 08001 when a new connection is needed and cannot be opened.
  Task<Lease> acquire();

  // Runs `body(lease)` between BEGIN and COMMIT; on any exception rolls back and rethrows.
  // `body` returns Task<T>; transaction() returns its T.
  template <class Body>
  requires std::invocable<Body&, Lease&> std::invoke_result_t<Body&, Lease&> transaction(Body body);

  // Cheap, for readiness: the last connection attempt succeeded and no connection has since
  // been lost. While unhealthy, each call also starts one background connection attempt (at
  // most one at a time) so that readiness recovers without traffic.
  bool healthy() const;

  struct Stats {
    std::size_t idle = 0;     // open connections in the pool
    std::size_t in_use = 0;   // leases handed out
    std::size_t waiters = 0;  // acquire() calls waiting
  };
  Stats stats() const;

  // Refuses new acquires, waits up to `drain_timeout` for leases to come back, closes every
  // connection. Leases returned later are closed on return.
  Task<void> close(std::chrono::milliseconds drain_timeout = std::chrono::seconds(10));

  const PoolOptions& options() const;

 private:
  friend class Lease;
  struct Impl;

  // Times a call on a leased connection and counts its failure by SQLSTATE.
  Task<Result> measured(Task<Result> call);
  void give_back(std::unique_ptr<detail::Connection> connection) noexcept;
  Lease make_lease(std::unique_ptr<detail::Connection> connection) noexcept;
  Task<void> probe(Lease lease);

  std::unique_ptr<Impl> impl_;
};

template <class Body>
requires std::invocable<Body&, Lease&> std::invoke_result_t<Body&, Lease&> Pool::transaction(
    Body body) {
  using Value = typename std::invoke_result_t<Body&, Lease&>::value_type;
  Lease lease = co_await acquire();
  co_await lease.query("BEGIN");
  std::exception_ptr failure;
  if constexpr (std::is_void_v<Value>) {
    try {
      co_await body(lease);
      co_await lease.query("COMMIT");
      co_return;
    } catch (...) {
      failure = std::current_exception();
    }
    co_await lease.rollback();
    std::rethrow_exception(failure);
  } else {
    try {
      Value value = co_await body(lease);
      co_await lease.query("COMMIT");
      co_return value;
    } catch (...) {
      failure = std::current_exception();
    }
    co_await lease.rollback();
    std::rethrow_exception(failure);
  }
}

}  // namespace mesh::pg
