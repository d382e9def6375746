#pragma once
// One libpq connection in non-blocking mode, its socket watched by the Asio reactor. Used by
// one coroutine at a time (the holder of its Lease); private to the pg module.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <libpq-fe.h>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/core/log.hpp"
#include "mesh/pg/result.hpp"

namespace mesh::pg::detail {

class Connection {
 public:
  // Resolves the host name off the io thread, then connects within `timeout`. Throws Error
  // 08001 naming the server (never the password).
  static Task<std::unique_ptr<Connection>> open(asio::any_io_executor executor,
                                                const std::string& url,
                                                std::chrono::milliseconds timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Task<Result> query(std::string_view sql, const Params& params, std::chrono::milliseconds timeout);
  Task<Result> execute_script(std::string_view sql, std::chrono::milliseconds timeout);
  // COPY ... FROM STDIN with `data` as the stream; returns the statement's final result
  // ("COPY n").
  Task<Result> copy_in(std::string_view sql, std::string_view data,
                       std::chrono::milliseconds timeout);

  // Open and outside any transaction: fit for the next lease as it is.
  bool idle() const;
  // Reads whatever the server sent while the connection sat in the pool, without blocking:
  // false when that was a goodbye (server restart, pg_terminate_backend).
  bool still_open();
  bool in_transaction() const;
  int backend_pid() const;

 private:
  struct Finish {
    void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
  };
  using ConnPtr = std::unique_ptr<PGconn, Finish>;
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  enum class Want { read, write, read_or_write };
  enum class Ready { read, write, timeout, cancelled };

  Connection(asio::any_io_executor executor, ConnPtr conn, std::string description);

  Task<void> connect(std::chrono::milliseconds timeout);
  void watch_socket();
  Task<Ready> wait(Want want);
  void check_sent(int sent);
  Task<void> flush(std::chrono::milliseconds timeout);
  Task<Result> complete(std::chrono::milliseconds timeout);
  Task<void> start_copy(std::chrono::milliseconds timeout);
  Task<void> wait_writable(std::chrono::milliseconds timeout);
  void check_progress(Ready ready, std::chrono::milliseconds timeout);
  [[noreturn]] void lost();
  void close() noexcept;
  void ensure_open() const;
  static void on_notice(void* self, const PGresult* notice);

  ConnPtr conn_;
  std::string description_;  // user@host:port/dbname, for messages
  asio::posix::stream_descriptor socket_;
  asio::steady_timer timer_;  // the deadline of the call in progress
  // Prepared statement names by SQL text.
  std::unordered_map<std::string, std::string, StringHash, std::equal_to<>> statements_;
  std::uint64_t next_statement_ = 0;
  // The server announced (FATAL) that it is closing this session.
  bool doomed_ = false;
  log::Logger logger_;
};

}  // namespace mesh::pg::detail
