#pragma once
// Redis for the request path: one pipelined hiredis connection driven by Asio, a deadline on
// every command, a bound on commands in flight and reconnection in the background. Transport
// failures come back as error codes, Redis error replies as Reply values; nothing on the
// command path throws except std::bad_alloc.
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>

#include "mesh/core/asio.hpp"

namespace prometheus {
class Registry;
}

namespace mesh::redis {

struct Options {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  // AUTH on every (re)connect when `password` is set; `username` needs Redis 6 ACLs.
  std::string username;
  std::string password;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{1000};
  // Commands sent but not yet answered (timed-out ones included until their late reply
  // arrives); beyond it commands are rejected with Errc::too_many_pending.
  std::size_t max_pending = 10000;
};

// redis://[[username]:password@]host[:port][/db], host may be a bracketed IPv6 address, user
// and password may be percent-encoded, port defaults to 6379 and db to 0. Throws
// std::invalid_argument naming the faulty part (never echoing the password).
Options parse_url(std::string_view url);

// Transport failures of a command, as opposed to Redis error replies.
enum class Errc {
  not_connected = 1,  // no usable connection at the time of the call: failed fast
  timeout,            // no reply within Options::command_timeout
  connection_lost,    // the connection closed while the command was in flight
  too_many_pending,   // Options::max_pending reached
  invalid_command,    // empty, or a command that would break the shared connection
};
const boost::system::error_category& error_category() noexcept;
error_code make_error_code(Errc e) noexcept;

struct Reply {
  enum class Kind { nil, integer, string, status, error, array };

  Kind kind = Kind::nil;
  long long integer = 0;
  std::string string;  // bulk string, status text or error message
  std::vector<Reply> elements;

  bool is_nil() const { return kind == Kind::nil; }
  bool is_error() const { return kind == Kind::error; }
};

struct Result {
  error_code error;  // a transport failure (Errc); `reply` is nil then
  Reply reply;

  // Redis answered, and not with an error reply.
  bool ok() const { return !error && !reply.is_error(); }
};

namespace detail {
class State;
}

// Shared by any number of coroutines on any threads. Every hiredis call runs on one strand;
// callers resume on their own executor.
//
// A command that gets no reply within command_timeout fails with Errc::timeout and its late
// reply is discarded. If nothing at all arrived on the connection during that time, the
// connection is considered stalled (dead peer, blackholed route, a blocking command holding
// the pipeline) and is dropped and re-established, so one stuck request cannot hold every
// later one hostage.
//
// Metrics: mesh_redis_commands_total{result="ok|error|timeout|disconnected|rejected"},
// mesh_redis_command_seconds (commands that reached Redis), mesh_redis_connected (open
// connections of all clients on the registry), mesh_redis_disconnects_total,
// mesh_redis_connect_failures_total.
class Client {
 public:
  Client(asio::any_io_executor executor, Options options, prometheus::Registry& registry);
  // Closes the connection in the background; commands still in flight fail.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects, authenticates and selects the database within connect_timeout, trying each
  // resolved address; throws std::runtime_error with the reason otherwise. Once connected,
  // a lost connection is re-established in the background with jittered backoff, and
  // commands issued meanwhile fail fast with Errc::not_connected.
  Task<void> connect();

  // One command (binary-safe arguments), pipelined with every other command in flight.
  // Blocking commands (BLPOP, ...) hold up the whole pipeline: keep them short. SUBSCRIBE,
  // MONITOR, SELECT, RESET and HELLO are rejected with Errc::invalid_command.
  Task<Result> command(std::vector<std::string> args);

  // The connection is up (for /readyz).
  bool connected() const;

  // Closes the connection for good: commands in flight fail with Errc::connection_lost,
  // later ones with Errc::not_connected, and no reconnection follows.
  Task<void> close();

  const Options& options() const;

 private:
  std::shared_ptr<detail::State> state_;
};

// A Lua script run with EVALSHA. Its SHA-1 is computed locally, so a script is immutable and
// can be shared across threads; on NOSCRIPT (first use, SCRIPT FLUSH, a restarted server) it
// is loaded with SCRIPT LOAD and run again.
class Script {
 public:
  explicit Script(std::string lua);

  Task<Result> run(Client& client, std::vector<std::string> keys,
                   std::vector<std::string> args) const;

  const std::string& lua() const { return lua_; }
  // Lowercase hex, as Redis names it.
  const std::string& sha1() const { return sha1_; }

 private:
  std::string lua_;
  std::string sha1_;
};

}  // namespace mesh::redis

template <>
struct boost::system::is_error_code_enum<mesh::redis::Errc> : std::true_type {};
