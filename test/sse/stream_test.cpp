#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
// The listener interface of Catch2 v2 is only declared with this.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/market/events.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/sse/stream_service.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

using namespace mesh;
using namespace mesh::sse;
using namespace mesh::sse::test;

namespace {

std::unique_ptr<kafka::MockCluster>& cluster_slot() {
  static std::unique_ptr<kafka::MockCluster> cluster;
  return cluster;
}

// Destroys the shared cluster while the rest of the process (loggers) is still alive.
struct ClusterReaper : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats&) override { cluster_slot().reset(); }
};
CATCH_REGISTER_LISTENER(ClusterReaper)

// One mock cluster with the market topics for every test here.
kafka::MockCluster& cluster() {
  auto& slot = cluster_slot();
  if (!slot) {
    slot = std::make_unique<kafka::MockCluster>(1);
    slot->create_topic(market::kTradesTopic, 2);
    slot->create_topic(market::kTickerTopic, 2);
  }
  return *slot;
}

kafka::ClientConfig client_config() {
  kafka::ClientConfig config;
  config.brokers = cluster().bootstrap();
  config.client_id = "mesh-sse-test";
  config.properties = kafka::MockCluster::client_properties();
  return config;
}

market::Trade trade(std::string product, std::int64_t sequence) {
  return market::Trade{std::move(product),
                       sequence * 10,
                       "27012.35",
                       "0.00120000",
                       market::Side::sell,
                       "2026-11-30T14:03:07.123456Z",
                       sequence};
}

struct StreamFixture {
  explicit StreamFixture(bool run_consumer = true) {
    config.ingester_products = {"BTC-USD", "ETH-USD"};
    service =
        std::make_unique<StreamService>(io.io().get_executor(), config, client_config(), *registry);
    auto router = std::make_shared<http::Router>();
    service->add_routes(*router);
    http::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.header_limit = 8 * 1024;
    server = std::make_unique<http::Server>(io.io().get_executor(), options, router, *registry);
    server->start();
    port = server->local_endpoint().port();
    if (run_consumer) running = asio::co_spawn(io.io(), service->run(), asio::use_future);
  }
  ~StreamFixture() {
    service->stop();
    if (running.valid()) running.wait_for(std::chrono::seconds(30));
    asio::co_spawn(io.io(), server->stop(std::chrono::seconds(5)), asio::use_future).get();
    testing::wait_until([this] { return service->hub().quiescent(); });
  }

  void produce(const std::string& topic, const std::string& key, const std::string& value) {
    const auto ec =
        asio::co_spawn(io.io(), producer.produce(topic, key, value), asio::use_future).get();
    REQUIRE_FALSE(ec);
  }

  testing::IoThread io{2};
  std::shared_ptr<prometheus::Registry> registry = metrics::make_registry();
  std::shared_ptr<prometheus::Registry> producer_registry = metrics::make_registry();
  config::Config config;
  std::unique_ptr<StreamService> service;
  std::unique_ptr<http::Server> server;
  kafka::Producer producer{io.io().get_executor(), client_config(), *producer_registry};
  unsigned short port = 0;
  std::future<void> running;
};

std::vector<Event> named(const std::vector<Event>& events, const std::string& name,
                         std::int64_t min_id) {
  std::vector<Event> out;
  for (const auto& event : events) {
    if (event.name == name && std::stoll(event.id) >= min_id) out.push_back(event);
  }
  return out;
}

}  // namespace

