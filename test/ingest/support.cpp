#include "support.hpp"

#include <chrono>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "mesh/market/events.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/metrics.hpp"

namespace mesh::ingest::test {

using namespace std::chrono_literals;

namespace {

constexpr int kPartitions = 3;

kafka::ClientConfig client_config(const kafka::MockCluster& cluster, kafka::Properties extra) {
  kafka::ClientConfig config{cluster.bootstrap(), "mesh-ingest-test",
                             kafka::MockCluster::client_properties()};
  for (auto& [key, value] : extra) config.properties[key] = value;
  return config;
}

}  // namespace

std::string match(std::int64_t trade_id, const std::string& product, const std::string& type,
                  const std::string& time) {
  return R"({"type":")" + type + R"(","trade_id":)" + std::to_string(trade_id) + R"(,"sequence":)" +
         std::to_string(trade_id * 3) +
         R"(,"maker_order_id":"ac928c66","taker_order_id":"132fb6ae","time":")" + time +
         R"(","product_id":")" + product + R"(","size":"0.00)" + std::to_string(trade_id) +
         R"(","price":"400.)" + std::to_string(trade_id % 100) + R"(","side":"sell"})";
}

std::string ticker(std::int64_t sequence, const std::string& product, const std::string& time) {
  return R"({"type":"ticker","sequence":)" + std::to_string(sequence) + R"(,"product_id":")" +
         product +
         R"(","price":"1285.22","open_24h":"1310.79","best_bid":"1285.04",)"
         R"("best_ask":"1285.27","side":"buy","time":")" +
         time + R"(","trade_id":370843401,"last_size":"0.00"})";
}

std::string heartbeat(std::int64_t last_trade_id, const std::string& product) {
  return R"({"type":"heartbeat","sequence":90,"last_trade_id":)" + std::to_string(last_trade_id) +
         R"(,"product_id":")" + product + R"(","time":"2026-11-30T14:03:08.000001Z"})";
}

std::string trade_record(std::int64_t trade_id, const std::string& product) {
  return R"({"product":")" + product + R"(","trade_id":)" + std::to_string(trade_id) +
         R"(,"price":"400.)" + std::to_string(trade_id % 100) + R"(","size":"0.00)" +
         std::to_string(trade_id) + R"(","side":"sell","time":"2026-11-30T14:03:07.123456Z",)" +
         R"("sequence":)" + std::to_string(trade_id * 3) + "}";
}

Harness::Harness() {
  cluster.create_topic(market::kTradesTopic, kPartitions);
  cluster.create_topic(market::kTickerTopic, kPartitions);
  config.ingester_products = {"BTC-USD", "ETH-USD"};
  config.ingester_silence_timeout = 10s;
}

Harness::~Harness() {
  if (ingester && !finished) {
    ingester->stop();
    wait_for([this] { return finished; });
  }
  ingester.reset();
  producer.reset();
}

void Harness::start(kafka::Properties producer_properties) {
  producer = std::make_unique<kafka::Producer>(
      io.get_executor(), client_config(cluster, std::move(producer_properties)), registry);
  ingester = std::make_unique<Ingester>(io.get_executor(), config, *producer, registry);
  asio::co_spawn(io, ingester->run(), [this](std::exception_ptr e) {
    error = e;
    finished = true;
  });
}

bool Harness::wait_for(const std::function<bool()>& done) {
  return testing::run(io, testing::eventually(done, 30s), 40s);
}

double Harness::value(const std::string& name, const std::map<std::string, std::string>& labels) {
  return testing::metric(registry, name, labels).value_or(0);
}

double Harness::published(const char* topic) {
  return value("mesh_ingester_published_total", {{"topic", topic}});
}

void Harness::stop() {
  ingester->stop();
  REQUIRE(wait_for([this] { return finished; }));
  if (error) std::rethrow_exception(error);
  // Records produced before the stop still complete.
  REQUIRE(wait_for([this] { return value("mesh_ingester_in_flight") == 0; }));
}

std::vector<Record> Harness::read(const std::string& topic, std::size_t count) {
  auto conf = kafka::make_conf(client_config(
      cluster, {{"group.id", "ingest-test-reader"}, {"enable.auto.commit", "false"}}));
  char errstr[512];
  kafka::HandlePtr consumer(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr));
  REQUIRE(consumer);
  conf.release();
  kafka::PartitionListPtr assignment(rd_kafka_topic_partition_list_new(kPartitions));
  for (int p = 0; p < kPartitions; ++p) {
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  REQUIRE(rd_kafka_assign(consumer.get(), assignment.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
  std::vector<Record> out;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
    kafka::MessagePtr message(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!message || message->err) continue;
    out.push_back(Record{std::string(static_cast<const char*>(message->key), message->key_len),
                         std::string(static_cast<const char*>(message->payload), message->len)});
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

std::vector<std::string> Harness::values(const std::vector<Record>& records,
                                         const std::string& key) {
  std::vector<std::string> out;
  for (const auto& record : records) {
    if (record.key == key) out.push_back(record.value);
  }
  return out;
}

}  // namespace mesh::ingest::test
