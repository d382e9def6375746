#include <catch2/catch.hpp>

#include "mesh/ingest/feed.hpp"
#include "mesh/ingest/synthetic.hpp"
#include "mesh/ingest/websocket.hpp"

namespace mesh::ingest {
namespace {

std::string match(std::int64_t trade_id, std::string_view product = "BTC-USD",
                  std::string_view type = "match") {
  return R"({"type":")" + std::string(type) + R"(","trade_id":)" + std::to_string(trade_id) +
         R"(,"sequence":)" + std::to_string(trade_id + 100) +
         R"(,"maker_order_id":"ac928c66","taker_order_id":"132fb6ae",)"
         R"("time":"2014-11-07T08:19:27.028459Z","product_id":")" +
         std::string(product) + R"(","size":"5.23512","price":"400.23","side":"sell"})";
}

const market::Trade& trade_of(const FeedEvent& event) {
  REQUIRE(std::holds_alternative<market::Trade>(event.record));
  return std::get<market::Trade>(event.record);
}

TEST_CASE("a match becomes a normalized trade") {
  FeedParser parser;
  const auto event = parser.parse(match(10));
  CHECK(event.type == MessageType::match);
  CHECK_FALSE(event.dropped);
  const auto& trade = trade_of(event);
  CHECK(trade.product == "BTC-USD");
  CHECK(trade.trade_id == 10);
  CHECK(trade.price == "400.23");
  CHECK(trade.size == "5.23512");
  CHECK(trade.side == market::Side::sell);
  CHECK(trade.time == "2014-11-07T08:19:27.028459Z");
  CHECK(trade.sequence == 110);
  CHECK(market::encode(trade) ==
        R"({"product":"BTC-USD","trade_id":10,"price":"400.23","size":"5.23512","side":"sell",)"
        R"("time":"2014-11-07T08:19:27.028459Z","sequence":110})");
  CHECK(parser.last_trade_id("BTC-USD") == 10);
}

TEST_CASE("a ticker becomes a normalized ticker; its time is made canonical") {
  FeedParser parser;
  const auto event = parser.parse(
      R"({"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22",)"
      R"("open_24h":"1310.79","volume_24h":"245532.79","low_24h":"1280.52","high_24h":"1313.8",)"
      R"("volume_30d":"9788783.60","best_bid":"1285.04","best_bid_size":"0.46688654",)"
      R"("best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy",)"
      R"("time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"})");
  CHECK(event.type == MessageType::ticker);
  REQUIRE(std::holds_alternative<market::Ticker>(event.record));
  const auto& ticker = std::get<market::Ticker>(event.record);
  CHECK(ticker.product == "ETH-USD");
  CHECK(ticker.price == "1285.22");
  CHECK(ticker.best_bid == "1285.04");
  CHECK(ticker.best_ask == "1285.27");
  CHECK(ticker.time == "2022-10-19T23:28:22.061769Z");
  CHECK(ticker.sequence == 37475248783);

  const auto offset = parser.parse(
      R"({"type":"ticker","sequence":1,"product_id":"ETH-USD","price":"1","best_bid":"0.9",)"
      R"("best_ask":"1.1","time":"2022-10-20T01:28:22.5+02:00"})");
  REQUIRE(std::holds_alternative<market::Ticker>(offset.record));
  CHECK(std::get<market::Ticker>(offset.record).time == "2022-10-19T23:28:22.500000Z");
}

TEST_CASE("subscriptions, heartbeats, errors and unknown types are classified") {
  FeedParser parser;
  const auto subscriptions = parser.parse(
      R"({"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]})");
  CHECK(subscriptions.type == MessageType::subscriptions);
  CHECK_FALSE(subscriptions.dropped);
  CHECK(subscriptions.detail.find("matches") != std::string::npos);

  const auto heartbeat =
      parser.parse(R"({"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",)"
                   R"("time":"2014-11-07T08:19:28.464459Z"})");
  CHECK(heartbeat.type == MessageType::heartbeat);
  CHECK_FALSE(heartbeat.dropped);
  CHECK(heartbeat.product == "BTC-USD");
  CHECK(heartbeat.missing_trades == 0);  // no trade seen yet: nothing to compare with
  CHECK(std::holds_alternative<std::monostate>(heartbeat.record));

  const auto error = parser.parse(R"({"type":"error","message":"Failed to subscribe",)"
                                  R"("reason":"ETH-XYZ is not a valid product"})");
  CHECK(error.type == MessageType::error);
  CHECK_FALSE(error.dropped);
  CHECK(error.detail == "Failed to subscribe: ETH-XYZ is not a valid product");

  const auto unknown = parser.parse(R"({"type":"l2update","product_id":"BTC-USD"})");
  CHECK(unknown.type == MessageType::unknown);
  CHECK_FALSE(unknown.dropped);
  CHECK(unknown.detail == "l2update");
}

