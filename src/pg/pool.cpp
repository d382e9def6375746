#include "mesh/pg/pool.hpp"

#include <atomic>
#include <stdexcept>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "connection.hpp"
#include "mesh/core/log.hpp"
#include "mesh/metrics/metrics.hpp"

namespace mesh::pg {
namespace {

using Clock = std::chrono::steady_clock;
using ConnectionPtr = std::unique_ptr<detail::Connection>;

struct Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : connections(prometheus::BuildGauge()
                        .Name("mesh_pg_pool_connections")
                        .Help("Postgres connections open in the pool (idle) or leased (in_use).")
                        .Register(registry)),
        idle(connections.Add({{"state", "idle"}})),
        in_use(connections.Add({{"state", "in_use"}})),
        waiters(prometheus::BuildGauge()
                    .Name("mesh_pg_pool_waiters")
                    .Help("Callers waiting for a free Postgres connection.")
                    .Register(registry)
                    .Add({})),
        query_seconds(prometheus::BuildHistogram()
                          .Name("mesh_pg_query_seconds")
                          .Help("Duration of Postgres statements, failed ones included.")
                          .Register(registry)
                          .Add({}, metrics::latency_buckets())),
        errors(prometheus::BuildCounter()
                   .Name("mesh_pg_errors_total")
                   .Help("Failed Postgres calls by SQLSTATE (server codes and the pool's own).")
                   .Register(registry)) {}

  prometheus::Family<prometheus::Gauge>& connections;
  prometheus::Gauge& idle;
  prometheus::Gauge& in_use;
  prometheus::Gauge& waiters;
  prometheus::Histogram& query_seconds;
  prometheus::Family<prometheus::Counter>& errors;
};

}  // namespace

struct Pool::Impl {
  // Exactly `size` slots circulate: an open connection, or nullptr for one to open on demand.
  // The channel is the free list and the queue of waiters at once, safe across threads.
  using Slots = asio::experimental::concurrent_channel<void(error_code, ConnectionPtr)>;

  Impl(Pool& owner, asio::any_io_executor executor, PoolOptions options,
       prometheus::Registry& registry)
      : owner(owner),
        executor(executor),
        options(std::move(options)),
        slots(executor, this->options.size),
        metrics(registry),
        logger(log::get("pg")) {}

  bool try_take(ConnectionPtr& slot) {
    bool taken = false;
    slots.try_receive([&](error_code ec, ConnectionPtr connection) {
      if (ec) return;
      slot = std::move(connection);
      taken = true;
    });
    return taken;
  }

  Error counted(std::string_view code, const std::string& message) {
    metrics.errors.Add({{"sqlstate", std::string(code)}}).Increment();
    return Error(code, message);
  }

  // Each count moves by one (+1 or -1), here and in the metric shared by all pools.
  void add_idle(int step) {
    step > 0 ? ++idle : --idle;
    metrics.idle.Increment(step);
  }
  void add_in_use(int step) {
    step > 0 ? ++in_use : --in_use;
    metrics.in_use.Increment(step);
  }

  void start_probe() {
    if (closed || probing.exchange(true)) return;
    ConnectionPtr slot;
    if (!try_take(slot)) {
      // Every slot is leased: that traffic reconnects, or fails, on its own.
      probing = false;
      return;
    }
    if (slot) add_idle(-1);
    add_in_use(+1);
    asio::co_spawn(executor, owner.probe(owner.make_lease(std::move(slot))), asio::detached);
  }

  Pool& owner;
  asio::any_io_executor executor;
  const PoolOptions options;
  Slots slots;
  Metrics metrics;
  log::Logger logger;
  std::atomic<std::size_t> idle{0};
  std::atomic<std::size_t> in_use{0};
  std::atomic<std::size_t> waiters{0};
  std::atomic<bool> healthy{false};
  std::atomic<bool> closed{false};
  std::atomic<bool> probing{false};
};

// Lease

Lease::Lease(Pool& pool, ConnectionPtr connection) noexcept
    : pool_(&pool), connection_(std::move(connection)) {}

Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), connection_(std::move(other.connection_)) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    give_back();
    pool_ = std::exchange(other.pool_, nullptr);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

Lease::~Lease() { give_back(); }

