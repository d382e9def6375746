#include <catch2/catch.hpp>

#include "mesh/market/events.hpp"

using namespace mesh::market;

TEST_CASE("decimal strings are digits with an optional fraction") {
  CHECK(is_decimal("0"));
  CHECK(is_decimal("27012.35"));
  CHECK(is_decimal("0.00120000"));
  CHECK_FALSE(is_decimal(""));
  CHECK_FALSE(is_decimal("-1"));
  CHECK_FALSE(is_decimal("+1"));
  CHECK_FALSE(is_decimal("1."));
  CHECK_FALSE(is_decimal(".5"));
  CHECK_FALSE(is_decimal("1e5"));
  CHECK_FALSE(is_decimal("1.2.3"));
  CHECK_FALSE(is_decimal(" 1"));
  CHECK_FALSE(is_decimal(std::string(41, '1')));
}

TEST_CASE("product ids are two upper-case parts") {
  CHECK(is_product("BTC-USD"));
  CHECK(is_product("1INCH-EUR"));
  CHECK_FALSE(is_product("btc-usd"));
  CHECK_FALSE(is_product("BTCUSD"));
  CHECK_FALSE(is_product("BTC-"));
  CHECK_FALSE(is_product("BTC-USD-X"));
  CHECK_FALSE(is_product("ABCDEFGHIJK-USD"));
}

TEST_CASE("times normalize to UTC with six fractional digits") {
  CHECK(normalize_time("2026-11-30T14:03:07.123456Z") == "2026-11-30T14:03:07.123456Z");
  CHECK(normalize_time("2026-11-30T14:03:07Z") == "2026-11-30T14:03:07.000000Z");
  CHECK(normalize_time("2026-11-30T14:03:07.1z") == "2026-11-30T14:03:07.100000Z");
  CHECK(normalize_time("2026-11-30T14:03:07.123456789Z") == "2026-11-30T14:03:07.123456Z");
  CHECK(normalize_time("2026-12-01T00:30:00.5+01:00") == "2026-11-30T23:30:00.500000Z");
  CHECK(normalize_time("2024-02-29T23:59:59-00:30") == "2024-03-01T00:29:59.000000Z");
  CHECK_FALSE(normalize_time("2025-02-29T00:00:00Z"));
  CHECK_FALSE(normalize_time("2026-11-30 14:03:07Z"));
  CHECK_FALSE(normalize_time("2026-11-30T24:00:00Z"));
  CHECK_FALSE(normalize_time("2026-11-30T14:03:07"));
  CHECK_FALSE(normalize_time("2026-11-30T14:03:07.Z"));
  CHECK_FALSE(normalize_time("2026-11-30T14:03:07.1234567890Z"));
  CHECK_FALSE(normalize_time("1969-12-31T23:59:59Z"));
  CHECK_FALSE(normalize_time("2026-11-30T14:03:07Zjunk"));
}

TEST_CASE("time_micros and format_time are inverses") {
  const auto micros = time_micros("2026-11-30T14:03:07.123456Z");
  REQUIRE(micros);
  CHECK(*micros % 1'000'000 == 123456);
  CHECK(format_time(*micros) == "2026-11-30T14:03:07.123456Z");
  CHECK(format_time(0) == "1970-01-01T00:00:00.000000Z");
  CHECK_FALSE(time_micros("2026-11-30T14:03:07Z"));
}

TEST_CASE("trades round-trip through JSON exactly") {
  Trade trade{
      "BTC-USD", 123456789, "27012.35", "0.00120000", Side::sell, "2026-11-30T14:03:07.123456Z",
      42};
  const auto text = encode(trade);
  CHECK(text ==
        R"({"product":"BTC-USD","trade_id":123456789,"price":"27012.35","size":"0.00120000",)"
        R"("side":"sell","time":"2026-11-30T14:03:07.123456Z","sequence":42})");
  auto decoded = decode_trade(text);
  REQUIRE(std::holds_alternative<Trade>(decoded));
  const auto& back = std::get<Trade>(decoded);
  CHECK(back.product == trade.product);
  CHECK(back.trade_id == trade.trade_id);
  CHECK(back.price == trade.price);
  CHECK(back.size == trade.size);
  CHECK(back.side == trade.side);
  CHECK(back.time == trade.time);
  CHECK(back.sequence == trade.sequence);
}

TEST_CASE("bad trade records give a reason, never an exception") {
  auto reason = [](std::string_view text) {
    auto decoded = decode_trade(text);
    REQUIRE(std::holds_alternative<DecodeError>(decoded));
    return std::get<DecodeError>(decoded).reason;
  };
  CHECK(reason("not json").find("invalid JSON") == 0);
  CHECK(reason("[]") == "record must be an object");
  CHECK(reason(std::string(5000, ' ')).find("exceeds") != std::string::npos);
  const std::string good_tail =
      R"(,"size":"1","side":"buy","time":"2026-11-30T14:03:07Z","sequence":1})";
  CHECK(reason(R"({"product":"BTC-USD","trade_id":1,"price":27000.5)" + good_tail) ==
        "price: must be a string");
  CHECK(reason(R"({"product":"BTC-USD","trade_id":-1,"price":"1")" + good_tail) ==
        "trade_id: must be a non-negative integer");
  CHECK(reason(R"({"product":"btc","trade_id":1,"price":"1")" + good_tail) ==
        "product: must be a product id like BTC-USD");
  CHECK(reason(R"({"product":"BTC-USD","trade_id":1,"price":"1e3")" + good_tail) ==
        "price: must be a decimal string");
  CHECK(reason(R"({"product":"BTC-USD","trade_id":1,"price":"1","size":"1","side":"up",)"
               R"("time":"2026-11-30T14:03:07Z","sequence":1})") ==
        "side: must be \"buy\" or \"sell\"");
  CHECK(reason(R"({"product":"BTC-USD","trade_id":1,"price":"1","size":"1","side":"buy",)"
               R"("time":"yesterday","sequence":1})") == "time: must be an RFC 3339 time");
  CHECK(reason(R"({"product":"BTC-USD"})") == "trade_id: is required");
}

TEST_CASE("tickers round-trip through JSON exactly") {
  Ticker ticker{"ETH-USD", "1800.01", "1800.00", "1800.02", "2026-11-30T14:03:07.000001Z", 7};
  auto decoded = decode_ticker(encode(ticker));
  REQUIRE(std::holds_alternative<Ticker>(decoded));
  const auto& back = std::get<Ticker>(decoded);
  CHECK(back.best_bid == "1800.00");
  CHECK(back.best_ask == "1800.02");
  CHECK(back.time == ticker.time);
  CHECK(encode(back) == encode(ticker));
}
