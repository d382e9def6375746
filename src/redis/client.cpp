#include "mesh/redis/client.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/log.hpp"
#include "mesh/metrics/metrics.hpp"

namespace mesh::redis {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;
using Strand = asio::strand<asio::any_io_executor>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Reconnection backoff: the first retry comes quickly, later ones at most once a second, each
// jittered so that many replicas losing the same server do not return in lockstep.
constexpr std::chrono::milliseconds reconnect_initial{50};
constexpr std::chrono::milliseconds reconnect_max{1000};

Result failure(Errc e) { return Result{make_error_code(e), {}}; }

Reply to_reply(const redisReply& r) {
  Reply reply;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      reply.kind = Reply::Kind::string;
      reply.string.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      reply.kind = Reply::Kind::status;
      reply.string.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      reply.kind = Reply::Kind::error;
      reply.string.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      reply.kind = Reply::Kind::integer;
      reply.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      reply.kind = Reply::Kind::array;
      reply.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i)
        reply.elements.push_back(to_reply(*r.element[i]));
      break;
    default:
      reply.kind = Reply::Kind::nil;
      break;
  }
  return reply;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Commands that break the one-reply-per-command contract of a shared pipelined connection
// (hiredis 0.14 would even assert on push messages), or change connection state that a
// reconnect would silently undo (the database belongs in Options).
bool allowed_on_shared_connection(const std::vector<std::string>& args) {
  if (args.empty()) return false;
  static const std::unordered_set<std::string> forbidden{
      "subscribe",    "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
      "sunsubscribe", "monitor",    "select",     "reset",       "hello"};
  return !forbidden.contains(lowercase(args.front()));
}

std::string describe(const Options& options) {
  return options.host + ":" + std::to_string(options.port) + "/" + std::to_string(options.db);
}

struct Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : commands(prometheus::BuildCounter()
                     .Name("mesh_redis_commands_total")
                     .Help("Redis commands by outcome")
                     .Register(registry)),
        ok(commands.Add({{"result", "ok"}})),
        error(commands.Add({{"result", "error"}})),
        timeout(commands.Add({{"result", "timeout"}})),
        disconnected(commands.Add({{"result", "disconnected"}})),
        rejected(commands.Add({{"result", "rejected"}})),
        seconds(prometheus::BuildHistogram()
                    .Name("mesh_redis_command_seconds")
                    .Help("Latency of Redis commands that reached the server")
                    .Register(registry)
                    .Add({}, metrics::latency_buckets())),
        connected(prometheus::BuildGauge()
                      .Name("mesh_redis_connected")
                      .Help("Open Redis connections")
                      .Register(registry)
                      .Add({})),
        disconnects(prometheus::BuildCounter()
                        .Name("mesh_redis_disconnects_total")
                        .Help("Redis connections lost or dropped as stalled")
                        .Register(registry)
                        .Add({})),
        connect_failures(prometheus::BuildCounter()
                             .Name("mesh_redis_connect_failures_total")
                             .Help("Failed Redis connection attempts, reconnects included")
                             .Register(registry)
                             .Add({})) {}

  void record(const Result& result, Clock::duration elapsed) {
    const auto reached_server = [&] {
      seconds.Observe(std::chrono::duration<double>(elapsed).count());
    };
    if (!result.error) {
      reached_server();
      (result.reply.is_error() ? error : ok).Increment();
    } else if (result.error == Errc::timeout) {
      reached_server();
      timeout.Increment();
    } else if (result.error == Errc::not_connected || result.error == Errc::connection_lost) {
      disconnected.Increment();
    } else if (result.error == Errc::too_many_pending || result.error == Errc::invalid_command) {
      rejected.Increment();
    } else {
      error.Increment();
    }
  }

  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Counter& ok;
  prometheus::Counter& error;
  prometheus::Counter& timeout;
  prometheus::Counter& disconnected;
  prometheus::Counter& rejected;
  prometheus::Histogram& seconds;
  prometheus::Gauge& connected;
  prometheus::Counter& disconnects;
  prometheus::Counter& connect_failures;
};

// One command awaiting its reply. hiredis holds a heap-allocated shared_ptr to it as the
// callback's privdata, so a reply arriving after the deadline still finds it alive and is
// dropped; the first outcome wins.
struct Pending {
  Pending(const Strand& strand, Clock::time_point deadline) : wake(strand, deadline) {}