void Lease::give_back() noexcept {
  if (pool_ != nullptr) std::exchange(pool_, nullptr)->give_back(std::move(connection_));
}

detail::Connection& Lease::connection() const {
  if (!connection_) {
    throw Error(sqlstate::kConnectionFailure, pool_ == nullptr
                                                  ? "the lease was moved from"
                                                  : "the lease's connection was discarded");
  }
  return *connection_;
}

std::chrono::milliseconds Lease::default_timeout() const {
  connection();  // a moved-from lease has no pool either
  return pool_->options().query_timeout;
}

Task<Result> Lease::query(std::string_view sql, Params params) {
  co_return co_await query(sql, std::move(params), default_timeout());
}

Task<Result> Lease::query(std::string_view sql, Params params, std::chrono::milliseconds timeout) {
  co_return co_await pool_->measured(connection().query(sql, params, timeout));
}

Task<Result> Lease::execute_script(std::string_view sql) {
  co_return co_await execute_script(sql, default_timeout());
}

Task<Result> Lease::execute_script(std::string_view sql, std::chrono::milliseconds timeout) {
  co_return co_await pool_->measured(connection().execute_script(sql, timeout));
}

Task<std::uint64_t> Lease::copy_in(std::string_view copy_sql, std::string_view data) {
  co_return co_await copy_in(copy_sql, data, default_timeout());
}

Task<std::uint64_t> Lease::copy_in(std::string_view copy_sql, std::string_view data,
                                   std::chrono::milliseconds timeout) {
  const Result result = co_await pool_->measured(connection().copy_in(copy_sql, data, timeout));
  co_return static_cast<std::uint64_t>(result.affected_rows());
}

Task<void> Lease::rollback() {
  if (!connection_ || !connection_->in_transaction()) co_return;
  try {
    co_await execute_script("ROLLBACK");
    co_return;
  } catch (const std::exception& e) {
    pool_->impl_->logger->warn("rollback failed, discarding the connection: {}", e.what());
  }
  discard();
}

void Lease::discard() noexcept { connection_.reset(); }

int Lease::backend_pid() const { return connection().backend_pid(); }

// Pool

Pool::Pool(asio::any_io_executor executor, PoolOptions options, prometheus::Registry& registry) {
  if (options.size == 0) throw std::invalid_argument("pg::PoolOptions::size must be at least 1");
  impl_ = std::make_unique<Impl>(*this, std::move(executor), std::move(options), registry);
  for (std::size_t i = 0; i < impl_->options.size; ++i) {
    impl_->slots.try_send(error_code{}, ConnectionPtr{});
  }
}

Pool::~Pool() {
  if (impl_->in_use != 0) {
    impl_->logger->error("pg pool destroyed with {} leases out: they will return to freed memory",
                         impl_->in_use.load());
  }
}

const PoolOptions& Pool::options() const { return impl_->options; }

Task<void> Pool::start() {
  try {
    Lease lease = co_await acquire();
  } catch (const Error& e) {
    throw Error(e.sqlstate(), "pg pool could not start: " + e.message());
  }
}

