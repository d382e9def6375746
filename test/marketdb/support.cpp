#include "support.hpp"

#include <algorithm>
#include <charconv>
#include <random>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "mesh/pg/migrate.hpp"
#include "mesh/schema/migrations.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::marketdb::test {
namespace {

constexpr std::string_view kUtcMicros = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

struct Decimal {
  unsigned __int128 units = 0;
  std::size_t scale = 0;
};

Decimal parse_decimal(const std::string& text) {
  if (!market::is_decimal(text)) throw std::invalid_argument("not a decimal: " + text);
  Decimal value;
  bool fraction = false;
  for (const char c : text) {
    if (c == '.') {
      fraction = true;
      continue;
    }
    value.units = value.units * 10 + static_cast<unsigned>(c - '0');
    if (fraction) ++value.scale;
  }
  return value;
}

unsigned __int128 scaled(const Decimal& value, std::size_t scale) {
  unsigned __int128 units = value.units;
  for (std::size_t i = value.scale; i < scale; ++i) units *= 10;
  return units;
}

std::string format_decimal(unsigned __int128 units, std::size_t scale) {
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(units % 10)));
    units /= 10;
  } while (units != 0);
  while (digits.size() <= scale) digits.insert(digits.begin(), '0');
  if (scale > 0) digits.insert(digits.end() - static_cast<std::ptrdiff_t>(scale), '.');
  return digits;
}

std::int64_t to_int(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::string fixed(std::int64_t units, int scale) {
  return format_decimal(static_cast<unsigned __int128>(units), static_cast<std::size_t>(scale));
}

}  // namespace

std::string decimal_sum(const std::string& a, const std::string& b) {
  const Decimal x = parse_decimal(a);
  const Decimal y = parse_decimal(b);
  const std::size_t scale = std::max(x.scale, y.scale);
  return format_decimal(scaled(x, scale) + scaled(y, scale), scale);
}

int decimal_compare(const std::string& a, const std::string& b) {
  const Decimal x = parse_decimal(a);
  const Decimal y = parse_decimal(b);
  const std::size_t scale = std::max(x.scale, y.scale);
  const auto left = scaled(x, scale);
  const auto right = scaled(y, scale);
  return left < right ? -1 : (left > right ? 1 : 0);
}

Database::Database(asio::io_context& io, prometheus::Registry& registry, std::size_t size)
    : url(testing::fresh_pg_database()) {
  pg::PoolOptions options;
  options.url = url;
  options.size = size;
  pool = std::make_unique<pg::Pool>(io.get_executor(), options, registry);
  testing::run(io, [this]() -> Task<void> {
    co_await pool->start();
    co_await pg::migrate(*pool, schema::migrations());
  }());
}

Database::~Database() = default;

std::vector<market::Trade> make_trades(const std::vector<std::string>& products, int count,
                                       std::int64_t first_id, int minutes, unsigned seed) {
  std::mt19937_64 random(seed);
  const std::int64_t base = *market::time_micros("2026-11-30T14:00:00.000000Z");
  const std::int64_t span = std::int64_t{minutes} * 60'000'000;
  std::vector<market::Trade> trades;
  for (const auto& product : products) {
    std::int64_t cents = 2'701'235;
    std::int64_t previous_time = base;
    for (int i = 0; i < count; ++i) {
      market::Trade trade;
      trade.product = product;
      trade.trade_id = first_id + i;
      cents += static_cast<std::int64_t>(random() % 2001) - 1000;
      trade.price = fixed(cents, 2);
      trade.size = fixed(static_cast<std::int64_t>(random() % 500'000'000) + 1, 8);
      trade.side = random() % 2 == 0 ? market::Side::buy : market::Side::sell;
      // Every fifth trade shares the previous one's time: ties are broken by trade_id.
      const std::int64_t micros =
          i % 5 == 4 ? previous_time : base + static_cast<std::int64_t>(random() % span);
      previous_time = micros;
      trade.time = market::format_time(micros);
      trade.sequence = 50'000 + i;
      trades.push_back(std::move(trade));
    }
  }
  return trades;
}

Candles expected_candles(const std::vector<market::Trade>& trades) {
  std::map<std::pair<std::string, std::int64_t>, const market::Trade*> unique;
  for (const auto& trade : trades) unique.try_emplace({trade.product, trade.trade_id}, &trade);
  struct Building {
    Candle candle;
    std::pair<std::int64_t, std::int64_t> first, last;  // (time, trade_id)
  };
  std::map<std::pair<std::string, std::string>, Building> building;
  for (const auto& [key, trade] : unique) {
    const std::int64_t micros = *market::time_micros(trade->time);
    const std::string start = market::format_time(micros - micros % 60'000'000);
    const std::pair<std::int64_t, std::int64_t> order{micros, trade->trade_id};
    auto [entry, created] = building.try_emplace({trade->product, start});
    Building& b = entry->second;
    if (created) {
      b.candle = Candle{trade->price,    trade->price,   trade->price, trade->price, trade->size, 1,
                        trade->trade_id, trade->trade_id};
      b.first = b.last = order;
      continue;
    }
    if (order < b.first) {
      b.first = order;
      b.candle.open = trade->price;
      b.candle.open_trade_id = trade->trade_id;
    }
    if (order > b.last) {
      b.last = order;
      b.candle.close = trade->price;
      b.candle.close_trade_id = trade->trade_id;
    }
    if (decimal_compare(trade->price, b.candle.high) > 0) b.candle.high = trade->price;
    if (decimal_compare(trade->price, b.candle.low) < 0) b.candle.low = trade->price;
    b.candle.volume = decimal_sum(b.candle.volume, trade->size);
    ++b.candle.trades;
  }
  Candles candles;
  for (auto& [key, b] : building) candles.emplace(key, std::move(b.candle));
  return candles;
}

