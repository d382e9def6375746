#include <fstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "feed_server.hpp"
#include "mesh/market/events.hpp"
#include "support.hpp"

namespace mesh::ingest {
namespace {

using namespace std::chrono_literals;
using test::FeedConnection;
using test::FeedServer;
using test::Harness;
using test::heartbeat;
using test::match;
using test::ticker;
using test::trade_record;
namespace json = boost::json;

constexpr const char* kTrades = market::kTradesTopic;
constexpr const char* kTicker = market::kTickerTopic;

std::filesystem::path temp_directory(const std::string& name) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("mesh-ingest-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

// Sends `messages` in order, then keeps the connection open until the client closes it.
Task<void> send_all(FeedConnection& connection, std::vector<std::string> messages) {
  for (auto& message : messages) {
    const bool sent = co_await connection.send(std::move(message));
    if (!sent) co_return;
  }
  co_await connection.wait_closed();
}

double errors(Harness& h, const std::string& kind) {
  return h.value("mesh_ingester_errors_total", {{"kind", kind}});
}
double dropped(Harness& h, const std::string& reason) {
  return h.value("mesh_ingester_dropped_total", {{"reason", reason}});
}
double messages(Harness& h, const std::string& type) {
  return h.value("mesh_ingester_messages_total", {{"type", type}});
}

TEST_CASE("ws: subscribes to the configured products and publishes matches and tickers exactly") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    std::vector<std::string> script = {
        R"({"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD","ETH-USD"]}]})",
        match(1),
        match(1, "ETH-USD"),
        ticker(7, "ETH-USD"),
        match(2),
        heartbeat(2)};
    co_await send_all(c, std::move(script));
  });
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 3 && h.published(kTicker) == 1; }));
  CHECK(h.value("mesh_ingester_connected") == 1);
  CHECK(messages(h, "subscriptions") == 1);
  CHECK(messages(h, "match") == 3);
  CHECK(messages(h, "ticker") == 1);
  REQUIRE(h.wait_for([&] { return messages(h, "heartbeat") == 1; }));
  CHECK(h.value("mesh_ingester_trade_gaps_total", {{"product", "BTC-USD"}}) == 0);
  CHECK(h.ingester->healthy());

  const auto subscribes = server.subscribes();
  REQUIRE(subscribes.size() == 1);
  const auto subscribe = json::parse(subscribes[0]).as_object();
  CHECK(subscribe.at("type") == "subscribe");
  CHECK(subscribe.at("product_ids") == json::parse(R"(["BTC-USD","ETH-USD"])"));
  CHECK(subscribe.at("channels") == json::parse(R"(["matches","ticker","heartbeat"])"));

  h.stop();
  CHECK(h.value("mesh_ingester_connected") == 0);
  const auto trades = h.read(kTrades, 3);
  REQUIRE(trades.size() == 3);
  CHECK(Harness::values(trades, "BTC-USD") ==
        std::vector<std::string>{trade_record(1), trade_record(2)});
  CHECK(Harness::values(trades, "ETH-USD") == std::vector<std::string>{trade_record(1, "ETH-USD")});
  CHECK(trades[0].value.find(R"("price":"400.1")") != std::string::npos);
  const auto tickers = h.read(kTicker, 1);
  REQUIRE(tickers.size() == 1);
  CHECK(tickers[0].key == "ETH-USD");
  CHECK(tickers[0].value ==
        R"({"product":"ETH-USD","price":"1285.22","best_bid":"1285.04","best_ask":"1285.27",)"
        R"("time":"2026-11-30T14:03:07.123456Z","sequence":7})");
}

TEST_CASE("wss: the server's certificate is verified against the extra CA file") {
  const auto directory = temp_directory("tls-ok");
  const auto certificate = test::make_certificate(directory, "localhost");
  Harness h;
  FeedServer server(
      h.io,
      [](FeedConnection& c) -> Task<void> {
        std::vector<std::string> script = {match(1)};
        co_await send_all(c, std::move(script));
      },
      certificate);
  h.config.ingester_source = server.url();
  REQUIRE(h.config.ingester_source.starts_with("wss://localhost:"));
  h.config.ingester_ca_file = certificate.certificate.string();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 1; }));
  CHECK(server.subscribes().size() == 1);
  h.stop();
  CHECK(h.read(kTrades, 1).at(0).value == trade_record(1));
  std::filesystem::remove_all(directory);
}

