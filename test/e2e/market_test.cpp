// The market pipeline as separate processes, as it is deployed: ingester (synthetic feed),
// consumer, stream and gateway (forwarding /v1/stream/* to the stream role) on one
// mesh-kafka-mock. A browser-like SSE client reads live trades through the gateway while the
// consumer is killed with SIGKILL and replaced; afterwards every trade the ingester published is
// in Postgres exactly once.
#include <catch2/catch.hpp>

#include <array>
#include <csignal>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <librdkafka/rdkafka.h>

#include "cluster.hpp"
#include "mesh/market/events.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::e2e {
namespace {

using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Reads an SSE response until `enough` trades arrived or the deadline passed.
std::vector<market::Trade> read_sse_trades(unsigned short port, const std::string& target,
                                           std::size_t enough, std::chrono::milliseconds deadline,
                                           std::string& head) {
  boost::asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string stream;
  std::vector<market::Trade> trades;
  std::array<char, 8192> chunk{};
  const auto until = Clock::now() + deadline;
  std::size_t parsed = 0;
  while (trades.size() < enough && Clock::now() < until) {
    bool finished = false;
    boost::system::error_code error;
    socket.async_read_some(boost::asio::buffer(chunk),
                           [&](boost::system::error_code ec, std::size_t n) {
                             stream.append(chunk.data(), n);
                             error = ec;
                             finished = true;
                           });
    io.restart();
    io.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    if (!finished) break;
    if (error) break;
    for (auto end = stream.find("\n\n", parsed); end != std::string::npos;
         end = stream.find("\n\n", parsed)) {
      const std::string frame = stream.substr(parsed, end - parsed);
      parsed = end + 2;
      const auto data = frame.find("data: ");
      if (frame.find("event: trade\n") == std::string::npos || data == std::string::npos) continue;
      auto decoded = market::decode_trade(frame.substr(data + 6));
      if (auto* trade = std::get_if<market::Trade>(&decoded)) trades.push_back(*trade);
    }
  }
  head = stream.substr(0, stream.find("\r\n\r\n"));
  return trades;
}

// The number of records in every partition of `topic` (high minus low watermark), straight from
// the brokers.
long long records_in_topic(const std::string& bootstrap, const std::string& topic) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof error) !=
      RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(error);
  }
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  if (handle == nullptr) throw std::runtime_error(error);
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* topic_handle = rd_kafka_topic_new(handle, topic.c_str(), nullptr);
  const auto fetched = rd_kafka_metadata(handle, 0, topic_handle, &metadata, 10'000);
  rd_kafka_topic_destroy(topic_handle);
  if (fetched != RD_KAFKA_RESP_ERR_NO_ERROR || metadata->topic_cnt != 1) {
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    rd_kafka_destroy(handle);
    throw std::runtime_error("no metadata for " + topic + ": " + rd_kafka_err2str(fetched));
  }
  long long total = 0;
  for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
    int64_t low = 0, high = 0;
    const auto queried = rd_kafka_query_watermark_offsets(
        handle, topic.c_str(), metadata->topics[0].partitions[i].id, &low, &high, 10'000);
    if (queried != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(metadata);
      rd_kafka_destroy(handle);
      throw std::runtime_error("watermarks of " + topic + ": " + rd_kafka_err2str(queried));
    }
    total += high - low;
  }
  rd_kafka_metadata_destroy(metadata);
  rd_kafka_destroy(handle);
  return total;
}

// Polls a database condition (every 100 ms) until it holds or the deadline passes.
bool wait_db(const std::function<bool()>& condition, std::chrono::milliseconds deadline) {
  return testing::wait_until(condition, deadline, 100ms);
}

}  // namespace

TEST_CASE("e2e: market data flows through separate roles; a killed consumer loses no trade",
          "[e2e][market]") {
  Cluster cluster("market");
  auto& stream = cluster.start("stream", "stream");
  cluster.wait_ready(stream);
  auto& gateway = cluster.start("gateway", "gateway",
                                {"--stream-url=http://127.0.0.1:" + std::to_string(stream.port)});
  auto& consumer = cluster.start("consumer-1", "consumer");
  cluster.wait_ready(gateway);
  cluster.wait_ready(consumer);
  auto& ingester = cluster.start("ingester", "ingester", {"--ingester-source=synthetic"});
  cluster.wait_ready(ingester);
  PgConnection db(cluster.pg_url());

  // Live trades through the gateway's forwarding to the stream role.
  std::string head;
  const auto live = read_sse_trades(gateway.port, "/v1/stream/markets/ETH-USD", 3, 90s, head);
  INFO(cluster.diagnostics());
  REQUIRE(live.size() >= 3);
  CHECK(head.rfind("HTTP/1.1 200", 0) == 0);
  for (const auto& trade : live) CHECK(trade.product == "ETH-USD");

  // The consumer stores trades; kill it mid-stream and start another.
  REQUIRE(wait_db([&] { return db.count("SELECT count(*) FROM trades") >= 10; }, 90s));
  const auto stored_before = db.count("SELECT count(*) FROM trades");
  cluster.mark_killed(consumer);
  const auto killed = consumer.process->kill_now();
  REQUIRE(killed.signaled());
  auto& replacement = cluster.start("consumer-2", "consumer");
  cluster.wait_ready(replacement);
  REQUIRE(
      wait_db([&] { return db.count("SELECT count(*) FROM trades") >= stored_before + 20; }, 120s));

  // Stop the feed, then everything it published is stored exactly once: the synthetic source
  // numbers trades contiguously per product, so no gap and no duplicate means count equals the
  // id range, and the total equals the records in the topic.
  ingester.process->send(SIGTERM);
  const auto ingester_exit = ingester.process->wait(60s);
  cluster.mark_killed(ingester);
  REQUIRE(ingester_exit);
  CHECK((ingester_exit->exited() && ingester_exit->exit_code() == 0));
  // Every record the ingester published (it flushed before exiting) is a distinct trade.
  const long long published = records_in_topic(cluster.bootstrap(), market::kTradesTopic);
  CHECK(published > stored_before);
  std::string last_check;
  const bool complete = wait_db(
      [&] {
        const auto rows = db.query(
            "SELECT product, count(*)::text, min(trade_id)::text, max(trade_id)::text FROM trades "
            "GROUP BY product ORDER BY product");
        last_check = "published " + std::to_string(published) + "; ";
        bool ok = rows.size() == 2;
        long long stored = 0;
        for (const auto& row : rows) {
          last_check += *row[0] + " count " + *row[1] + " ids " + *row[2] + ".." + *row[3] + "; ";
          ok = ok && std::stoll(*row[1]) == std::stoll(*row[3]) - std::stoll(*row[2]) + 1;
          stored += std::stoll(*row[1]);
        }
        return ok && stored == published;
      },
      120s);
  INFO(last_check);
  CHECK(complete);
  // Candles account for every stored trade exactly once.
  CHECK(db.count("SELECT count(*) FROM trades") ==
        db.count("SELECT coalesce(sum(trades), 0) FROM candles_1m"));
  CHECK(db.count("SELECT count(*) FROM (SELECT c.product, c.start FROM candles_1m c JOIN "
                 "(SELECT product, date_trunc('minute', time) AS start, sum(size) AS volume, "
                 "max(price) AS high, min(price) AS low FROM trades GROUP BY 1, 2) t USING "
                 "(product, start) WHERE c.volume <> t.volume OR c.high <> t.high OR c.low <> "
                 "t.low) mismatched") == 0);
  CHECK(cluster.unexpected_exits().empty());
}

}  // namespace mesh::e2e
