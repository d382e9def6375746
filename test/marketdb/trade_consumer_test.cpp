// marketdb::TradeConsumer against librdkafka's mock cluster and a real Postgres: what is
// published to market.trades ends up in Postgres exactly once, with exact candles, whatever is
// redelivered; poison records go to market.dlq; offsets are committed only after the database
// commit.
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/marketdb/trade_consumer.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

namespace mesh::marketdb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double metric(prometheus::Registry& registry, const std::string& name,
              const std::string& label_value = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& sample : family.metric) {
      const bool matches =
          label_value.empty() ||
          std::any_of(sample.label.begin(), sample.label.end(),
                      [&](const auto& label) { return label.value == label_value; });
      if (matches) return sample.counter.value;
    }
  }
  return 0;
}

// Polls `done` (which may query Postgres) until it holds; false after `timeout`.
Task<bool> eventually(std::function<Task<bool>()> done, std::chrono::milliseconds timeout = 60s) {
  const auto deadline = Clock::now() + timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    const bool met = co_await done();
    if (met) co_return true;
    if (Clock::now() >= deadline) co_return false;
    timer.expires_after(20ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

Task<void> produce_one(kafka::Producer& producer, std::string key, std::string value,
                       int& pending) {
  const auto result = co_await producer.produce(market::kTradesTopic, key, value);
  CHECK_FALSE(result);
  --pending;
}

struct Fixture {
  Fixture() : db(io, registry), cluster(1) {
    cluster.create_topic(market::kTradesTopic, 3);
    cluster.create_topic(market::kDeadLetterTopic, 1);
    kafka_config.brokers = cluster.bootstrap();
    kafka_config.client_id = "marketdb-test";
    kafka_config.properties = kafka::MockCluster::client_properties();
    producer = std::make_unique<kafka::Producer>(io.get_executor(), kafka_config, registry);
    config.consumer_batch_size = 64;
  }

  // Produces every record concurrently (keyed by product, as the ingester does) and waits for
  // every acknowledgement.
  void publish(const std::vector<std::pair<std::string, std::string>>& records) {
    int pending = static_cast<int>(records.size());
    for (const auto& [key, value] : records) {
      asio::co_spawn(io, produce_one(*producer, key, value, pending), asio::detached);
    }
    REQUIRE(testing::wait_until(
        [&] {
          io.restart();
          io.run_for(5ms);
          return pending == 0;
        },
        30s));
  }

  void publish(const std::vector<market::Trade>& trades) {
    std::vector<std::pair<std::string, std::string>> records;
    for (const auto& trade : trades) records.emplace_back(trade.product, market::encode(trade));
    publish(records);
  }

  // Starts a consumer; `finished` is set when its run() returns.
  std::unique_ptr<TradeConsumer> start(prometheus::Registry& consumer_registry, bool& finished) {
    auto consumer = std::make_unique<TradeConsumer>(io.get_executor(), config, kafka_config,
                                                    *db.pool, *producer, consumer_registry);
    asio::co_spawn(io, consumer->run(), [&finished](std::exception_ptr error) {
      CHECK_FALSE(error);
      finished = true;
    });
    return consumer;
  }

  void stop(TradeConsumer& consumer, bool& finished) {
    consumer.stop();
    REQUIRE(testing::wait_until(
        [&] {
          io.restart();
          io.run_for(5ms);
          return finished;
        },
        60s));
  }

  Task<std::int64_t> stored_count() {
    const pg::Result rows = co_await db.pool->query("SELECT count(*) FROM trades");
    co_return std::stoll(std::string(rows.get(0, 0)));
  }

  bool wait_for_stored(std::int64_t count) {
    return testing::run(io, eventually([&]() -> Task<bool> {
                          const std::int64_t stored = co_await stored_count();
                          co_return stored == count;
                        }));
  }

  asio::io_context io;
  prometheus::Registry registry;
  Database db;
  kafka::MockCluster cluster;
  kafka::ClientConfig kafka_config;
  std::unique_ptr<kafka::Producer> producer;
  config::Config config;
};

TEST_CASE("consumer: stores what was published once, candles exact; poison records dead-lettered",
          "[marketdb][consumer]") {
  Fixture f;
  testing::run(f.io,
               f.db.pool->execute_script(
                   "ALTER TABLE trades ADD CONSTRAINT test_price_cap CHECK (price < 1000000)"));
  const auto trades = make_trades({"BTC-USD", "ETH-USD"}, 300);
  // A trade Postgres refuses (the test's CHECK), and a record that is not a trade at all.
  market::Trade refused = trades[10];
  refused.trade_id = 999'999;
  refused.price = "2000000.00";
  const std::string poison = R"({"product":"BTC-USD","trade_id":"seven"})";

  std::vector<std::pair<std::string, std::string>> records;
  for (const auto& trade : trades) records.emplace_back(trade.product, market::encode(trade));
  records.emplace_back("BTC-USD", poison);
  records.emplace_back(refused.product, market::encode(refused));
  // An overlapping feed: the first hundred again.
  for (std::size_t i = 0; i < 100; ++i) {
    records.emplace_back(trades[i].product, market::encode(trades[i]));
  }
  f.publish(records);

  prometheus::Registry consumer_registry;
  bool finished = false;
  auto consumer = f.start(consumer_registry, finished);
  REQUIRE(f.wait_for_stored(static_cast<std::int64_t>(trades.size())));
  REQUIRE(testing::wait_until(
      [&] {
        f.io.restart();
        f.io.run_for(5ms);
        return metric(consumer_registry, "mesh_consumer_dead_letters_total", "refused") == 1 &&
               metric(consumer_registry, "mesh_consumer_duplicates_total") == 100;
      },
      60s));
  f.stop(*consumer, finished);

  testing::run(f.io, check_database_matches(*f.db.pool, trades));
  CHECK(metric(consumer_registry, "mesh_consumer_trades_stored_total") == 600);
  CHECK(metric(consumer_registry, "mesh_consumer_dead_letters_total", "undecodable") == 1);

  // Both are on market.dlq with their reason and the original record.
  prometheus::Registry reader_registry;
  std::vector<kafka::Message> dead;
  testing::run(
      f.io,
      [&]() -> Task<void> {
        const std::vector<std::string> topics{market::kDeadLetterTopic};
        kafka::Consumer reader(f.io.get_executor(), f.kafka_config, "dlq-reader", topics,
                               reader_registry);
        const auto deadline = Clock::now() + 30s;
        while (dead.size() < 2 && Clock::now() < deadline) {
          auto batch = co_await reader.poll_batch(10, 200ms);
          for (auto& message : batch) dead.push_back(std::move(message));
        }
        co_await reader.close();
      }(),
      60s);
  REQUIRE(dead.size() == 2);
  std::set<std::string> originals;
  for (const auto& message : dead) {
    const auto body = boost::json::parse(message.value);
    originals.insert(std::string(body.at("record").as_string()));
    CHECK(body.at("source_topic") == market::kTradesTopic);
    CHECK(!body.at("reason").as_string().empty());
  }
  CHECK(originals == std::set<std::string>{poison, market::encode(refused)});
}

TEST_CASE("consumer: offsets are committed after the database commit; a restart loses nothing",
          "[marketdb][consumer]") {
  Fixture f;
  f.config.pg_timeout = 1000ms;
  const auto all = make_trades({"BTC-USD", "ETH-USD"}, 200, 1, 5, 21);
  std::vector<market::Trade> first, second;
  for (const auto& trade : all) (trade.trade_id <= 100 ? first : second).push_back(trade);
  // The second feed overlaps the first by its last 25 trades of each product.
  for (const auto& trade : first) {
    if (trade.trade_id > 75) second.push_back(trade);
  }

  f.publish(first);
  prometheus::Registry registry_a;
  bool finished_a = false;
  auto consumer_a = f.start(registry_a, finished_a);
  REQUIRE(f.wait_for_stored(static_cast<std::int64_t>(first.size())));

  // Postgres stops accepting trades (a lock held elsewhere): the consumer retries, and stops
  // while it still cannot store the second feed.
  std::optional<pg::Lease> holder;
  testing::run(f.io, [&]() -> Task<void> {
    pg::Lease lease = co_await f.db.pool->acquire();
    co_await lease.query("BEGIN");
    co_await lease.query("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE");
    holder.emplace(std::move(lease));
  }());
  f.publish(second);
  REQUIRE(testing::wait_until(
      [&] {
        f.io.restart();
        f.io.run_for(5ms);
        return metric(registry_a, "mesh_consumer_store_failures_total") >= 1;
      },
      60s));
  f.stop(*consumer_a, finished_a);
  testing::run(f.io, holder->rollback());
  holder.reset();
  CHECK(testing::run(f.io, f.stored_count()) == static_cast<std::int64_t>(first.size()));

  // A new consumer in the group gets every uncommitted record again and stores each trade once.
  prometheus::Registry registry_b;
  bool finished_b = false;
  auto consumer_b = f.start(registry_b, finished_b);
  REQUIRE(f.wait_for_stored(static_cast<std::int64_t>(all.size())));
  REQUIRE(testing::wait_until(
      [&] {
        f.io.restart();
        f.io.run_for(5ms);
        return metric(registry_b, "mesh_consumer_trades_stored_total") +
                   metric(registry_b, "mesh_consumer_duplicates_total") ==
               static_cast<double>(second.size());
      },
      60s));
  f.stop(*consumer_b, finished_b);
  CHECK(metric(registry_b, "mesh_consumer_trades_stored_total") ==
        static_cast<double>(all.size() - first.size()));
  CHECK(metric(registry_b, "mesh_consumer_duplicates_total") == 50);
  testing::run(f.io, check_database_matches(*f.db.pool, all));
}

}  // namespace
}  // namespace mesh::marketdb::test
