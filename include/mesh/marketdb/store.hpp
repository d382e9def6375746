#pragma once
// Writes trades from market.trades to Postgres: the trades table (each (product, trade_id)
// once), the one-minute candles and the last trade per product, all from the same batch in one
// transaction. Only trades newly inserted reach the candles, so redelivered and overlapping
// batches leave every candle exact, in whatever order trades arrive.
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "mesh/core/asio.hpp"
#include "mesh/market/events.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::marketdb {

struct StoreCounts {
  std::size_t inserted = 0;    // trades new to the table
  std::size_t duplicates = 0;  // already stored, or repeated within the batch
};

// The rows of `trades` in COPY text format, columns in the order of kCopyColumns.
std::string copy_rows(std::span<const market::Trade> trades);

class Store {
 public:
  // `timeout` bounds each statement (the COPY and the upsert statement alike).
  Store(pg::Pool& pool, std::chrono::milliseconds timeout);

  // One transaction: a COPY of the batch into a session-local temporary table, then one
  // statement that inserts the trades into trades and folds them into candles_1m and markets.
  // When the batch's (product, trade_id) keys are distinct that statement is a plain INSERT,
  // inside a savepoint; if a trade turns out to be stored already (unique violation) it is
  // rolled back and the ON CONFLICT DO NOTHING form runs instead, folding exactly the trades
  // it inserted. Throws pg::Error (class 22/23 when Postgres refuses a row, so that retrying
  // cannot help).
  Task<StoreCounts> store(std::span<const market::Trade> trades);

 private:
  // The plain INSERT inside a savepoint: how many trades it stored, or nullopt (rolled back)
  // when one of them was stored already.
  Task<std::optional<std::size_t>> insert_new(pg::Lease& lease);

  pg::Pool& pool_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mesh::marketdb