TEST_CASE("trade id gaps are reported by matches and heartbeats; duplicates are dropped") {
  FeedParser parser;
  CHECK(parser.parse(match(10)).missing_trades == 0);
  CHECK(parser.parse(match(11)).missing_trades == 0);
  const auto jump = parser.parse(match(15));
  CHECK(jump.missing_trades == 3);
  CHECK(jump.product == "BTC-USD");
  CHECK(trade_of(jump).trade_id == 15);

  const auto duplicate = parser.parse(match(12, "BTC-USD", "last_match"));
  CHECK(duplicate.type == MessageType::last_match);
  CHECK(duplicate.dropped == DropReason::duplicate);
  CHECK(std::holds_alternative<std::monostate>(duplicate.record));
  CHECK(parser.parse(match(15)).dropped == DropReason::duplicate);

  // Products are independent.
  CHECK_FALSE(parser.parse(match(3, "ETH-USD")).dropped);
  CHECK(parser.last_trade_id("ETH-USD") == 3);

  const auto behind = parser.parse(
      R"({"type":"heartbeat","sequence":1,"last_trade_id":18,"product_id":"BTC-USD","time":"2014-11-07T08:19:28Z"})");
  CHECK(behind.missing_trades == 3);  // 16, 17 and 18 never arrived
  CHECK(parser.last_trade_id("BTC-USD") == 18);
  const auto level = parser.parse(
      R"({"type":"heartbeat","sequence":2,"last_trade_id":18,"product_id":"BTC-USD","time":"2014-11-07T08:19:29Z"})");
  CHECK(level.missing_trades == 0);
  CHECK(parser.parse(match(19)).missing_trades == 0);  // counted once, not again
}

TEST_CASE("malformed, wrong-typed and oversized messages are dropped with a reason") {
  FeedParser parser;
  struct Case {
    std::string message;
    DropReason reason;
  };
  const std::vector<Case> cases = {
      {"not json", DropReason::malformed},
      {"", DropReason::malformed},
      {"{\"type\":\"match\"", DropReason::malformed},
      {"[1,2,3]", DropReason::malformed},
      {R"({"product_id":"BTC-USD"})", DropReason::malformed},
      {R"({"type":7})", DropReason::wrong_type},
      {R"({"type":"match","trade_id":1})", DropReason::malformed},
      {std::string(kMaxFeedMessageBytes + 1, ' '), DropReason::oversized},
  };
  for (const auto& c : cases) {
    INFO(c.message.substr(0, 80));
    const auto event = parser.parse(c.message);
    CHECK(event.dropped == c.reason);
    CHECK_FALSE(event.detail.empty());
    CHECK(std::holds_alternative<std::monostate>(event.record));
  }

  const auto replace = [](std::string text, std::string_view from, std::string_view to) {
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  const std::string good = match(1);
  const std::vector<Case> fields = {
      {replace(good, R"("price":"400.23")", R"("price":400.23)"), DropReason::wrong_type},
      {replace(good, R"("size":"5.23512")", R"("size":5)"), DropReason::wrong_type},
      {replace(good, R"("trade_id":1)", R"("trade_id":"1")"), DropReason::wrong_type},
      {replace(good, R"("trade_id":1)", R"("trade_id":1.5)"), DropReason::wrong_type},
      {replace(good, R"("trade_id":1)", R"("trade_id":-1)"), DropReason::malformed},
      {replace(good, R"("side":"sell")", R"("side":true)"), DropReason::wrong_type},
      {replace(good, R"("side":"sell")", R"("side":"short")"), DropReason::malformed},
      {replace(good, R"("price":"400.23")", R"("price":"4e2")"), DropReason::malformed},
      {replace(good, R"("price":"400.23")", R"("price":"-1")"), DropReason::malformed},
      {replace(good, R"("product_id":"BTC-USD")", R"("product_id":"btc usd")"),
       DropReason::malformed},
      {replace(good, R"("time":"2014-11-07T08:19:27.028459Z")", R"("time":"yesterday")"),
       DropReason::malformed},
      {replace(good, R"("time":"2014-11-07T08:19:27.028459Z")", R"("time":1415348367)"),
       DropReason::wrong_type},
  };
  for (const auto& c : fields) {
    INFO(c.message);
    const auto event = parser.parse(c.message);
    CHECK(event.type == MessageType::match);
    CHECK(event.dropped == c.reason);
    CHECK(std::holds_alternative<std::monostate>(event.record));
  }
  // None of them moved the trade id position.
  CHECK_FALSE(parser.last_trade_id("BTC-USD"));
  CHECK_FALSE(parser.parse(good).dropped);
}

TEST_CASE("a message of exactly the size limit is parsed") {
  FeedParser parser;
  std::string message = R"({"type":"subscriptions","padding":")";
  message += std::string(kMaxFeedMessageBytes - message.size() - 2, 'x');
  message += "\"}";
  REQUIRE(message.size() == kMaxFeedMessageBytes);
  const auto event = parser.parse(message);
  CHECK(event.type == MessageType::subscriptions);
  CHECK_FALSE(event.dropped);
}

