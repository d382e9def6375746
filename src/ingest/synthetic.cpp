#include "mesh/ingest/synthetic.hpp"

#include <algorithm>

#include "mesh/market/events.hpp"

namespace mesh::ingest {

namespace {

// "123.45" from 12345 cents.
std::string cents(std::int64_t value) {
  std::string fraction = std::to_string(value % 100);
  if (fraction.size() < 2) fraction.insert(0, "0");
  return std::to_string(value / 100) + "." + fraction;
}

// "0.01234567" from 1234567 units of 1e-8.
std::string eighths(std::int64_t value) {
  std::string fraction = std::to_string(value % 100'000'000);
  fraction.insert(0, 8 - fraction.size(), '0');
  return std::to_string(value / 100'000'000) + "." + fraction;
}

std::int64_t starting_price_cents(const std::string& product) {
  if (product.starts_with("BTC-")) return 30'000'00;
  if (product.starts_with("ETH-")) return 2'000'00;
  return 100'00;
}

}  // namespace

SyntheticFeed::SyntheticFeed(std::vector<std::string> products, std::uint64_t seed,
                             std::int64_t first_trade_id)
    : random_(seed) {
  for (auto& product : products) {
    const std::int64_t price = starting_price_cents(product);
    markets_.push_back(Market{std::move(product), price, first_trade_id - 1});
  }
}

std::vector<std::string> SyntheticFeed::trade(std::size_t index, std::int64_t time_micros) {
  Market& market = markets_.at(index);
  // A step of up to 0.05% of the price either way, at least a cent; never below $1.
  const std::int64_t span = std::max<std::int64_t>(1, market.price_cents / 2000);
  std::uniform_int_distribution<std::int64_t> step(-span, span);
  market.price_cents = std::max<std::int64_t>(100, market.price_cents + step(random_));
  std::uniform_int_distribution<std::int64_t> size_units(100'000, 50'000'000);
  const std::string size = eighths(size_units(random_));
  const char* side = std::uniform_int_distribution<int>(0, 1)(random_) == 0 ? "buy" : "sell";
  const std::string price = cents(market.price_cents);
  const std::string time = market::format_time(time_micros);
  const std::int64_t trade_id = ++market.last_trade_id;

  std::string match = R"({"type":"match","trade_id":)" + std::to_string(trade_id);
  match += R"(,"sequence":)" + std::to_string(++market.sequence);
  match += R"(,"maker_order_id":"synthetic","taker_order_id":"synthetic","time":")" + time;
  match += R"(","product_id":")" + market.product + R"(","size":")" + size;
  match += R"(","price":")" + price + R"(","side":")" + side + R"("})";

  std::string ticker = R"({"type":"ticker","sequence":)" + std::to_string(++market.sequence);
  ticker += R"(,"product_id":")" + market.product + R"(","price":")" + price;
  ticker += R"(","best_bid":")" + cents(market.price_cents - 1);
  ticker += R"(","best_ask":")" + cents(market.price_cents + 1);
  ticker += R"(","side":")" + std::string(side) + R"(","time":")" + time;
  ticker += R"(","trade_id":)" + std::to_string(trade_id) + R"(,"last_size":")" + size + R"("})";
  return {std::move(match), std::move(ticker)};
}

std::string SyntheticFeed::heartbeat(std::size_t index, std::int64_t time_micros) {
  Market& market = markets_.at(index);
  std::string out = R"({"type":"heartbeat","sequence":)" + std::to_string(++market.sequence);
  out += R"(,"last_trade_id":)" + std::to_string(market.last_trade_id);
  out += R"(,"product_id":")" + market.product + R"(","time":")" +
         market::format_time(time_micros) + R"("})";
  return out;
}

}  // namespace mesh::ingest