Markets expected_markets(const std::vector<market::Trade>& trades) {
  std::map<std::string, std::pair<std::pair<std::int64_t, std::int64_t>, const market::Trade*>>
      last;
  for (const auto& trade : trades) {
    const std::pair<std::int64_t, std::int64_t> order{*market::time_micros(trade.time),
                                                      trade.trade_id};
    auto [entry, created] = last.try_emplace(trade.product, order, &trade);
    if (!created && order > entry->second.first) entry->second = {order, &trade};
  }
  Markets markets;
  for (const auto& [product, latest] : last) {
    markets[product] = {latest.second->price, latest.second->time, latest.second->trade_id};
  }
  return markets;
}

Task<Candles> stored_candles(pg::Pool& pool) {
  const std::string sql = "SELECT product, to_char(start AT TIME ZONE 'UTC', " +
                          std::string(kUtcMicros) +
                          "), open::text, high::text, low::text, close::text, volume::text, "
                          "trades, open_trade_id, close_trade_id FROM candles_1m";
  const pg::Result rows = co_await pool.query(sql);
  Candles candles;
  for (int row = 0; row < rows.rows(); ++row) {
    candles[{std::string(rows.get(row, 0)), std::string(rows.get(row, 1))}] = Candle{
        std::string(rows.get(row, 2)), std::string(rows.get(row, 3)), std::string(rows.get(row, 4)),
        std::string(rows.get(row, 5)), std::string(rows.get(row, 6)), to_int(rows.get(row, 7)),
        to_int(rows.get(row, 8)),      to_int(rows.get(row, 9))};
  }
  co_return candles;
}

Task<Markets> stored_markets(pg::Pool& pool) {
  const std::string sql =
      "SELECT product, last_price::text, to_char(last_time AT TIME ZONE 'UTC', " +
      std::string(kUtcMicros) + "), last_trade_id FROM markets";
  const pg::Result rows = co_await pool.query(sql);
  Markets markets;
  for (int row = 0; row < rows.rows(); ++row) {
    markets[std::string(rows.get(row, 0))] = {
        std::string(rows.get(row, 1)), std::string(rows.get(row, 2)), to_int(rows.get(row, 3))};
  }
  co_return markets;
}

Task<std::vector<market::Trade>> stored_trades(pg::Pool& pool) {
  const std::string sql =
      "SELECT product, trade_id, price::text, size::text, side, to_char(time AT TIME ZONE 'UTC', " +
      std::string(kUtcMicros) + "), sequence FROM trades ORDER BY product, trade_id";
  const pg::Result rows = co_await pool.query(sql);
  std::vector<market::Trade> trades;
  for (int row = 0; row < rows.rows(); ++row) {
    market::Trade trade;
    trade.product = rows.get(row, 0);
    trade.trade_id = to_int(rows.get(row, 1));
    trade.price = rows.get(row, 2);
    trade.size = rows.get(row, 3);
    trade.side = rows.get(row, 4) == "sell" ? market::Side::sell : market::Side::buy;
    trade.time = rows.get(row, 5);
    trade.sequence = to_int(rows.get(row, 6));
    trades.push_back(std::move(trade));
  }
  co_return trades;
}

Task<void> check_database_matches(pg::Pool& pool, const std::vector<market::Trade>& published) {
  std::map<std::pair<std::string, std::int64_t>, std::string> expected_trades;
  for (const auto& trade : published) {
    expected_trades.try_emplace({trade.product, trade.trade_id}, market::encode(trade));
  }
  const auto trades = co_await stored_trades(pool);
  CHECK(trades.size() == expected_trades.size());
  for (const auto& trade : trades) {
    const auto expected = expected_trades.find({trade.product, trade.trade_id});
    REQUIRE(expected != expected_trades.end());
    CHECK(market::encode(trade) == expected->second);
  }
  const auto candles = co_await stored_candles(pool);
  const auto expected_candle_set = expected_candles(published);
  CHECK(candles.size() == expected_candle_set.size());
  for (const auto& [key, candle] : expected_candle_set) {
    INFO("candle " << key.first << " " << key.second);
    const auto found = candles.find(key);
    REQUIRE(found != candles.end());
    CHECK(found->second == candle);
  }
  const auto markets = co_await stored_markets(pool);
  CHECK(markets == expected_markets(published));
}

}  // namespace mesh::marketdb::test