TEST_CASE("the subscribe request names the products and the three channels") {
  CHECK(subscribe_message({"BTC-USD", "ETH-USD"}) ==
        R"({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],)"
        R"("channels":["matches","ticker","heartbeat"]})");
}

TEST_CASE("feed URLs") {
  const auto secure = parse_feed_url("wss://ws-feed.exchange.coinbase.com");
  REQUIRE(secure);
  CHECK(secure->tls);
  CHECK(secure->host == "ws-feed.exchange.coinbase.com");
  CHECK(secure->port == "443");
  CHECK(secure->target == "/");
  const auto plain = parse_feed_url("ws://localhost:8123/feed?x=1");
  REQUIRE(plain);
  CHECK_FALSE(plain->tls);
  CHECK(plain->host == "localhost");
  CHECK(plain->port == "8123");
  CHECK(plain->target == "/feed?x=1");
  CHECK_FALSE(parse_feed_url("http://localhost"));
  CHECK_FALSE(parse_feed_url("ws://"));
  CHECK_FALSE(parse_feed_url("ws://host:port"));
  CHECK_FALSE(parse_feed_url("ws://user@host"));
}

TEST_CASE("backoff: full jitter under a doubling ceiling, reset to the start") {
  using std::chrono::milliseconds;
  Backoff backoff(milliseconds(250), milliseconds(30'000));
  milliseconds ceiling(250);
  for (int i = 0; i < 12; ++i) {
    const auto delay = backoff.next();
    CHECK(delay >= milliseconds(0));
    CHECK(delay <= ceiling);
    ceiling = std::min(ceiling * 2, milliseconds(30'000));
    CHECK(backoff.ceiling() == ceiling);
  }
  CHECK(backoff.ceiling() == milliseconds(30'000));
  backoff.reset();
  CHECK(backoff.ceiling() == milliseconds(250));
}

TEST_CASE("synthetic messages parse as contiguous trades and tickers") {
  SyntheticFeed feed({"BTC-USD", "ETH-USD"}, 42);
  FeedParser parser;
  const std::int64_t start = 1'700'000'000'000'000;
  for (int i = 0; i < 200; ++i) {
    for (std::size_t product = 0; product < feed.products(); ++product) {
      const auto messages = feed.trade(product, start + i * 1000);
      REQUIRE(messages.size() == 2);
      const auto trade = parser.parse(messages[0]);
      INFO(messages[0]);
      REQUIRE_FALSE(trade.dropped);
      CHECK(trade.missing_trades == 0);
      CHECK(trade_of(trade).trade_id == i + 1);
      CHECK(trade_of(trade).time == market::format_time(start + i * 1000));
      const auto ticker = parser.parse(messages[1]);
      INFO(messages[1]);
      REQUIRE_FALSE(ticker.dropped);
      REQUIRE(std::holds_alternative<market::Ticker>(ticker.record));
      CHECK(std::get<market::Ticker>(ticker.record).price == trade_of(trade).price);
    }
  }
  const auto heartbeat = parser.parse(feed.heartbeat(1, start));
  CHECK(heartbeat.type == MessageType::heartbeat);
  CHECK_FALSE(heartbeat.dropped);
  CHECK(heartbeat.missing_trades == 0);
}

}  // namespace
}  // namespace mesh::ingest
