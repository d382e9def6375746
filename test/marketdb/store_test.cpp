// marketdb::Store against a fresh Postgres database with the product's schema: trades stored
// once, candles and markets exact under redelivery, overlap and any arrival order.
#include <algorithm>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include "mesh/marketdb/store.hpp"
#include "mesh/pg/error.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::marketdb::test {
namespace {

using namespace std::chrono_literals;

std::vector<market::Trade> shuffled(std::vector<market::Trade> trades, unsigned seed) {
  std::mt19937 random(seed);
  std::shuffle(trades.begin(), trades.end(), random);
  return trades;
}

std::vector<market::Trade> slice(const std::vector<market::Trade>& trades, std::size_t from,
                                 std::size_t to) {
  return {trades.begin() + static_cast<std::ptrdiff_t>(from),
          trades.begin() + static_cast<std::ptrdiff_t>(to)};
}

TEST_CASE("copy rows: COPY text format, one line per trade, special characters escaped",
          "[marketdb][store]") {
  market::Trade trade{
      "BTC-USD", 42, "27012.35", "0.00120000", market::Side::sell, "2026-11-30T14:03:07.123456Z",
      9};
  CHECK(copy_rows(std::span(&trade, 1)) ==
        "BTC-USD\t42\t27012.35\t0.00120000\tsell\t2026-11-30T14:03:07.123456Z\t9\n");
  trade.product = "A\tB\\C\nD\rE";
  CHECK(copy_rows(std::span(&trade, 1)).starts_with("A\\tB\\\\C\\nD\\rE\t42\t"));
  CHECK(copy_rows({}).empty());
}

TEST_CASE("store: trades are stored once and read back byte for byte", "[marketdb][store]") {
  asio::io_context io;
  prometheus::Registry registry;
  Database db(io, registry);
  Store store(*db.pool, 5s);
  auto trades = make_trades({"BTC-USD", "ETH-USD"}, 150);
  // Scales and extremes the text must keep exactly.
  trades[0].price = "0.00120000";
  trades[0].size = "100";
  trades[1].price = "123456789012345678901234567890.123456789";
  trades[1].size = "0.000000001";
  testing::run(io, [&]() -> Task<void> {
    const StoreCounts first = co_await store.store(trades);
    CHECK(first.inserted == trades.size());
    CHECK(first.duplicates == 0);
    const auto stored = co_await stored_trades(*db.pool);
    REQUIRE(stored.size() == trades.size());
    auto expected = trades;
    std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
      return std::tie(a.product, a.trade_id) < std::tie(b.product, b.trade_id);
    });
    for (std::size_t i = 0; i < stored.size(); ++i) {
      INFO(market::encode(expected[i]));
      CHECK(market::encode(stored[i]) == market::encode(expected[i]));
    }
    co_await check_database_matches(*db.pool, trades);
    const StoreCounts empty = co_await store.store({});
    CHECK(empty.inserted == 0);
  }());
}

TEST_CASE("store: redelivery, overlapping batches and shuffled order leave candles exact",
          "[marketdb][store]") {
  asio::io_context io;
  prometheus::Registry registry;
  Database db(io, registry);
  Store store(*db.pool, 5s);
  const auto all = make_trades({"BTC-USD", "ETH-USD", "SOL-USD"}, 400, 1000, 7, 11);
  const auto mixed = shuffled(all, 3);  // arrival order unrelated to time or trade id
  testing::run(io, [&]() -> Task<void> {
    const auto first = slice(mixed, 0, 500);
    const StoreCounts a = co_await store.store(first);
    CHECK(a.inserted == 500);
    co_await check_database_matches(*db.pool, first);

    // The same batch again (a redelivery after a crash before the commit).
    const StoreCounts again = co_await store.store(first);
    CHECK(again.inserted == 0);
    CHECK(again.duplicates == 500);
    co_await check_database_matches(*db.pool, first);

    // Overlapping the first, with duplicates inside the batch itself.
    auto overlap = slice(mixed, 400, 900);
    const auto repeated = slice(mixed, 850, 900);
    overlap.insert(overlap.end(), repeated.begin(), repeated.end());
    const StoreCounts b = co_await store.store(shuffled(overlap, 5));
    CHECK(b.inserted == 400);
    CHECK(b.duplicates == 150);

    // The rest, one trade at a time, newest first.
    auto rest = slice(mixed, 900, mixed.size());
    std::sort(rest.begin(), rest.end(), [](const auto& x, const auto& y) {
      return std::tie(x.time, x.trade_id) > std::tie(y.time, y.trade_id);
    });
    std::size_t inserted = 0;
    for (const auto& trade : rest) {
      const StoreCounts one = co_await store.store(std::span(&trade, 1));
      inserted += one.inserted;
    }
    CHECK(inserted == rest.size());

    // Everything once more, as one batch: nothing changes.
    const StoreCounts replay = co_await store.store(all);
    CHECK(replay.inserted == 0);

    co_await check_database_matches(*db.pool, all);
  }());
}