  void complete(Result r) {
    if (result) return;
    result = std::move(r);
    wake.cancel();
  }

  asio::steady_timer wake;  // expires at the deadline; cancelled by the outcome
  Clock::time_point sent = Clock::now();
  std::optional<Result> result;
};

Task<void> wait_for(Pending& pending) {
  if (pending.result) co_return;
  auto [ec] = co_await pending.wake.async_wait(use_tuple);
  // An error without an outcome is a cancellation of the caller's own coroutine.
  if (!pending.result) pending.complete(Result{ec ? ec : make_error_code(Errc::timeout), {}});
}

}  // namespace

class State;

// One hiredis async context and the Asio descriptor that drives it. hiredis owns the socket
// and the context; `context_` turns null in the cleanup hook, right before hiredis frees it,
// and every path into hiredis checks it first, so nothing touches a freed context.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(State& state, const Strand& strand) : state_(state), socket_(strand) {}

  // A live context here means an attempt abandoned without closing (an io_context torn down
  // mid-connect). Its State is still alive: State's destructor closes every live context, so
  // none outlives it.
  ~Connection() {
    if (context_ != nullptr) redisAsyncFree(context_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Takes ownership of `context` and hooks it to the strand; on failure the caller still owns
  // the context.
  error_code attach(redisAsyncContext* context) {
    error_code ec;
    socket_.assign(context->c.fd, ec);
    if (ec) return ec;
    context_ = context;
    context->data = this;
    context->ev.data = this;
    context->ev.addRead = [](void* self) {
      auto* connection = static_cast<Connection*>(self);
      connection->want(connection->read_, true);
    };
    context->ev.delRead = [](void* self) {
      auto* connection = static_cast<Connection*>(self);
      connection->want(connection->read_, false);
    };
    context->ev.addWrite = [](void* self) {
      auto* connection = static_cast<Connection*>(self);
      connection->want(connection->write_, true);
    };
    context->ev.delWrite = [](void* self) {
      auto* connection = static_cast<Connection*>(self);
      connection->want(connection->write_, false);
    };
    context->ev.cleanup = [](void* self) { static_cast<Connection*>(self)->on_cleanup(); };
    return {};
  }

  redisAsyncContext* context() const { return context_; }
  bool open() const { return context_ != nullptr; }
  const std::string& error() const { return error_; }
  State& state() const { return state_; }

  // Closes now: pending callbacks run with no reply, then the cleanup hook.
  void close(std::string why) {
    if (context_ == nullptr) return;
    error_ = std::move(why);
    auto keep_alive = shared_from_this();
    redisAsyncFree(context_);
  }

  void reply_arrived() { last_reply_ = Clock::now(); }
  // True when nothing arrived since `since`: a timeout then means the pipeline is stuck.
  bool silent_since(Clock::time_point since) const { return last_reply_ < since; }

  bool installed = false;

 private:
  struct Interest {
    asio::posix::descriptor_base::wait_type type;
    void (*handle)(redisAsyncContext*);
    bool wanted = false;
    bool waiting = false;
  };

  void want(Interest& interest, bool on) {
    interest.wanted = on;
    if (!on || interest.waiting || context_ == nullptr) return;
    interest.waiting = true;
    // A wait cannot be withdrawn alone (cancel() stops both directions), so an unwanted one
    // is left to fire and then ignored.
    socket_.async_wait(interest.type, [self = shared_from_this(), &interest](error_code ec) {
      interest.waiting = false;
      if (ec || self->context_ == nullptr || !interest.wanted) return;
      // hiredis re-arms the interests it still has through the hooks, and may free the
      // context in here (the cleanup hook then clears context_).
      interest.handle(self->context_);
    });
  }

  void on_cleanup();

  State& state_;
  redisAsyncContext* context_ = nullptr;
  asio::posix::stream_descriptor socket_;
  Interest read_{asio::posix::descriptor_base::wait_read, &redisAsyncHandleRead};
  Interest write_{asio::posix::descriptor_base::wait_write, &redisAsyncHandleWrite};
  Clock::time_point last_reply_ = Clock::now();
  std::string error_;
};

// Everything behind a Client, kept alive by every operation in flight. All members but the
// atomic `connected` flag are touched only on the strand.
class State : public std::enable_shared_from_this<State> {
 public:
  State(asio::any_io_executor executor, Options options, prometheus::Registry& registry)
      : strand(asio::make_strand(executor)),
        options(std::move(options)),
        metrics(registry),
        log_(log::get("redis")),
        reconnect_timer_(strand),
        random_(std::random_device{}()) {}

  ~State() { shutdown(); }

  State(const State&) = delete;
  State& operator=(const State&) = delete;

  // Empty on success, else why the connection failed.
  Task<std::string> connect() {
    if (closed_) co_return "the client is closed";
    if (usable()) co_return "";
    std::string error = co_await attempt();
    if (error.empty()) reconnect_ = true;
    co_return error;
  }

  Task<Result> execute(std::vector<std::string> args) {
    if (!usable()) co_return failure(Errc::not_connected);
    if (in_flight_ >= options.max_pending) co_return failure(Errc::too_many_pending);
    auto connection = connection_;
    auto pending = issue(*connection, args, Clock::now() + options.command_timeout);
    co_await wait_for(*pending);
    if (pending->result->error == Errc::timeout && connection->open() &&
        connection->silent_since(pending->sent)) {
      log_->warn("no reply from {} for {} ms, dropping the connection", describe(options),
                 options.command_timeout.count());
      connection->close("stalled: no reply within the command timeout");
    }
    co_return std::move(*pending->result);
  }

  void shutdown() {
    closed_ = true;
    reconnect_timer_.cancel();
    // Closing a connection erases it from live_.
    while (!live_.empty()) (*live_.begin())->close("client closed");
  }

  // Called from the cleanup hook, inside hiredis: may not call back into this context.
  void on_closed(Connection& connection) {
    live_.erase(&connection);
    if (!connection.installed) return;
    connection.installed = false;
    // Metrics first: whoever sees the flag drop may read them at once.
    metrics.connected.Decrement();
    if (!closed_) metrics.disconnects.Increment();
    connected.store(false);
    if (closed_) return;
    log_->warn("connection to {} lost: {}; reconnecting", describe(options), connection.error());
    if (reconnect_) start_reconnecting();
  }

  // Bookkeeping of the reply callback; `reply` is false when the context is being freed.
  void on_reply(Connection& connection, bool reply) {
    --in_flight_;
    if (reply) connection.reply_arrived();
  }

  Strand strand;
  const Options options;
  Metrics metrics;
  std::atomic<bool> connected{false};

 private:
  bool usable() const { return !closed_ && connection_ && connection_->open(); }

  std::shared_ptr<Pending> issue(Connection& connection, const std::vector<std::string>& args,
                                 Clock::time_point deadline);

  // Resolves the host and tries each address until one connects, within connect_timeout.
  Task<std::string> attempt() {
    const auto deadline = Clock::now() + options.connect_timeout;
    std::vector<std::string> addresses;
    std::string error = co_await resolve(deadline, addresses);
    for (const auto& address : addresses) {
      if (Clock::now() >= deadline) break;
      error = co_await connect_to(address, deadline);
      if (error.empty()) co_return error;
    }
    metrics.connect_failures.Increment();
    co_return error;
  }

  Task<std::string> resolve(Clock::time_point deadline, std::vector<std::string>& addresses) {
    error_code ec;
    asio::ip::make_address(options.host, ec);
    if (!ec) {
      addresses.push_back(options.host);
      co_return "";
    }
    // getaddrinfo may block: Asio runs it on its own thread; the timer bounds the wait. Both
    // handlers share the resolver, which outlives whichever finishes last.
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(strand);
    asio::steady_timer limit(strand, deadline);
    limit.async_wait([resolver](error_code e) {
      if (!e) resolver->cancel();
    });
    const std::string service = std::to_string(options.port);
    auto [resolve_ec, results] = co_await resolver->async_resolve(options.host, service, use_tuple);
    limit.cancel();
    if (resolve_ec) {
      co_return "cannot resolve " + options.host + ": " +
          (Clock::now() >= deadline ? std::string("timed out") : resolve_ec.message());
    }
    for (const auto& entry : results) {
      auto address = entry.endpoint().address().to_string();
      if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
        addresses.push_back(std::move(address));
      }
    }
    co_return addresses.empty() ? "no address for " + options.host : "";
  }

  Task<std::string> connect_to(const std::string& address, Clock::time_point deadline) {
    redisAsyncContext* context = redisAsyncConnect(address.c_str(), options.port);
    if (context == nullptr) co_return "out of memory";
    if (context->err != 0) {
      std::string error = context->errstr;
      redisAsyncFree(context);
      co_return error;
    }
    auto connection = std::make_shared<Connection>(*this, strand);
    if (error_code ec = connection->attach(context)) {
      redisAsyncFree(context);
      co_return "cannot watch the socket: " + ec.message();
    }
    live_.insert(connection.get());

    // The handshake is pipelined: one round trip whatever it holds.
    std::vector<std::vector<std::string>> handshake;
    if (!options.password.empty()) {
      if (options.username.empty()) {
        handshake.push_back({"AUTH", options.password});
      } else {
        handshake.push_back({"AUTH", options.username, options.password});
      }
    }
    if (options.db != 0) handshake.push_back({"SELECT", std::to_string(options.db)});
    if (handshake.empty()) handshake.push_back({"PING"});
    std::vector<std::shared_ptr<Pending>> replies;
    for (const auto& command : handshake) replies.push_back(issue(*connection, command, deadline));

    for (std::size_t i = 0; i < replies.size(); ++i) {
      co_await wait_for(*replies[i]);
      const Result& result = *replies[i]->result;
      std::string error;
      if (result.error == Errc::timeout) {
        error = "timed out after " + std::to_string(options.connect_timeout.count()) + " ms";
      } else if (result.error) {
        error = connection->error().empty() ? result.error.message() : connection->error();
      } else if (result.reply.is_error()) {
        error = handshake[i].front() + ": " + result.reply.string;
      }
      if (!error.empty()) {
        connection->close(error);
        co_return error;
      }
    }
    co_return install(connection);
  }

  std::string install(const std::shared_ptr<Connection>& connection) {
    if (closed_) {
      connection->close("client closed");
      return "the client is closed";
    }
    // connect() and the reconnect loop may race; the first connection wins.
    if (usable()) {
      connection->close("already connected");
      return "";
    }
    connection->installed = true;
    connection_ = connection;
    metrics.connected.Increment();
    connected.store(true);
    log_->info("connected to {}", describe(options));
    return "";
  }

  void start_reconnecting() {
    if (reconnecting_) return;
    reconnecting_ = true;
    asio::co_spawn(strand, reconnect(shared_from_this()), asio::detached);
  }

  static Task<void> reconnect(std::shared_ptr<State> self) {
    auto backoff = reconnect_initial;
    int failures = 0;
    // The loop ends on usable(), not on a successful attempt, so a connection lost right after
    // it was installed is retried here rather than missed.
    while (!self->closed_ && !self->usable()) {
      std::uniform_int_distribution<long> jitter(backoff.count() / 2, backoff.count());
      self->reconnect_timer_.expires_after(std::chrono::milliseconds(jitter(self->random_)));
      co_await self->reconnect_timer_.async_wait(use_tuple);
      if (self->closed_ || self->usable()) break;
      const std::string error = co_await self->attempt();
      if (error.empty()) {
        backoff = reconnect_initial;
        failures = 0;
        continue;
      }
      // One warning per outage; the retries that follow would only repeat it.
      if (failures == 0) {
        self->log_->warn("reconnecting to {} failed: {}; retrying with backoff",
                         describe(self->options), error);
      } else {
        self->log_->debug("reconnecting to {} failed: {}", describe(self->options), error);
      }
      ++failures;
      backoff = std::min(backoff * 2, reconnect_max);
    }
    self->reconnecting_ = false;
  }

  log::Logger log_;
  asio::steady_timer reconnect_timer_;
  std::minstd_rand random_;
  std::shared_ptr<Connection> connection_;  // the one commands go to
  std::unordered_set<Connection*> live_;    // every context not yet freed
  std::size_t in_flight_ = 0;               // callbacks registered with hiredis
  bool closed_ = false;
  bool reconnect_ = false;  // set by the first successful connect()
  bool reconnecting_ = false;
};

