// marketdb::MarketApi through its routes, over rows written by marketdb::Store in a fresh
// database: what is read back is exactly what was published.
#include <algorithm>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "mesh/marketdb/market_api.hpp"
#include "mesh/marketdb/store.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::marketdb::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

struct Fixture {
  Fixture() : db(io, registry) {
    config.ingester_products = {"BTC-USD", "ETH-USD", "DOGE-USD"};
    api = std::make_unique<MarketApi>(config, *db.pool, registry);
    api->add_routes(router);
  }

  http::Response get(const std::string& target) {
    http::Request request;
    request.method = "GET";
    request.target = target;
    const auto question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos) request.query = target.substr(question + 1);
    auto match = router.match("GET", request.path);
    REQUIRE(match.handler != nullptr);
    request.params = match.params;
    return testing::run(io, (*match.handler)(request));
  }

  void store(const std::vector<market::Trade>& trades) {
    Store store(*db.pool, 5s);
    testing::run(io, [&]() -> Task<void> { co_await store.store(trades); }());
  }

  asio::io_context io;
  prometheus::Registry registry;
  config::Config config;
  Database db;
  std::unique_ptr<MarketApi> api;
  http::Router router;
};

json::value body_of(const http::Response& response) { return json::parse(response.body); }

// A 400 problem naming `parameter`.
void check_invalid(const http::Response& response, std::string_view parameter) {
  INFO(response.body);
  CHECK(response.status == 400);
  CHECK(response.content_type == "application/problem+json");
  const auto body = body_of(response);
  CHECK(body.at("status") == 400);
  CHECK(body.at("errors").at(0).at("field") == json::value(parameter));
}

void check_not_found(const http::Response& response) {
  INFO(response.body);
  CHECK(response.status == 404);
  CHECK(response.content_type == "application/problem+json");
}

std::string items_of(const std::vector<market::Trade>& trades) {
  std::string body = R"({"items":[)";
  for (std::size_t i = 0; i < trades.size(); ++i) {
    if (i > 0) body += ',';
    body += market::encode(trades[i]);
  }
  return body + "]}";
}

std::vector<market::Trade> newest_first(std::vector<market::Trade> trades,
                                        const std::string& product) {
  std::erase_if(trades, [&](const auto& trade) { return trade.product != product; });
  std::sort(trades.begin(), trades.end(),
            [](const auto& a, const auto& b) { return a.trade_id > b.trade_id; });
  return trades;
}

// Candles of `minutes` wide buckets built from the one-minute expectation, as JSON items.
json::array bucket_items(const Candles& candles, const std::string& product, int minutes) {
  struct Bucket {
    Candle candle;
    bool started = false;
  };
  std::map<std::int64_t, Bucket> buckets;
  for (const auto& [key, candle] : candles) {  // in start order within a product
    if (key.first != product) continue;
    const std::int64_t micros = *market::time_micros(key.second);
    const std::int64_t width = std::int64_t{minutes} * 60'000'000;
    Bucket& bucket = buckets[micros - micros % width];
    if (!bucket.started) {
      bucket.candle = candle;
      bucket.started = true;
      continue;
    }
    bucket.candle.close = candle.close;
    if (decimal_compare(candle.high, bucket.candle.high) > 0) bucket.candle.high = candle.high;
    if (decimal_compare(candle.low, bucket.candle.low) < 0) bucket.candle.low = candle.low;
    bucket.candle.volume = decimal_sum(bucket.candle.volume, candle.volume);
  }
  json::array items;
  for (const auto& [start, bucket] : buckets) {
    const std::string time = market::format_time(start);
    items.push_back(json::object{{"start", time.substr(0, 19) + "Z"},
                                 {"open", bucket.candle.open},
                                 {"high", bucket.candle.high},
                                 {"low", bucket.candle.low},
                                 {"close", bucket.candle.close},
                                 {"volume", bucket.candle.volume}});
  }
  return items;
}

json::array sub_array(const json::array& items, std::size_t from, std::size_t to) {
  json::array part;
  for (std::size_t i = from; i < std::min(to, items.size()); ++i) part.push_back(items[i]);
  return part;
}