TEST_CASE("store: open and close follow (time, trade_id), not arrival", "[marketdb][store]") {
  asio::io_context io;
  prometheus::Registry registry;
  Database db(io, registry);
  Store store(*db.pool, 5s);
  const auto trade = [](std::int64_t id, std::string price, std::string time) {
    return market::Trade{"BTC-USD",       id, std::move(price), "1.0", market::Side::buy,
                         std::move(time), id};
  };
  // One minute; 7 and 8 share a time, so 8 closes and 7 does not.
  const auto t5 = trade(5, "100.00", "2026-11-30T14:05:10.000000Z");
  const auto t6 = trade(6, "90.00", "2026-11-30T14:05:00.000000Z");
  const auto t7 = trade(7, "120.00", "2026-11-30T14:05:59.999999Z");
  const auto t8 = trade(8, "110.00", "2026-11-30T14:05:59.999999Z");
  const auto t4 = trade(4, "95.00", "2026-11-30T14:05:00.000000Z");  // ties t6 on time
  testing::run(io, [&]() -> Task<void> {
    co_await store.store(std::span(&t5, 1));
    co_await store.store(std::span(&t7, 1));
    co_await store.store(std::span(&t6, 1));
    co_await store.store(std::span(&t8, 1));
    co_await store.store(std::span(&t4, 1));
    const auto candles = co_await stored_candles(*db.pool);
    REQUIRE(candles.size() == 1);
    const Candle& candle = candles.begin()->second;
    CHECK(candles.begin()->first.second == "2026-11-30T14:05:00.000000Z");
    CHECK(candle.open == "95.00");
    CHECK(candle.open_trade_id == 4);
    CHECK(candle.close == "110.00");
    CHECK(candle.close_trade_id == 8);
    CHECK(candle.high == "120.00");
    CHECK(candle.low == "90.00");
    CHECK(candle.volume == "5.0");
    CHECK(candle.trades == 5);
    const auto markets = co_await stored_markets(*db.pool);
    CHECK(markets.at("BTC-USD") ==
          std::tuple<std::string, std::string, std::int64_t>{"110.00", t8.time, 8});
  }());
}

TEST_CASE("store: a row Postgres refuses fails the whole batch; nothing of it stays",
          "[marketdb][store]") {
  asio::io_context io;
  prometheus::Registry registry;
  Database db(io, registry, 1);  // one connection: the next batch reuses its temporary table
  Store store(*db.pool, 5s);
  auto trades = make_trades({"BTC-USD"}, 20);
  trades[7].price = "2000000.00";
  testing::run(io, [&]() -> Task<void> {
    co_await db.pool->execute_script(
        "ALTER TABLE trades ADD CONSTRAINT test_price_cap CHECK (price < 1000000)");
    std::optional<pg::Error> failure;
    try {
      co_await store.store(trades);
    } catch (const pg::Error& e) {
      failure = e;
    }
    REQUIRE(failure);
    CHECK(failure->sqlstate() == "23514");
    const auto trades_after_failure = co_await stored_trades(*db.pool);
    CHECK(trades_after_failure.empty());
    const auto candles_after_failure = co_await stored_candles(*db.pool);
    CHECK(candles_after_failure.empty());

    trades.erase(trades.begin() + 7);
    const StoreCounts counts = co_await store.store(trades);
    CHECK(counts.inserted == trades.size());
    co_await check_database_matches(*db.pool, trades);
  }());
}

TEST_CASE("store: a trade committed concurrently sends the batch the ON CONFLICT way",
          "[marketdb][store]") {
  asio::io_context io;
  prometheus::Registry registry;
  Database db(io, registry);
  Store store(*db.pool, 10s);
  const auto trades = make_trades({"BTC-USD"}, 40);
  auto others = trades;
  others.erase(others.begin() + 5);
  // Another writer inserts trade 5 and has not committed yet: the batch's keys are distinct,
  // so it goes for the plain INSERT, which waits on that row, then fails on it.
  std::optional<pg::Lease> writer;
  testing::run(io, [&]() -> Task<void> {
    pg::Lease lease = co_await db.pool->acquire();
    co_await lease.query("BEGIN");
    co_await lease.copy_in(
        "COPY trades (product, trade_id, price, size, side, time, sequence) "
        "FROM STDIN",
        copy_rows(std::span(&trades[5], 1)));
    writer.emplace(std::move(lease));
  }());
  std::optional<StoreCounts> counts;
  std::exception_ptr failure;
  asio::co_spawn(io, store.store(trades), [&](std::exception_ptr error, StoreCounts result) {
    failure = error;
    if (!error) counts = result;
  });
  bool copy_waited = false;
  testing::run(io, [&]() -> Task<void> {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    asio::steady_timer timer(io);
    while (std::chrono::steady_clock::now() < deadline) {
      const pg::Result waiting = co_await db.pool->query(
          "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
          "AND query LIKE '%INSERT INTO trades%'");
      copy_waited = waiting.get(0, 0) == "1";
      if (copy_waited) break;
      timer.expires_after(5ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    co_await writer->query("COMMIT");
  }());
  CHECK(copy_waited);
  REQUIRE(testing::wait_until([&] {
    io.restart();
    io.run_for(5ms);
    return counts.has_value() || failure != nullptr;
  }));
  REQUIRE_FALSE(failure);
  CHECK(counts->inserted == trades.size() - 1);
  CHECK(counts->duplicates == 1);
  testing::run(io, [&]() -> Task<void> {
    const auto stored = co_await stored_trades(*db.pool);
    CHECK(stored.size() == trades.size());
    // Trade 5 was written without its candle: only the batch's own trades are folded.
    const auto candles = co_await stored_candles(*db.pool);
    CHECK(candles == expected_candles(others));
    const auto markets = co_await stored_markets(*db.pool);
    CHECK(markets == expected_markets(others));
  }());
}

}  // namespace
}  // namespace mesh::marketdb::test