TEST_CASE("wss: a certificate for another host name is refused") {
  const auto directory = temp_directory("tls-wrong-host");
  const auto certificate = test::make_certificate(directory, "wrong.example");
  Harness h;
  FeedServer server(
      h.io,
      [](FeedConnection& c) -> Task<void> {
        std::vector<std::string> script = {match(1)};
        co_await send_all(c, std::move(script));
      },
      certificate);
  h.config.ingester_source = server.url();
  h.config.ingester_ca_file = certificate.certificate.string();  // trusted, but not for localhost
  h.start();
  REQUIRE(h.wait_for([&] { return errors(h, "handshake_failed") >= 2; }));
  CHECK(server.subscribes().empty());
  CHECK(h.published(kTrades) == 0);
  CHECK(h.value("mesh_ingester_connected") == 0);
  CHECK(h.value("mesh_ingester_reconnects_total") >= 1);
  h.stop();
  std::filesystem::remove_all(directory);
}

TEST_CASE("wss: a certificate from no trusted CA is refused") {
  const auto directory = temp_directory("tls-untrusted");
  const auto certificate = test::make_certificate(directory, "localhost");
  Harness h;
  FeedServer server(
      h.io,
      [](FeedConnection& c) -> Task<void> {
        std::vector<std::string> script = {match(1)};
        co_await send_all(c, std::move(script));
      },
      certificate);
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return errors(h, "handshake_failed") >= 1; }));
  CHECK(server.subscribes().empty());
  CHECK(h.published(kTrades) == 0);
  h.stop();
  std::filesystem::remove_all(directory);
}

TEST_CASE("gaps from trade ids and heartbeats are counted; an error message causes a reconnect") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    if (c.index() == 0) {
      std::vector<std::string> script = {
          match(1), match(4), heartbeat(6),
          R"({"type":"error","message":"Failed to subscribe","reason":"nope"})"};
      co_await send_all(c, std::move(script));
    } else {
      std::vector<std::string> script = {match(6, "BTC-USD", "last_match"), match(7)};
      co_await send_all(c, std::move(script));
    }
  });
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 3; }));
  CHECK(h.value("mesh_ingester_trade_gaps_total", {{"product", "BTC-USD"}}) == 2);
  CHECK(h.value("mesh_ingester_missing_trades_total", {{"product", "BTC-USD"}}) == 4);
  CHECK(messages(h, "error") == 1);
  CHECK(errors(h, "refused") == 1);
  CHECK(h.value("mesh_ingester_reconnects_total") == 1);
  CHECK(messages(h, "last_match") == 1);
  CHECK(dropped(h, "duplicate") == 1);
  CHECK(server.subscribes().size() == 2);
  h.stop();
  const auto trades = h.read(kTrades, 3);
  CHECK(Harness::values(trades, "BTC-USD") ==
        std::vector<std::string>{trade_record(1), trade_record(4), trade_record(7)});
}

TEST_CASE("an abrupt disconnect: reconnect, resubscribe, and the replayed trades are dropped") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    if (c.index() == 0) {
      for (int id = 1; id <= 3; ++id) co_await c.send(match(id));
      co_return;  // the server drops the TCP connection
    }
    std::vector<std::string> script = {match(3, "BTC-USD", "last_match"), match(2), match(3),
                                       match(4), match(5)};
    co_await send_all(c, std::move(script));
  });
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 5; }));
  REQUIRE(h.wait_for([&] { return dropped(h, "duplicate") == 3; }));
  CHECK(errors(h, "closed") == 1);
  CHECK(h.value("mesh_ingester_reconnects_total") == 1);
  CHECK(h.value("mesh_ingester_trade_gaps_total", {{"product", "BTC-USD"}}) == 0);
  const auto subscribes = server.subscribes();
  REQUIRE(subscribes.size() == 2);
  CHECK(subscribes[0] == subscribes[1]);
  h.stop();
  const auto trades = h.read(kTrades, 5);
  CHECK(Harness::values(trades, "BTC-USD") ==
        std::vector<std::string>{trade_record(1), trade_record(2), trade_record(3), trade_record(4),
                                 trade_record(5)});
}

TEST_CASE("silence past the deadline closes the connection and reconnects") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    if (c.index() == 0) {
      co_await c.wait_closed();  // says nothing
    } else {
      std::vector<std::string> script = {match(1)};
      co_await send_all(c, std::move(script));
    }
  });
  h.config.ingester_source = server.url();
  h.config.ingester_silence_timeout = 300ms;
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 1; }));
  CHECK(errors(h, "silence") >= 1);
  CHECK(server.subscribes().size() >= 2);
  h.stop();
}