namespace {

void reply_callback(redisAsyncContext* context, void* raw, void* privdata) {
  std::unique_ptr<std::shared_ptr<Pending>> holder(
      static_cast<std::shared_ptr<Pending>*>(privdata));
  auto* connection = static_cast<Connection*>(context->data);
  Pending& pending = **holder;
  connection->state().on_reply(*connection, raw != nullptr);
  if (pending.result) return;
  if (raw == nullptr) {
    pending.complete(failure(Errc::connection_lost));
    return;
  }
  pending.complete(Result{{}, to_reply(*static_cast<redisReply*>(raw))});
}

}  // namespace

void Connection::on_cleanup() {
  if (context_ == nullptr) return;
  if (context_->err != 0 && context_->errstr != nullptr) error_ = context_->errstr;
  if (error_.empty()) error_ = "connection closed";
  context_ = nullptr;
  // Stop watching before hiredis closes the descriptor, and never close it ourselves.
  error_code ignored;
  socket_.cancel(ignored);
  socket_.release();
  state_.on_closed(*this);
}

std::shared_ptr<Pending> State::issue(Connection& connection, const std::vector<std::string>& args,
                                      Clock::time_point deadline) {
  auto pending = std::make_shared<Pending>(strand, deadline);
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto holder = std::make_unique<std::shared_ptr<Pending>>(pending);
  // Fails only when the context is already being torn down (or out of memory).
  if (redisAsyncCommandArgv(connection.context(), &reply_callback, holder.get(),
                            static_cast<int>(args.size()), argv.data(),
                            lengths.data()) != REDIS_OK) {
    pending->complete(failure(Errc::connection_lost));
    return pending;
  }
  holder.release();
  ++in_flight_;
  return pending;
}