Task<Lease> Pool::acquire() {
  Impl& s = *impl_;
  if (s.closed) throw s.counted(sqlstate::kPoolClosed, "pg pool is closed");
  ConnectionPtr slot;
  if (!s.try_take(slot)) {
    if (s.waiters.fetch_add(1) >= s.options.max_waiters) {
      --s.waiters;
      throw s.counted(sqlstate::kPoolExhausted,
                      "pg pool exhausted: " + std::to_string(s.options.max_waiters) +
                          " callers already wait for one of " + std::to_string(s.options.size) +
                          " connections");
    }
    s.metrics.waiters.Increment();
    asio::steady_timer timer(s.executor, s.options.acquire_timeout);
    auto [order, received, connection, expired] =
        co_await asio::experimental::make_parallel_group(s.slots.async_receive(asio::deferred),
                                                         timer.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    --s.waiters;
    s.metrics.waiters.Decrement();
    if (received) {
      if (s.closed) throw s.counted(sqlstate::kPoolClosed, "pg pool is closed");
      throw s.counted(sqlstate::kAcquireTimeout,
                      "no pg connection free within " +
                          std::to_string(s.options.acquire_timeout.count()) + " ms (pool size " +
                          std::to_string(s.options.size) + ")");
    }
    slot = std::move(connection);
  }
  if (slot) s.add_idle(-1);
  s.add_in_use(+1);
  // From here on the slot returns to the pool however this coroutine ends.
  Lease lease(*this, std::move(slot));
  if (s.closed) throw s.counted(sqlstate::kPoolClosed, "pg pool is closed");
  if (!lease.connection_ || !lease.connection_->still_open()) {
    lease.connection_.reset();
    try {
      lease.connection_ =
          co_await detail::Connection::open(s.executor, s.options.url, s.options.connect_timeout);
    } catch (const Error& e) {
      s.healthy = false;
      s.logger->warn("{}", e.message());
      throw s.counted(e.sqlstate(), e.message());
    }
    s.healthy = true;
  }
  co_return lease;
}

Task<Result> Pool::query(std::string_view sql, Params params) {
  Lease lease = co_await acquire();
  co_return co_await lease.query(sql, std::move(params));
}

Task<Result> Pool::execute_script(std::string_view sql) {
  Lease lease = co_await acquire();
  co_return co_await lease.execute_script(sql);
}

Task<Result> Pool::measured(Task<Result> call) {
  Impl& s = *impl_;
  const auto started = Clock::now();
  const auto observe = [&] {
    s.metrics.query_seconds.Observe(std::chrono::duration<double>(Clock::now() - started).count());
  };
  try {
    Result result = co_await std::move(call);
    observe();
    co_return result;
  } catch (const Error& e) {
    observe();
    s.metrics.errors.Add({{"sqlstate", e.sqlstate()}}).Increment();
    if (e.connection_error()) s.healthy = false;
    throw;
  }
}

Lease Pool::make_lease(ConnectionPtr connection) noexcept {
  return Lease(*this, std::move(connection));
}

void Pool::give_back(ConnectionPtr connection) noexcept {
  Impl& s = *impl_;
  if (connection && (s.closed || !connection->idle())) {
    // Broken, left inside a transaction, or the pool is closing: close it here. The empty slot
    // still goes back, for a later acquire to fill or for close() to count.
    connection.reset();
  }
  s.add_in_use(-1);
  if (connection) s.add_idle(+1);
  // Not try_send: Boost 1.81 leaves a buffered channel refusing try_send once a receive was
  // cancelled (an acquire that timed out); a queued send still reaches the next receiver.
  s.slots.async_send(error_code{}, std::move(connection), asio::detached);
}

bool Pool::healthy() const {
  if (impl_->healthy) return true;
  impl_->start_probe();
  return false;
}

Task<void> Pool::probe(Lease lease) {
  Impl& s = *impl_;
  try {
    if (!lease.connection_ || !lease.connection_->still_open()) {
      lease.connection_ =
          co_await detail::Connection::open(s.executor, s.options.url, s.options.connect_timeout);
    }
    co_await lease.query("SELECT 1");
    s.healthy = true;
  } catch (const std::exception& e) {
    s.logger->debug("pg health probe failed: {}", e.what());
  }
  // Before the lease returns: a close() waiting for it may destroy the pool right after.
  s.probing = false;
}

Pool::Stats Pool::stats() const {
  return {impl_->idle.load(), impl_->in_use.load(), impl_->waiters.load()};
}

Task<void> Pool::close(std::chrono::milliseconds drain_timeout) {
  Impl& s = *impl_;
  if (s.closed.exchange(true)) co_return;
  s.healthy = false;
  asio::steady_timer timer(s.executor, drain_timeout);
  std::size_t collected = 0;
  while (collected < s.options.size) {
    ConnectionPtr slot;
    if (!s.try_take(slot)) {
      auto [order, received, connection, expired] =
          co_await asio::experimental::make_parallel_group(s.slots.async_receive(asio::deferred),
                                                           timer.async_wait(asio::deferred))
              .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
      if (received) break;
      slot = std::move(connection);
    }
    if (slot) s.add_idle(-1);
    ++collected;
  }
  if (collected < s.options.size) {
    s.logger->warn("pg pool closed with {} leases still out after {} ms; they close on return",
                   s.options.size - collected, drain_timeout.count());
  }
  s.slots.close();
}

}  // namespace mesh::pg