TEST_CASE("market api: markets lists traded and configured products", "[marketdb][api]") {
  Fixture f;
  auto empty = f.get("/v1/markets");
  CHECK(empty.status == 200);
  CHECK(empty.content_type == "application/json");
  CHECK(empty.body == R"({"items":[{"product":"BTC-USD","last_price":null,"last_time":null},)"
                      R"({"product":"DOGE-USD","last_price":null,"last_time":null},)"
                      R"({"product":"ETH-USD","last_price":null,"last_time":null}]})");

  auto trades = make_trades({"BTC-USD", "SOL-USD"}, 50);
  trades[49].price = "0.00120000";
  f.store(trades);
  const auto last = expected_markets(trades);
  auto listed = f.get("/v1/markets");
  CHECK(listed.status == 200);
  const auto items = body_of(listed).at("items").as_array();
  REQUIRE(items.size() == 4);
  CHECK(items[0] ==
        json::parse(R"({"product":"BTC-USD","last_price":")" + std::get<0>(last.at("BTC-USD")) +
                    R"(","last_time":")" + std::get<1>(last.at("BTC-USD")) + R"("})"));
  CHECK(items[1].at("product") == "DOGE-USD");
  CHECK(items[1].at("last_price").is_null());
  CHECK(items[2].at("product") == "ETH-USD");
  CHECK(items[3].at("product") == "SOL-USD");
  CHECK(items[3].at("last_price") == json::value(std::get<0>(last.at("SOL-USD"))));
  CHECK(items[3].at("last_time") == json::value(std::get<1>(last.at("SOL-USD"))));
}

TEST_CASE("market api: trades newest first, exactly as published, paged by before",
          "[marketdb][api]") {
  Fixture f;
  auto trades = make_trades({"BTC-USD", "SOL-USD"}, 250);
  trades[3].price = "0.00120000";
  trades[3].size = "1.10000000";
  f.store(trades);
  const auto btc = newest_first(trades, "BTC-USD");

  // Default limit 100, byte for byte what the records on market.trades were.
  auto first = f.get("/v1/markets/BTC-USD/trades");
  CHECK(first.status == 200);
  CHECK(first.content_type == "application/json");
  CHECK(first.body == items_of({btc.begin(), btc.begin() + 100}));

  // Paging with before= walks every trade once.
  std::vector<market::Trade> walked;
  std::string target = "/v1/markets/BTC-USD/trades?limit=7";
  for (int page = 0; page < 100; ++page) {
    auto response = f.get(target);
    REQUIRE(response.status == 200);
    const auto items = body_of(response).at("items").as_array();
    if (items.empty()) break;
    for (const auto& item : items) {
      auto decoded = market::decode_trade(json::serialize(item));
      REQUIRE(std::holds_alternative<market::Trade>(decoded));
      walked.push_back(std::get<market::Trade>(decoded));
    }
    target = "/v1/markets/BTC-USD/trades?limit=7&before=" + std::to_string(walked.back().trade_id);
  }
  CHECK(items_of(walked) == items_of(btc));

  auto last_one = f.get("/v1/markets/BTC-USD/trades?limit=1000&before=" +
                        std::to_string(btc[btc.size() - 2].trade_id));
  CHECK(last_one.body == items_of({btc.back()}));
  auto all = f.get("/v1/markets/SOL-USD/trades?limit=1000");
  CHECK(all.body == items_of(newest_first(trades, "SOL-USD")));

  // Configured but never traded: empty. Valid but unknown: 404.
  CHECK(f.get("/v1/markets/ETH-USD/trades").body == R"({"items":[]})");
  check_not_found(f.get("/v1/markets/XRP-USD/trades"));
  check_not_found(f.get("/v1/markets/XRP-USD/trades?before=5"));

  check_invalid(f.get("/v1/markets/btc-usd/trades"), "product");
  check_invalid(f.get("/v1/markets/BTCUSD/trades"), "product");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?limit=0"), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?limit=1001"), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?limit=ten"), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?limit="), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?limit=5x"), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?before=abc"), "before");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?before=-1"), "before");
  check_invalid(f.get("/v1/markets/BTC-USD/trades?before=99999999999999999999"), "before");
}