namespace {

Task<Result> execute_on_strand(std::shared_ptr<State> state, std::vector<std::string> args) {
  co_return co_await state->execute(std::move(args));
}

Task<std::string> connect_on_strand(std::shared_ptr<State> state) {
  co_return co_await state->connect();
}

Task<void> shutdown_on_strand(std::shared_ptr<State> state) {
  state->shutdown();
  co_return;
}

Task<void> connect(std::shared_ptr<State> state) {
  const std::string error =
      co_await asio::co_spawn(state->strand, connect_on_strand(state), asio::use_awaitable);
  if (!error.empty()) {
    throw std::runtime_error("cannot connect to " + describe(state->options) + ": " + error);
  }
}

Task<Result> command(std::shared_ptr<State> state, std::vector<std::string> args) {
  Result result;
  const auto started = Clock::now();
  if (!allowed_on_shared_connection(args)) {
    result = failure(Errc::invalid_command);
  } else if (!state->connected.load()) {
    // Fail fast without a trip to the strand; execute() re-checks there.
    result = failure(Errc::not_connected);
  } else {
    result = co_await asio::co_spawn(state->strand, execute_on_strand(state, std::move(args)),
                                     asio::use_awaitable);
  }
  state->metrics.record(result, Clock::now() - started);
  co_return result;
}

Task<void> close(std::shared_ptr<State> state) {
  co_await asio::co_spawn(state->strand, shutdown_on_strand(state), asio::use_awaitable);
}

}  // namespace
}  // namespace detail

Client::Client(asio::any_io_executor executor, Options options, prometheus::Registry& registry)
    : state_(std::make_shared<detail::State>(std::move(executor), std::move(options), registry)) {
  // hiredis writes with write(2), not send(MSG_NOSIGNAL): a server that reset the connection
  // would kill the process with SIGPIPE. core::Runtime ignores it too; this covers other hosts.
  static const bool sigpipe_ignored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
}

Client::~Client() {
  auto strand = state_->strand;
  asio::post(strand, [state = std::move(state_)] { state->shutdown(); });
}

// The public coroutines start lazily, maybe after the Client is gone: each hands the shared
// state to a free coroutine before returning, so none of them reads `this` later.

Task<void> Client::connect() { return detail::connect(state_); }

Task<Result> Client::command(std::vector<std::string> args) {
  return detail::command(state_, std::move(args));
}

bool Client::connected() const { return state_->connected.load(); }

Task<void> Client::close() { return detail::close(state_); }

const Options& Client::options() const { return state_->options; }

}  // namespace mesh::redis
