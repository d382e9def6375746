// consumer_ingest: trades persisted per second by the consumer's write path (marketdb::Store:
// COPY of a batch into a temporary table, then one statement that inserts new trades and folds
// them into candles_1m and markets), for bench/consumer_ingest.sh.
//
//   consumer_ingest --pg-url URL [--trades 200000] [--batch 5000] [--products 4]
//                   [--tsv FILE] [--migrate]
//
// Generates the trades deterministically (random-walk prices of scale 2, sizes of scale 8,
// times over an hour, ids ascending per product), empties trades, candles_1m and markets,
// stores them batch by batch and prints one JSON object: {"trades","batch","seconds",
// "per_second"}. --tsv writes the same rows in COPY text format (the baseline's input);
// --migrate applies the product's migrations first. Built by bench/consumer_ingest.sh against
// the static libraries of a CMake build.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "mesh/market/events.hpp"
#include "mesh/marketdb/store.hpp"
#include "mesh/pg/migrate.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/schema/migrations.hpp"

using namespace mesh;

namespace {

struct Options {
  std::string pg_url;
  std::size_t trades = 200'000;
  std::size_t batch = 5000;
  int products = 4;
  std::string tsv;
  bool migrate = false;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "consumer_ingest: " << problem
            << "\nusage: consumer_ingest --pg-url URL [--trades N] [--batch N] [--products N]"
               " [--tsv FILE] [--migrate]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--pg-url") {
      options.pg_url = value();
    } else if (arg == "--trades") {
      options.trades = std::stoul(value());
    } else if (arg == "--batch") {
      options.batch = std::stoul(value());
    } else if (arg == "--products") {
      options.products = std::stoi(value());
    } else if (arg == "--tsv") {
      options.tsv = value();
    } else if (arg == "--migrate") {
      options.migrate = true;
    } else {
      usage("unknown argument " + arg);
    }
  }
  if (options.pg_url.empty()) usage("--pg-url is required");
  if (options.batch == 0 || options.products < 1) usage("--batch and --products must be >= 1");
  return options;
}

std::string fixed(std::int64_t units, int scale) {
  std::string digits = std::to_string(units);
  while (static_cast<int>(digits.size()) <= scale) digits.insert(digits.begin(), '0');
  digits.insert(digits.end() - scale, '.');
  return digits;
}

// Interleaved products, ids ascending per product, times moving forward with jitter (a live
// feed's shape).
std::vector<market::Trade> make_trades(const Options& options) {
  std::mt19937_64 random(42);
  const std::int64_t start = *market::time_micros("2026-11-30T14:00:00.000000Z");
  const std::int64_t step = 3'600'000'000 / static_cast<std::int64_t>(options.trades + 1);
  std::vector<std::int64_t> cents(static_cast<std::size_t>(options.products), 2'701'235);
  std::vector<market::Trade> trades;
  trades.reserve(options.trades);
  for (std::size_t i = 0; i < options.trades; ++i) {
    const auto p = i % static_cast<std::size_t>(options.products);
    cents[p] += static_cast<std::int64_t>(random() % 2001) - 1000;
    market::Trade trade;
    trade.product = "P" + std::to_string(p) + "-USD";
    trade.trade_id = static_cast<std::int64_t>(1'000'000 + i);
    trade.price = fixed(cents[p], 2);
    trade.size = fixed(static_cast<std::int64_t>(random() % 500'000'000) + 1, 8);
    trade.side = random() % 2 == 0 ? market::Side::buy : market::Side::sell;
    trade.time = market::format_time(start + static_cast<std::int64_t>(i) * step +
                                     static_cast<std::int64_t>(random() % 1000));
    trade.sequence = static_cast<std::int64_t>(i);
    trades.push_back(std::move(trade));
  }
  return trades;
}

Task<double> run(pg::Pool& pool, const Options& options, const std::vector<market::Trade>& trades) {
  co_await pool.start();
  if (options.migrate) co_await pg::migrate(pool, schema::migrations());
  co_await pool.execute_script("TRUNCATE trades, candles_1m, markets");
  marketdb::Store store(pool, std::chrono::minutes(5));
  const auto started = std::chrono::steady_clock::now();
  std::size_t inserted = 0;
  for (std::size_t from = 0; from < trades.size(); from += options.batch) {
    const std::size_t count = std::min(options.batch, trades.size() - from);
    const marketdb::StoreCounts counts =
        co_await store.store(std::span(trades.data() + from, count));
    inserted += counts.inserted;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (inserted != trades.size()) {
    throw std::runtime_error("stored " + std::to_string(inserted) + " of " +
                             std::to_string(trades.size()) + " trades");
  }
  co_await pool.close();
  co_return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  const auto trades = make_trades(options);
  if (!options.tsv.empty()) {
    std::ofstream out(options.tsv, std::ios::binary);
    out << marketdb::copy_rows(trades);
    if (!out) usage("cannot write " + options.tsv);
  }
  asio::io_context io;
  prometheus::Registry registry;
  pg::PoolOptions pool_options;
  pool_options.url = options.pg_url;
  pool_options.size = 1;
  pg::Pool pool(io.get_executor(), pool_options, registry);
  double seconds = 0;
  std::exception_ptr failure;
  asio::co_spawn(io, run(pool, options, trades), [&](std::exception_ptr error, double value) {
    failure = error;
    seconds = value;
  });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::cerr << "consumer_ingest: " << e.what() << "\n";
      return 1;
    }
  }
  std::printf("{\"trades\":%zu,\"batch\":%zu,\"seconds\":%.4f,\"per_second\":%.0f}\n",
              trades.size(), options.batch, seconds, static_cast<double>(trades.size()) / seconds);
  return 0;
}
