// The market pipeline in one process, as `mesh --role=all` runs it: ingester -> Kafka ->
// consumer -> Postgres, the market read API, and the stream role's SSE.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include "app_fixture.hpp"
#include "mesh/market/events.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::roles::test {
namespace {

namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

// A trade as the feed sends it, with integer cents and satoshis so the test computes expected
// candles exactly without decimals.
struct FeedTrade {
  std::string product;
  long long trade_id;
  long long price_cents;
  long long size_units;  // 1e-8
  std::string side;
  long long micros;  // since the epoch
};

std::string cents(long long value) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%lld.%02lld", value / 100, value % 100);
  return buffer;
}
std::string units(long long value) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%lld.%08lld", value / 100000000, value % 100000000);
  return buffer;
}

std::string match_message(const FeedTrade& t, long long sequence) {
  json::object message{{"type", "match"},
                       {"trade_id", t.trade_id},
                       {"sequence", sequence},
                       {"maker_order_id", "ac928c66-ca53-498f-9c13-a110027a60e8"},
                       {"taker_order_id", "132fb6ae-456b-4654-b4e0-d681ac05cea1"},
                       {"time", market::format_time(t.micros)},
                       {"product_id", t.product},
                       {"size", units(t.size_units)},
                       {"price", cents(t.price_cents)},
                       {"side", t.side}};
  return json::serialize(message);
}

struct Candle {
  long long open = 0, high = 0, low = 0, close = 0, volume = 0;
  long long first_micros = 0, first_id = 0, last_micros = 0, last_id = 0;
};

// An SSE client on a raw socket: reads with a deadline, never sleeps.
class SseClient {
 public:
  SseClient(unsigned short port, const std::string& target) : socket_(io_) {
    socket_.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    const std::string request =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    boost::asio::write(socket_, boost::asio::buffer(request));
  }

  // Reads until `done(received)` holds or the deadline passes; returns done's last answer.
  bool read_until(const std::function<bool(const std::string&)>& done,
                  std::chrono::milliseconds deadline) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (!done(received_)) {
      const auto left = until - std::chrono::steady_clock::now();
      if (left <= std::chrono::milliseconds(0)) return false;
      bool finished = false;
      boost::system::error_code error;
      socket_.async_read_some(boost::asio::buffer(chunk_),
                              [&](boost::system::error_code ec, std::size_t n) {
                                received_.append(chunk_.data(), n);
                                error = ec;
                                finished = true;
                              });
      io_.restart();
      io_.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(left));
      if (!finished) {
        socket_.cancel();
        io_.restart();
        io_.run();
        return done(received_);
      }
      if (error) return done(received_);
    }
    return true;
  }

  const std::string& received() const { return received_; }

 private:
  boost::asio::io_context io_;
  tcp::socket socket_;
  std::array<char, 8192> chunk_{};
  std::string received_;
};

// The `data:` lines of every complete `event: <name>` frame.
std::vector<std::string> event_data(const std::string& stream, std::string_view name) {
  std::vector<std::string> result;
  std::size_t pos = 0;
  while (true) {
    const auto end = stream.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string frame = stream.substr(pos, end - pos);
    pos = end + 2;
    if (frame.find("event: " + std::string(name) + "\n") == std::string::npos) continue;
    const auto data = frame.find("data: ");
    if (data == std::string::npos) continue;
    const auto line_end = frame.find('\n', data);
    result.push_back(frame.substr(
        data + 6, line_end == std::string::npos ? std::string::npos : line_end - data - 6));
  }
  return result;
}

}  // namespace

