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

  // One transaction. When the batch's (product, trade_id) keys are distinct and none is stored
  // yet, a COPY straight into trades, then one statement folding the batch into candles_1m and
  // markets. Otherwise (redelivery, overlapping feeds), a COPY into a session-local temporary
  // table, then one statement that inserts the trades not stored yet (ON CONFLICT DO NOTHING)
  // and folds exactly those. Throws pg::Error (class 22/23 when Postgres refuses a row, so
  // that retrying cannot help).
  Task<StoreCounts> store(std::span<const market::Trade> trades);

 private:
  // The direct COPY inside a savepoint; nullopt (savepoint rolled back) when a concurrent
  // writer stored one of the trades first.
  Task<std::optional<std::size_t>> copy_new(pg::Lease& lease, const std::string& rows,
                                            const pg::Params& keys);

  pg::Pool& pool_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mesh::marketdb
