// Session lock benchmark: SessionLocks::acquire latency (p50/p99) and acquire+release pairs per
// second over many concurrent (user, profile) pairs, beside a plain `SET key val NX PX` round
// trip on the same pipelined client as the baseline. Usage:
//   session_lock REDIS_URL [concurrency=64] [operations per round=100000]
// Prints a table and one JSON object on the last line.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/sessions/locks.hpp"

using namespace mesh;
using Clock = std::chrono::steady_clock;

namespace {

struct Round {
  std::vector<double> latencies_us;
  double seconds = 0;
  std::size_t errors = 0;

  double percentile(double p) {
    if (latencies_us.empty()) return 0;
    std::sort(latencies_us.begin(), latencies_us.end());
    const auto index = static_cast<std::size_t>(p * static_cast<double>(latencies_us.size() - 1));
    return latencies_us[index];
  }
  double rate() const { return static_cast<double>(latencies_us.size()) / seconds; }
};

// Runs `concurrency` coroutines, each doing `per_worker` calls of `op(worker, i)` (a
// Task<bool>, false = failed), timing each.
template <class Op>
Round measure(asio::io_context& io, int concurrency, int per_worker, Op op) {
  Round round;
  std::vector<std::vector<double>> samples(static_cast<std::size_t>(concurrency));
  std::atomic<std::size_t> errors{0};
  int done = 0;
  auto worker = [&](int w) -> Task<void> {
    auto& mine = samples[static_cast<std::size_t>(w)];
    mine.reserve(static_cast<std::size_t>(per_worker));
    for (int i = 0; i < per_worker; ++i) {
      const auto start = Clock::now();
      const bool ok = co_await op(w, i);
      mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      if (!ok) ++errors;
    }
    ++done;
  };
  const auto start = Clock::now();
  for (int w = 0; w < concurrency; ++w) asio::co_spawn(io, worker(w), asio::detached);
  io.restart();
  while (done < concurrency) io.run_one();
  round.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& s : samples) round.latencies_us.insert(round.latencies_us.end(), s.begin(), s.end());
  round.errors = errors;
  return round;
}

// The client keeps reads and timers pending, so io.run() would never return on its own.
template <class Future>
void run_until_ready(asio::io_context& io, Future& future) {
  io.restart();
  while (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) io.run_one();
  future.get();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s REDIS_URL [concurrency] [operations]\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  const int concurrency = argc > 2 ? std::stoi(argv[2]) : 64;
  const int operations = argc > 3 ? std::stoi(argv[3]) : 100'000;
  const int per_worker = std::max(1, operations / concurrency);

  asio::io_context io(1);
  prometheus::Registry registry;
  redis::Client client(io.get_executor(), redis::parse_url(url), registry);
  {
    auto connected = asio::co_spawn(io, client.connect(), asio::use_future);
    run_until_ready(io, connected);
  }
  sessions::SessionLocks locks(client, sessions::LockOptions{std::chrono::seconds(60), "bench"});
  const std::string run = core::random_hex(4);
  std::vector<std::string> users;
  for (int w = 0; w < concurrency; ++w) users.push_back(core::uuid_v7());

  auto baseline = measure(io, concurrency, per_worker, [&](int w, int i) -> Task<bool> {
    std::vector<std::string> args{
        "SET", "mesh:bench:" + run + ":" + std::to_string(w) + ":" + std::to_string(i),
        "v",   "NX",
        "PX",  "60000"};
    const auto result = co_await client.command(std::move(args));
    co_return result.ok();
  });
  auto acquire = measure(io, concurrency, per_worker, [&](int w, int i) -> Task<bool> {
    const auto outcome =
        co_await locks.acquire(users[static_cast<std::size_t>(w)], "a-" + std::to_string(i));
    co_return outcome.status == sessions::Acquire::Status::acquired;
  });
  auto cycle = measure(io, concurrency, per_worker, [&](int w, int i) -> Task<bool> {
    const auto& user = users[static_cast<std::size_t>(w)];
    const std::string profile = "c-" + std::to_string(i);
    const auto outcome = co_await locks.acquire(user, profile);
    if (outcome.status != sessions::Acquire::Status::acquired) co_return false;
    const auto released = co_await locks.release(user, profile, outcome.token);
    co_return released.value_or(false);
  });
  {
    auto closed = asio::co_spawn(io, client.close(), asio::use_future);
    run_until_ready(io, closed);
  }

  std::printf("%-28s %12s %10s %10s %8s\n", "round", "ops/s", "p50 us", "p99 us", "errors");
  auto row = [](const char* name, Round& r) {
    std::printf("%-28s %12.0f %10.1f %10.1f %8zu\n", name, r.rate(), r.percentile(0.5),
                r.percentile(0.99), r.errors);
  };
  row("SET NX PX (baseline)", baseline);
  row("acquire", acquire);
  row("acquire+release (pairs)", cycle);
  std::printf("acquire p99 / SET p99: %.2fx; acquire rate / SET rate: %.2fx\n",
              acquire.percentile(0.99) / baseline.percentile(0.99),
              acquire.rate() / baseline.rate());
  std::printf(
      "{\"concurrency\":%d,\"set_ops\":%.0f,\"set_p50_us\":%.1f,\"set_p99_us\":%.1f,"
      "\"acquire_ops\":%.0f,\"acquire_p50_us\":%.1f,\"acquire_p99_us\":%.1f,"
      "\"acquire_release_pairs\":%.0f,\"errors\":%zu}\n",
      concurrency, baseline.rate(), baseline.percentile(0.5), baseline.percentile(0.99),
      acquire.rate(), acquire.percentile(0.5), acquire.percentile(0.99), cycle.rate(),
      baseline.errors + acquire.errors + cycle.errors);
  return 0;
}
