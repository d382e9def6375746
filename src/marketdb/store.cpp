#include "mesh/marketdb/store.hpp"

#include <charconv>
#include <optional>
#include <set>
#include <utility>

#include "mesh/pg/error.hpp"

namespace mesh::marketdb {
namespace {

// Session-local and emptied at every commit, so a pooled connection carries nothing over; a
// temporary table writes no WAL. Product ids are ASCII: byte order ("C") sorts them as well as
// the database's locale would, several times faster.
constexpr std::string_view kCreateIncoming = R"sql(
CREATE TEMP TABLE IF NOT EXISTS incoming_trades (
  product text COLLATE "C" NOT NULL,
  trade_id bigint NOT NULL,
  price numeric NOT NULL,
  size numeric NOT NULL,
  side text NOT NULL,
  time timestamptz NOT NULL,
  sequence bigint NOT NULL
) ON COMMIT DELETE ROWS)sql";

constexpr std::string_view kCopyIncoming =
    "COPY incoming_trades (product, trade_id, price, size, side, time, sequence) FROM STDIN";

// Folds the CTE `inserted` (exactly the trades this batch added) into candles_1m, and the
// candles' closes into markets; returns how many trades `inserted` holds. Open and close belong
// to the earliest and latest trade by (time, trade_id): a stored candle keeps its open unless
// this batch has an earlier trade in that minute, and its close unless it has a later one, so
// arrival order never matters. Rows are written in key order so that concurrent batches lock
// them in the same order.
constexpr std::string_view kFold = R"sql(
minutes AS (
  SELECT product,
         date_bin('1 minute', time, timestamptz '1970-01-01 00:00:00+00') AS start,
         (array_agg(price ORDER BY time, trade_id))[1] AS open,
         max(price) AS high,
         min(price) AS low,
         (array_agg(price ORDER BY time DESC, trade_id DESC))[1] AS close,
         sum(size) AS volume,
         count(*) AS trades,
         min(time) AS open_time,
         (array_agg(trade_id ORDER BY time, trade_id))[1] AS open_trade_id,
         max(time) AS close_time,
         (array_agg(trade_id ORDER BY time DESC, trade_id DESC))[1] AS close_trade_id
  FROM inserted
  GROUP BY 1, 2
), candles AS (
  INSERT INTO candles_1m AS c (product, start, open, high, low, close, volume, trades,
                               open_time, open_trade_id, close_time, close_trade_id)
  SELECT product, start, open, high, low, close, volume, trades,
         open_time, open_trade_id, close_time, close_trade_id
  FROM minutes
  ORDER BY product, start
  ON CONFLICT (product, start) DO UPDATE SET
    open = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_trade_id) < (c.open_time, c.open_trade_id)
                THEN EXCLUDED.open ELSE c.open END,
    open_time = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_trade_id) < (c.open_time, c.open_trade_id)
                     THEN EXCLUDED.open_time ELSE c.open_time END,
    open_trade_id = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_trade_id) < (c.open_time, c.open_trade_id)
                         THEN EXCLUDED.open_trade_id ELSE c.open_trade_id END,
    close = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_trade_id) > (c.close_time, c.close_trade_id)
                 THEN EXCLUDED.close ELSE c.close END,
    close_time = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_trade_id) > (c.close_time, c.close_trade_id)
                      THEN EXCLUDED.close_time ELSE c.close_time END,
    close_trade_id = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_trade_id) > (c.close_time, c.close_trade_id)
                          THEN EXCLUDED.close_trade_id ELSE c.close_trade_id END,
    high = GREATEST(c.high, EXCLUDED.high),
    low = LEAST(c.low, EXCLUDED.low),
    volume = c.volume + EXCLUDED.volume,
    trades = c.trades + EXCLUDED.trades
), latest AS (
  SELECT DISTINCT ON (product) product, close AS price, close_time AS time,
         close_trade_id AS trade_id
  FROM minutes
  ORDER BY product, close_time DESC, close_trade_id DESC
), markets_updated AS (
  INSERT INTO markets AS m (product, last_price, last_time, last_trade_id)
  SELECT product, price, time, trade_id FROM latest
  ON CONFLICT (product) DO UPDATE SET
    last_price = EXCLUDED.last_price,
    last_time = EXCLUDED.last_time,
    last_trade_id = EXCLUDED.last_trade_id
  WHERE (EXCLUDED.last_time, EXCLUDED.last_trade_id) > (m.last_time, m.last_trade_id)
)
SELECT count(*) FROM inserted)sql";