TEST_CASE("a replayed feed lands in Postgres exactly, with exact candles, and the API serves it") {
  // Two products, trades over three minutes arriving out of time order within a minute, a
  // duplicate, and lines a feed may send that carry no trade.
  std::vector<FeedTrade> trades;
  const long long base = *market::time_micros("2026-11-30T14:00:00.000000Z");
  long long next_id[2] = {1000, 5000};
  const char* products[2] = {"BTC-USD", "ETH-USD"};
  for (int i = 0; i < 240; ++i) {
    const int p = i % 2;
    const long long offset = (i / 2) * 1'500'000LL + ((i * 7919) % 1000);  // 1.5 s apart
    trades.push_back(FeedTrade{products[p], next_id[p]++, 2'700'000 + (i * 37 % 501) - 250,
                               1 + (i * 104729 % 99'999'999), i % 3 == 0 ? "sell" : "buy",
                               base + offset});
  }
  const std::string file = "/tmp/mesh-market-replay-" + std::to_string(::getpid()) + ".jsonl";
  {
    std::ofstream out(file);
    out << R"({"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD","ETH-USD"]}]})"
        << "\n";
    long long sequence = 1;
    for (const auto& t : trades) {
      out << match_message(t, sequence++) << "\n";
      if (sequence % 50 == 0) out << "this is not JSON\n";
    }
    out << match_message(trades[10], 999999) << "\n";  // a duplicate after the fact
  }

  AppFixture app([&](config::Config& config) {
    config.ingester_source = "replay:" + file;
    config.ingester_replay_speed = 0;
  });
  testing::wait_until(
      [&] {
        return app.sql_count("SELECT count(*) FROM trades") >=
               static_cast<long long>(trades.size());
      },
      kPipelineDeadline, 50ms);
  REQUIRE(app.sql_count("SELECT count(*) FROM trades") == static_cast<long long>(trades.size()));

  // Every trade exactly as sent.
  for (const auto& t : trades) {
    const auto row = app.sql_value(
        "SELECT price::text || ' ' || size::text || ' ' || side || ' ' || "
        "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM trades "
        "WHERE product = '" +
        t.product + "' AND trade_id = " + std::to_string(t.trade_id));
    REQUIRE(row);
    CHECK(*row == cents(t.price_cents) + " " + units(t.size_units) + " " + t.side + " " +
                      market::format_time(t.micros));
  }

  // Candles computed here from what was sent.
  std::map<std::pair<std::string, long long>, Candle> expected;
  for (const auto& t : trades) {
    auto& c = expected[{t.product, t.micros / 60'000'000 * 60'000'000}];
    const bool first = c.first_id == 0;
    if (first || std::pair(t.micros, t.trade_id) < std::pair(c.first_micros, c.first_id)) {
      c.open = t.price_cents;
      c.first_micros = t.micros;
      c.first_id = t.trade_id;
    }
    if (first || std::pair(t.micros, t.trade_id) > std::pair(c.last_micros, c.last_id)) {
      c.close = t.price_cents;
      c.last_micros = t.micros;
      c.last_id = t.trade_id;
    }
    c.high = first ? t.price_cents : std::max(c.high, t.price_cents);
    c.low = first ? t.price_cents : std::min(c.low, t.price_cents);
    c.volume += t.size_units;
  }
  REQUIRE(app.sql_count("SELECT count(*) FROM candles_1m") ==
          static_cast<long long>(expected.size()));
  for (const char* product : products) {
    const auto reply =
        app.get("/v1/markets/" + std::string(product) + "/candles?interval=1m&limit=1000");
    REQUIRE(reply.status == 200);
    const auto items = reply.json().at("items").as_array();
    std::size_t seen = 0;
    for (const auto& item : items) {
      const auto start = market::normalize_time(json::value_to<std::string>(item.at("start")));
      REQUIRE(start);
      const auto it = expected.find({product, *market::time_micros(*start)});
      REQUIRE(it != expected.end());
      ++seen;
      CHECK(json::value_to<std::string>(item.at("open")) == cents(it->second.open));
      CHECK(json::value_to<std::string>(item.at("high")) == cents(it->second.high));
      CHECK(json::value_to<std::string>(item.at("low")) == cents(it->second.low));
      CHECK(json::value_to<std::string>(item.at("close")) == cents(it->second.close));
      CHECK(json::value_to<std::string>(item.at("volume")) == units(it->second.volume));
    }
    CHECK(seen == static_cast<std::size_t>(std::count_if(
                      expected.begin(), expected.end(),
                      [&](const auto& entry) { return entry.first.first == product; })));
  }

  // The latest trades, newest first, as on Kafka.
  const auto recent = app.get("/v1/markets/BTC-USD/trades?limit=5");
  REQUIRE(recent.status == 200);
  const auto items = recent.json().at("items").as_array();
  REQUIRE(items.size() == 5);
  long long previous = std::numeric_limits<long long>::max();
  for (const auto& item : items) {
    const auto id = item.at("trade_id").to_number<long long>();
    CHECK(id < previous);
    previous = id;
    const auto it = std::find_if(trades.begin(), trades.end(), [&](const FeedTrade& t) {
      return t.product == "BTC-USD" && t.trade_id == id;
    });
    REQUIRE(it != trades.end());
    CHECK(json::value_to<std::string>(item.at("price")) == cents(it->price_cents));
    CHECK(json::value_to<std::string>(item.at("time")) == market::format_time(it->micros));
  }
  const auto markets = app.get("/v1/markets");
  REQUIRE(markets.status == 200);
  CHECK(markets.body.find("\"BTC-USD\"") != std::string::npos);
  CHECK(markets.body.find("\"ETH-USD\"") != std::string::npos);
  CHECK(app.get("/v1/markets/DOGE-USD/trades").status == 404);
  CHECK(app.get("/v1/markets/BTC-USD/trades?limit=0").status == 400);
  std::remove(file.c_str());
}

TEST_CASE("SSE clients receive live trades that the consumer also stores exactly") {
  AppFixture app;  // the synthetic source
  SseClient client(app.port(), "/v1/stream/markets/BTC-USD");
  std::vector<std::string> received;
  REQUIRE(client.read_until(
      [&](const std::string& stream) {
        received = event_data(stream, "trade");
        return received.size() >= 3;
      },
      kPipelineDeadline));
  CHECK(client.received().rfind("HTTP/1.1 200", 0) == 0);
  CHECK(client.received().find("text/event-stream") != std::string::npos);
  for (const auto& data : received) {
    auto decoded = market::decode_trade(data);
    REQUIRE(std::holds_alternative<market::Trade>(decoded));
    const auto& trade = std::get<market::Trade>(decoded);
    CHECK(trade.product == "BTC-USD");
    // The same trade, stored by the consumer, reads back identically.
    const std::string sql =
        "SELECT price::text || ' ' || size::text FROM trades WHERE product = 'BTC-USD' AND "
        "trade_id = " +
        std::to_string(trade.trade_id);
    testing::wait_until([&] { return app.sql_value(sql).has_value(); }, kPipelineDeadline, 50ms);
    CHECK(app.sql_value(sql) == trade.price + " " + trade.size);
  }
  CHECK(app.get("/v1/stream/markets/not-a-product").status == 400);
  CHECK(app.get("/v1/stream/markets/DOGE-USD").status == 404);
}

}  // namespace mesh::roles::test