TEST_CASE("market api: candles per interval, windows and limits, built from 1m candles",
          "[marketdb][api]") {
  Fixture f;
  // 70 minutes of trades: two hours, five quarter hours, fifteen five-minute buckets.
  const auto trades = make_trades({"BTC-USD", "ETH-USD"}, 600, 1, 70);
  f.store(trades);
  const auto minutes = expected_candles(trades);
  const std::pair<std::string, int> intervals[] = {{"1m", 1}, {"5m", 5}, {"15m", 15}, {"1h", 60}};
  for (const auto& [name, width] : intervals) {
    INFO("interval " << name);
    const auto expected = bucket_items(minutes, "BTC-USD", width);
    REQUIRE(!expected.empty());
    auto all = f.get("/v1/markets/BTC-USD/candles?interval=" + name);
    REQUIRE(all.status == 200);
    CHECK(body_of(all).at("items") == expected);

    // The latest two, oldest first.
    auto latest = f.get("/v1/markets/BTC-USD/candles?limit=2&interval=" + name);
    CHECK(body_of(latest).at("items") ==
          sub_array(expected, expected.size() >= 2 ? expected.size() - 2 : 0, expected.size()));

    // [from, to) by bucket start, from on a bucket boundary, to inside a later bucket.
    const std::string from = expected[0].at("start").as_string().c_str();
    if (expected.size() >= 3) {
      const std::string third = expected[2].at("start").as_string().c_str();
      const std::string to = third.substr(0, 17) + "30Z";  // 30 s into the third bucket
      auto window =
          f.get("/v1/markets/BTC-USD/candles?interval=" + name + "&from=" + from + "&to=" + to);
      CHECK(body_of(window).at("items") == sub_array(expected, 0, 3));
      auto before_third = f.get("/v1/markets/BTC-USD/candles?interval=" + name + "&to=" + third);
      CHECK(body_of(before_third).at("items") == sub_array(expected, 0, 2));
      auto first_two =
          f.get("/v1/markets/BTC-USD/candles?limit=2&interval=" + name + "&from=" + from);
      CHECK(body_of(first_two).at("items") == sub_array(expected, 0, 2));
    }
    // A from that is not on a boundary starts at the next bucket.
    const std::string late_from = from.substr(0, 17) + "01.5Z";
    auto after = f.get("/v1/markets/BTC-USD/candles?interval=" + name + "&from=" + late_from);
    CHECK(body_of(after).at("items") == sub_array(expected, 1, expected.size()));
  }
  // The default interval is one minute; other products are apart.
  CHECK(body_of(f.get("/v1/markets/ETH-USD/candles")).at("items") ==
        bucket_items(minutes, "ETH-USD", 1));
  // Offsets in times are understood.
  auto offset =
      f.get("/v1/markets/BTC-USD/candles?interval=1h&from=2026-11-30T13:00:00-01:00&limit=1");
  CHECK(body_of(offset).at("items") == sub_array(bucket_items(minutes, "BTC-USD", 60), 0, 1));
  // An empty window, a configured product without trades.
  CHECK(
      f.get("/v1/markets/BTC-USD/candles?from=2026-11-30T14:00:00Z&to=2026-11-30T14:00:00Z").body ==
      R"({"items":[]})");
  CHECK(f.get("/v1/markets/DOGE-USD/candles?interval=1h").body == R"({"items":[]})");
  check_not_found(f.get("/v1/markets/XRP-USD/candles"));

  check_invalid(f.get("/v1/markets/xrp/candles"), "product");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?interval=2m"), "interval");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?interval="), "interval");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?from=yesterday"), "from");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?to=2026-11-31T00:00:00Z"), "to");
  check_invalid(
      f.get("/v1/markets/BTC-USD/candles?from=2026-11-30T15:00:00Z&to=2026-11-30T14:00:00Z"),
      "from");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?limit=0"), "limit");
  check_invalid(f.get("/v1/markets/BTC-USD/candles?limit=1001"), "limit");
}

}  // namespace
}  // namespace mesh::marketdb::test