// After a COPY into incoming_trades: inserts the trades not stored yet, once each, and folds
// exactly those (redelivered ones hit the conflict and are absent from `inserted`).
const std::string kUpsert = R"sql(
WITH batch AS (
  SELECT DISTINCT ON (product, trade_id) product, trade_id, price, size, side, time, sequence
  FROM incoming_trades
  ORDER BY product, trade_id
), inserted AS (
  INSERT INTO trades (product, trade_id, price, size, side, time, sequence)
  SELECT product, trade_id, price, size, side, time, sequence FROM batch
  ON CONFLICT (product, trade_id) DO NOTHING
  RETURNING product COLLATE "C" AS product, trade_id, price, size, time
),)sql" + std::string(kFold);

// After a COPY into incoming_trades of distinct trades: inserts them all, failing with 23505
// when one is stored already. Cheaper than the ON CONFLICT of kUpsert, which checks every row
// before inserting it.
const std::string kInsertNew = R"sql(
WITH inserted AS (
  INSERT INTO trades (product, trade_id, price, size, side, time, sequence)
  SELECT product, trade_id, price, size, side, time, sequence FROM incoming_trades
  RETURNING product COLLATE "C" AS product, trade_id, price, size, time
),)sql" + std::string(kFold);

// COPY text format: backslash, tab and line breaks are escaped. Validated trades contain none
// of them, but a row must never be able to spill into the next column or row.
void append_field(std::string& out, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
}

void append_integer(std::string& out, std::int64_t value) {
  char buffer[24];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, end);
}

bool distinct_keys(std::span<const market::Trade> trades) {
  std::set<std::pair<std::string_view, std::int64_t>> seen;
  for (const auto& trade : trades) {
    if (!seen.emplace(trade.product, trade.trade_id).second) return false;
  }
  return true;
}

std::size_t count_of(const pg::Result& result) {
  std::size_t count = 0;
  const std::string_view text = result.get(0, 0);
  std::from_chars(text.data(), text.data() + text.size(), count);
  return count;
}

}  // namespace

std::string copy_rows(std::span<const market::Trade> trades) {
  std::string out;
  out.reserve(trades.size() * 96);
  for (const auto& trade : trades) {
    append_field(out, trade.product);
    out.push_back('\t');
    append_integer(out, trade.trade_id);
    out.push_back('\t');
    append_field(out, trade.price);
    out.push_back('\t');
    append_field(out, trade.size);
    out.push_back('\t');
    out += market::to_string(trade.side);
    out.push_back('\t');
    append_field(out, trade.time);
    out.push_back('\t');
    append_integer(out, trade.sequence);
    out.push_back('\n');
  }
  return out;
}

Store::Store(pg::Pool& pool, std::chrono::milliseconds timeout) : pool_(pool), timeout_(timeout) {}

Task<StoreCounts> Store::store(std::span<const market::Trade> trades) {
  StoreCounts counts;
  if (trades.empty()) co_return counts;
  const std::string rows = copy_rows(trades);
  const bool distinct = distinct_keys(trades);
  auto body = [&](pg::Lease& lease) -> Task<std::size_t> {
    co_await lease.execute_script(kCreateIncoming, timeout_);
    co_await lease.copy_in(kCopyIncoming, rows, timeout_);
    if (distinct) {
      const std::optional<std::size_t> inserted = co_await insert_new(lease);
      if (inserted) co_return *inserted;
    }
    const pg::Result upserted = co_await lease.query(kUpsert, {}, timeout_);
    co_return count_of(upserted);
  };
  counts.inserted = co_await pool_.transaction(std::move(body));
  counts.duplicates = trades.size() - counts.inserted;
  co_return counts;
}

Task<std::optional<std::size_t>> Store::insert_new(pg::Lease& lease) {
  co_await lease.execute_script("SAVEPOINT insert_new", timeout_);
  std::optional<std::size_t> inserted;
  try {
    const pg::Result folded = co_await lease.query(kInsertNew, {}, timeout_);
    inserted = count_of(folded);
  } catch (const pg::Error& e) {
    if (e.sqlstate() != pg::sqlstate::kUniqueViolation) throw;
  }
  // A trade of the batch was stored already (redelivery, overlapping feeds, a concurrent
  // writer): undo, and let the caller take the ON CONFLICT way.
  if (!inserted) co_await lease.execute_script("ROLLBACK TO SAVEPOINT insert_new", timeout_);
  co_return inserted;
}

}  // namespace mesh::marketdb
