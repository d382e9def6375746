#pragma once
// Shared by the marketdb tests: a fresh database with the product's schema, trades generated
// from a fixed seed, and the candles they must make, computed here independently of SQL.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/io_context.hpp>

#include "mesh/market/events.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::marketdb::test {

// A pool over a fresh database migrated with every migration of the product (roles::migrations).
struct Database {
  Database(asio::io_context& io, prometheus::Registry& registry, std::size_t size = 4);
  ~Database();
  std::string url;
  std::unique_ptr<pg::Pool> pool;
};

// `count` trades per product, trade ids first_id.., times scattered over `minutes` minutes
// from 2026-11-30T14:00:00Z with some ties (same time, different trade ids); prices of scale 2,
// sizes of scale 8, both stored with trailing zeros kept. In trade-id order.
std::vector<market::Trade> make_trades(const std::vector<std::string>& products, int count,
                                       std::int64_t first_id = 1000, int minutes = 5,
                                       unsigned seed = 7);

struct Candle {
  std::string open, high, low, close, volume;
  std::int64_t trades = 0;
  std::int64_t open_trade_id = 0, close_trade_id = 0;
  bool operator==(const Candle&) const = default;
};
// (product, minute start as a canonical time) -> candle; repeated (product, trade_id) count once.
using Candles = std::map<std::pair<std::string, std::string>, Candle>;
Candles expected_candles(const std::vector<market::Trade>& trades);
// product -> (last_price, last_time, last_trade_id)
using Markets = std::map<std::string, std::tuple<std::string, std::string, std::int64_t>>;
Markets expected_markets(const std::vector<market::Trade>& trades);

// What the database holds.
Task<Candles> stored_candles(pg::Pool& pool);
Task<Markets> stored_markets(pg::Pool& pool);
// Every trade, ordered by (product, trade_id), times canonical.
Task<std::vector<market::Trade>> stored_trades(pg::Pool& pool);

// Checks (Catch2) that the database holds exactly `published`: every distinct trade byte for
// byte, the candles and the markets they make, nothing more.
Task<void> check_database_matches(pg::Pool& pool, const std::vector<market::Trade>& published);

// Exact decimal text arithmetic for the expectations: the sum keeps the largest scale, as
// Postgres numeric does.
std::string decimal_sum(const std::string& a, const std::string& b);
// -1, 0, 1 as numbers compare.
int decimal_compare(const std::string& a, const std::string& b);

}  // namespace mesh::marketdb::test