TEST_CASE("garbage, malformed, oversized and wrong-typed frames are counted; the feed goes on") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    co_await c.send("garbage{");
    co_await c.send_binary(std::string("\x00\xff\xfe\x01", 4));
    co_await c.send("[1]");
    co_await c.send(R"({"type":"match"})");
    co_await c.send(std::string(70 * 1024, '{'));
    std::string wrong = match(1);
    wrong.replace(wrong.find(R"("price":"400.1")"), 15, R"("price":400.1)");
    co_await c.send(wrong);
    co_await c.send(R"({"type":"status","products":[]})");
    std::vector<std::string> script = {match(1)};
    co_await send_all(c, std::move(script));
  });
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 1; }));
  CHECK(dropped(h, "malformed") == 4);
  CHECK(dropped(h, "oversized") == 1);
  CHECK(dropped(h, "wrong_type") == 1);
  CHECK(messages(h, "unknown") == 1);
  CHECK(messages(h, "match") == 3);  // {"type":"match"}, the wrong-typed one and the good one
  CHECK(server.connections() == 1);
  h.stop();
  CHECK(h.read(kTrades, 1).at(0).value == trade_record(1));
}

TEST_CASE("a frame above read_message_max ends the connection; the ingester reconnects") {
  Harness h;
  FeedServer server(h.io, [](FeedConnection& c) -> Task<void> {
    if (c.index() == 0) {
      std::vector<std::string> script = {std::string(1536 * 1024, ' ')};
      co_await send_all(c, std::move(script));
    } else {
      std::vector<std::string> script = {match(1)};
      co_await send_all(c, std::move(script));
    }
  });
  h.config.ingester_source = server.url();
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 1; }));
  CHECK(errors(h, "too_big") == 1);
  CHECK(server.subscribes().size() == 2);
  h.stop();
}

TEST_CASE("Kafka unavailable: in-flight records are bounded, the newest dropped and counted") {
  Harness h;
  const int total = static_cast<int>(Ingester::kMaxInFlight) + 100;
  FeedServer server(h.io, [total](FeedConnection& c) -> Task<void> {
    for (int id = 1; id <= total; ++id) {
      const bool sent = co_await c.send(match(id));
      if (!sent) co_return;
    }
    co_await c.wait_closed();
  });
  h.config.ingester_source = server.url();
  h.cluster.set_broker_down(1, true);
  h.start({{"message.timeout.ms", "15000"}});
  REQUIRE(h.wait_for([&] { return messages(h, "match") == total; }));
  CHECK(h.value("mesh_ingester_in_flight") <= static_cast<double>(Ingester::kMaxInFlight));
  // Every record is accounted for: dropped at once, or failed when its delivery timed out.
  REQUIRE(h.wait_for([&] {
    return dropped(h, "backpressure") +
               h.value("mesh_ingester_publish_failures_total", {{"topic", kTrades}}) ==
           total;
  }));
  CHECK(dropped(h, "backpressure") >= 1);
  CHECK(h.published(kTrades) == 0);
  CHECK(h.value("mesh_ingester_in_flight") == 0);
  h.stop();
}

TEST_CASE("replay: every line goes through the parser and is published in order") {
  const auto directory = temp_directory("replay");
  const auto file = directory / "feed.jsonl";
  {
    std::ofstream out(file, std::ios::binary);
    out << R"({"type":"subscriptions","channels":[]})"
        << "\n\n";
    for (int id = 1; id <= 500; ++id) {
      out << match(id) << (id == 7 ? "\r\n" : "\n");
      out << ticker(id * 3 + 1, "ETH-USD") << "\n";
    }
    out << "not json\n" << std::string(kMaxFeedMessageBytes + 10, ' ') << "\n";
    out << match(501);  // no newline at the end
  }
  Harness h;
  h.config.ingester_source = "replay:" + file.string();
  h.config.ingester_replay_speed = 0;
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 501 && h.published(kTicker) == 500; }));
  REQUIRE(h.wait_for([&] { return dropped(h, "oversized") == 1; }));
  CHECK(dropped(h, "malformed") == 1);
  CHECK(messages(h, "subscriptions") == 1);
  // At the end of the file the ingester stays idle and healthy until stopped.
  CHECK_FALSE(h.finished);
  CHECK(h.ingester->healthy());
  h.stop();
  const auto trades = h.read(kTrades, 501);
  std::vector<std::string> expected;
  for (int id = 1; id <= 501; ++id) expected.push_back(trade_record(id));
  CHECK(Harness::values(trades, "BTC-USD") == expected);
  std::filesystem::remove_all(directory);
}

TEST_CASE("replay is paced by the messages' times; stop() interrupts the wait") {
  const auto directory = temp_directory("replay-paced");
  const auto file = directory / "feed.jsonl";
  {
    std::ofstream out(file, std::ios::binary);
    out << match(1, "BTC-USD", "match", "2026-11-30T14:00:00.000000Z") << "\n";
    out << match(2, "BTC-USD", "match", "2026-11-30T15:00:00.000000Z") << "\n";  // an hour later
  }
  Harness h;
  h.config.ingester_source = "replay:" + file.string();
  h.config.ingester_replay_speed = 1;
  h.start();
  REQUIRE(h.wait_for([&] { return h.published(kTrades) == 1; }));
  CHECK(h.value("mesh_ingester_connected") == 1);  // delivering, waiting for the next time
  h.stop();
  CHECK(h.value("mesh_ingester_connected") == 0);
  CHECK(messages(h, "match") == 1);  // the second one was still waiting for its time
  std::filesystem::remove_all(directory);
}