TEST_CASE("SSE clients receive live trades and tickers from Kafka, framed once per event") {
  StreamFixture f;
  SseClient btc(f.port, "/v1/stream/markets/BTC-USD");
  SseClient eth(f.port, "/v1/stream/markets/ETH-USD");
  REQUIRE(btc.wait_head());
  CHECK(btc.status() == 200);
  REQUIRE(testing::wait_until([&] { return f.service->clients() == 2; }));

  // The consumer reads from the latest offsets once it has its partitions: produce until
  // events flow.
  std::int64_t warm_up = 0;
  bool flowing = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!flowing && std::chrono::steady_clock::now() < deadline) {
    f.produce(market::kTradesTopic, "BTC-USD", market::encode(trade("BTC-USD", ++warm_up)));
    flowing = btc.wait([](const SseClient& c) { return !c.events_unlocked().empty(); },
                       std::chrono::milliseconds(500));
  }
  REQUIRE(flowing);
  CHECK(f.service->assigned());

  constexpr std::int64_t kFirst = 1000;
  constexpr int kTrades = 20;
  f.produce(market::kTradesTopic, "BTC-USD", "{not json");
  f.produce(market::kTickerTopic, "BTC-USD", R"({"product":"BTC-USD"})");
  for (int i = 0; i < kTrades; ++i) {
    f.produce(market::kTradesTopic, "BTC-USD", market::encode(trade("BTC-USD", kFirst + i)));
  }
  f.produce(market::kTradesTopic, "ETH-USD", market::encode(trade("ETH-USD", kFirst)));
  const market::Ticker ticker{
      "BTC-USD", "27013.00", "27012.99", "27013.01", "2026-11-30T14:03:08.000001Z", kFirst + 500};
  f.produce(market::kTickerTopic, "BTC-USD", market::encode(ticker));

  REQUIRE(btc.wait([&](const SseClient& c) {
    return named(c.events_unlocked(), "trade", kFirst).size() == kTrades &&
           !named(c.events_unlocked(), "ticker", 0).empty();
  }));
  REQUIRE(eth.wait([&](const SseClient& c) { return !c.events_unlocked().empty(); }));

  const auto events = btc.events();
  const auto trades = named(events, "trade", kFirst);
  for (int i = 0; i < kTrades; ++i) {
    CHECK(trades[i].id == std::to_string(kFirst + i));
    CHECK(trades[i].data == market::encode(trade("BTC-USD", kFirst + i)));
  }
  const auto tickers = named(events, "ticker", 0);
  REQUIRE(tickers.size() == 1);
  CHECK(tickers[0].id == std::to_string(kFirst + 500));
  CHECK(tickers[0].data == market::encode(ticker));
  for (const auto& event : events) CHECK(event.data.find("ETH-USD") == std::string::npos);

  const auto eth_events = eth.events();
  REQUIRE(eth_events.size() == 1);
  CHECK(eth_events[0].name == "trade");
  CHECK(eth_events[0].data == market::encode(trade("ETH-USD", kFirst)));

  CHECK(testing::wait_until([&] {
    return metric(*f.registry, "mesh_stream_bad_records_total",
                  {{"topic", market::kTradesTopic}}) == 1.0 &&
           metric(*f.registry, "mesh_stream_bad_records_total",
                  {{"topic", market::kTickerTopic}}) == 1.0;
  }));
  CHECK(metric(*f.registry, "mesh_stream_events_total", {{"event", "ticker"}}) == 1.0);
}

TEST_CASE("stream route: malformed product 400, unknown product 404, hostile requests") {
  StreamFixture f(false);
  const auto malformed = testing::http(f.port, {.target = "/v1/stream/markets/btc-usd"});
  CHECK(malformed.status == 400);
  CHECK(malformed.header("content-type") == "application/problem+json");
  CHECK(malformed.json().at("detail").as_string().find("btc-usd") != std::string::npos);

  const auto unknown = testing::http(f.port, {.target = "/v1/stream/markets/DOGE-USD"});
  CHECK(unknown.status == 404);
  CHECK(unknown.header("content-type") == "application/problem+json");

  const auto long_id = std::string(5000, 'A') + "-USD";
  const auto too_long = testing::http(f.port, {.target = "/v1/stream/markets/" + long_id});
  CHECK(too_long.status == 400);
  CHECK(too_long.body.size() < 1000);  // the id is not echoed whole

  const auto huge = testing::raw_exchange(
      f.port, "GET /v1/stream/markets/" + std::string(20'000, 'B') + " HTTP/1.1\r\n\r\n");
  CHECK(huge.bytes.rfind("HTTP/1.1 431", 0) == 0);
  const auto garbage =
      testing::raw_exchange(f.port, "GET /v1/stream/markets/BTC-USD HTTP/9.9 what\r\n\r\n");
  CHECK(garbage.bytes.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(f.service->clients() == 0);

  SseClient ok(f.port, "/v1/stream/markets/BTC-USD");
  REQUIRE(ok.wait_head());
  CHECK(ok.status() == 200);
}

TEST_CASE("stop() closes every client and ends the Kafka loop") {
  StreamFixture f;
  SseClient a(f.port, "/v1/stream/markets/BTC-USD");
  SseClient b(f.port, "/v1/stream/markets/ETH-USD");
  REQUIRE(testing::wait_until([&] { return f.service->clients() == 2; }));
  f.service->stop();
  CHECK(a.wait([](const SseClient& c) { return c.closed_unlocked(); }));
  CHECK(b.wait([](const SseClient& c) { return c.closed_unlocked(); }));
  CHECK(f.service->clients() == 0);
  REQUIRE(f.running.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  f.running.get();
}