TEST_CASE("replay of a missing file: logged, idle, healthy, stops on request") {
  Harness h;
  h.config.ingester_source = "replay:/nonexistent/feed.jsonl";
  h.start();
  CHECK(h.wait_for([&] {
    return h.value("mesh_ingester_last_trade_age_seconds", {{"product", "BTC-USD"}}) >= 0;
  }));
  CHECK_FALSE(h.finished);
  CHECK(h.ingester->healthy());
  h.stop();
}

TEST_CASE("synthetic: contiguous random-walk trades for every configured product") {
  Harness h;
  h.config.ingester_source = "synthetic";
  h.start();
  REQUIRE(h.wait_for([&] {
    return h.value("mesh_ingester_messages_total", {{"type", "match"}}) >= 10 &&
           h.value("mesh_ingester_messages_total", {{"type", "heartbeat"}}) >= 2;
  }));
  // A generated source counts as connected while it runs, and not after.
  CHECK(h.value("mesh_ingester_connected") == 1);
  h.stop();
  CHECK(h.value("mesh_ingester_connected") == 0);
  const auto count = static_cast<std::size_t>(h.published(kTrades));
  CHECK(count == static_cast<std::size_t>(messages(h, "match")));
  CHECK(h.published(kTicker) == static_cast<double>(count));
  CHECK(h.value("mesh_ingester_missing_trades_total", {{"product", "BTC-USD"}}) == 0);
  const auto trades = h.read(kTrades, count);
  REQUIRE(trades.size() == count);
  // Ids are contiguous and start at the feed's start time in microseconds, so a restarted
  // synthetic feed never reuses an id already stored.
  const auto started = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  for (const std::string product : {"BTC-USD", "ETH-USD"}) {
    std::int64_t expected_id = 0;
    for (const auto& value : Harness::values(trades, product)) {
      const auto decoded = market::decode_trade(value);
      REQUIRE(std::holds_alternative<market::Trade>(decoded));
      const auto& trade = std::get<market::Trade>(decoded);
      CHECK(trade.product == product);
      if (expected_id == 0) {
        CHECK(trade.trade_id > started - 3'600'000'000);  // within the last hour
        CHECK(trade.trade_id <= started);
        expected_id = trade.trade_id;
      }
      CHECK(trade.trade_id == expected_id++);
    }
  }
}

TEST_CASE("an unusable source is logged; the ingester idles until stopped") {
  Harness h;
  h.config.ingester_source = "ftp://example.com";
  h.start();
  h.stop();
  CHECK(h.ingester->healthy());
}

}  // namespace
}  // namespace mesh::ingest

namespace mesh::ingest {
namespace {

// Accepts TCP connections and never answers: the websocket handshake must time out.
Task<void> accept_and_hold(asio::ip::tcp::acceptor& acceptor,
                           std::vector<asio::ip::tcp::socket>& held) {
  while (true) {
    error_code ec;
    auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    held.push_back(std::move(socket));
  }
}

TEST_CASE("a server that never completes the handshake: deadline, then reconnect") {
  Harness h;
  asio::ip::tcp::acceptor acceptor(h.io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<asio::ip::tcp::socket> held;
  asio::co_spawn(h.io, accept_and_hold(acceptor, held), asio::detached);
  h.config.ingester_source = "ws://localhost:" + std::to_string(acceptor.local_endpoint().port());
  h.start();
  REQUIRE(h.wait_for([&] { return errors(h, "handshake_failed") >= 1; }));
  REQUIRE(h.wait_for([&] { return held.size() >= 2; }));
  // stop() interrupts the handshake now in progress.
  h.stop();
  CHECK(h.value("mesh_ingester_connected") == 0);
  acceptor.close();
}

TEST_CASE("a refused connection is counted and retried") {
  Harness h;
  unsigned short port = 0;
  {
    asio::ip::tcp::acceptor closed(h.io, {asio::ip::make_address("127.0.0.1"), 0});
    port = closed.local_endpoint().port();
  }
  h.config.ingester_source = "ws://127.0.0.1:" + std::to_string(port);
  h.start();
  REQUIRE(h.wait_for([&] { return errors(h, "connect_failed") >= 2; }));
  CHECK(h.value("mesh_ingester_reconnects_total") >= 1);
  h.stop();
}

}  // namespace
}  // namespace mesh::ingest
