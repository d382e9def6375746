// The ingester's replay path, single thread: feed messages read from a JSONL file, parsed,
// normalized and produced to an in-process librdkafka mock cluster (acks=all, idempotent),
// counted when acknowledged. Baselines measured in the same run: Boost.JSON parsing the same
// lines (the floor any parser pays), and a bare librdkafka producer sending the same records.
// Built and run by bench/ingest_replay.sh.
//
//   ingest_replay FILE.jsonl MESSAGES RESULT.json
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include "mesh/config/config.hpp"
#include "mesh/core/log.hpp"
#include "mesh/ingest/feed.hpp"
#include "mesh/ingest/ingester.hpp"
#include "mesh/ingest/synthetic.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/market/events.hpp"

using namespace mesh;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Matches and tickers of two products in the exchange's schema, one millisecond apart.
std::vector<std::string> make_feed(std::size_t count) {
  ingest::SyntheticFeed feed({"BTC-USD", "ETH-USD"}, 7);
  std::vector<std::string> lines;
  lines.reserve(count);
  std::int64_t time = 1'764'511'200'000'000;  // 2025-11-30T14:00:00Z
  for (std::size_t i = 0; lines.size() < count; ++i) {
    for (auto& message : feed.trade(i % 2, time += 1000)) {
      if (lines.size() < count) lines.push_back(std::move(message));
    }
  }
  return lines;
}

double counter_sum(prometheus::Registry& registry, const std::string& name) {
  double sum = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) sum += metric.counter.value;
  }
  return sum;
}

struct DeliveryCount {
  std::size_t delivered = 0;
  std::size_t failed = 0;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  auto* count = static_cast<DeliveryCount*>(opaque);
  ++(message->err ? count->failed : count->delivered);
}

// The same records through a bare librdkafka producer with the settings kafka::Producer uses.
double bare_producer_rate(const kafka::MockCluster& cluster,
                          const std::vector<std::string>& lines) {
  ingest::FeedParser parser;
  struct Out {
    const char* topic;
    std::string key;
    std::string value;
  };
  std::vector<Out> records;
  records.reserve(lines.size());
  for (const auto& line : lines) {
    auto event = parser.parse(line);
    if (auto* trade = std::get_if<market::Trade>(&event.record)) {
      records.push_back({"bench.trades", trade->product, market::encode(*trade)});
    } else if (auto* ticker = std::get_if<market::Ticker>(&event.record)) {
      records.push_back({"bench.ticker", ticker->product, market::encode(*ticker)});
    }
  }
  kafka::ClientConfig config{cluster.bootstrap(), "bench-bare",
                             kafka::MockCluster::client_properties()};
  auto conf = kafka::make_conf(config, {{"acks", "all"},
                                        {"enable.idempotence", "true"},
                                        {"linger.ms", "1"},
                                        {"message.timeout.ms", "30000"},
                                        {"partitioner", "murmur2_random"}});
  DeliveryCount count;
  rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
  rd_kafka_conf_set_opaque(conf.get(), &count);
  char errstr[512];
  kafka::HandlePtr producer(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr));
  if (!producer) throw std::runtime_error(errstr);
  conf.release();
  const auto start = Clock::now();
  for (const auto& record : records) {
    while (true) {
      const auto err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(record.topic),
          RD_KAFKA_V_KEY(record.key.data(), record.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(record.value.data()), record.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) throw std::runtime_error(rd_kafka_err2str(err));
      rd_kafka_poll(producer.get(), 1);
    }
    rd_kafka_poll(producer.get(), 0);
  }
  if (rd_kafka_flush(producer.get(), 60'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error("bare producer: flush timed out");
  }
  const double elapsed = seconds_since(start);
  if (count.delivered != records.size()) {
    throw std::runtime_error("bare producer: " + std::to_string(count.failed) + " failed");
  }
  return static_cast<double>(records.size()) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: ingest_replay FILE.jsonl MESSAGES RESULT.json\n";
    return 2;
  }
  const std::string path = argv[1];
  const std::size_t count = std::stoul(argv[2]);
  const std::string result_path = argv[3];
  log::set_level("warn");

  const auto lines = make_feed(count);
  {
    std::ofstream out(path, std::ios::binary);
    for (const auto& line : lines) out << line << '\n';
    if (!out) throw std::runtime_error("cannot write " + path);
  }

  // Baseline 1: Boost.JSON parse of every line (best of three).
  double parse_rate = 0;
  for (int round = 0; round < 3; ++round) {
    const auto start = Clock::now();
    std::size_t objects = 0;
    for (const auto& line : lines) objects += boost::json::parse(line).is_object() ? 1 : 0;
    if (objects != lines.size()) throw std::runtime_error("baseline parse failed");
    parse_rate = std::max(parse_rate, static_cast<double>(lines.size()) / seconds_since(start));
  }

  // The feed parser and record encoding alone (best of three).
  double parser_rate = 0;
  for (int round = 0; round < 3; ++round) {
    ingest::FeedParser parser;
    std::size_t bytes = 0;
    const auto start = Clock::now();
    for (const auto& line : lines) {
      auto event = parser.parse(line);
      if (auto* trade = std::get_if<market::Trade>(&event.record)) {
        bytes += market::encode(*trade).size();
      } else if (auto* ticker = std::get_if<market::Ticker>(&event.record)) {
        bytes += market::encode(*ticker).size();
      } else {
        throw std::runtime_error("parser dropped a line: " + event.detail);
      }
    }
    parser_rate = std::max(parser_rate, static_cast<double>(lines.size()) / seconds_since(start));
  }

  kafka::MockCluster cluster(1);
  for (const char* topic :
       {market::kTradesTopic, market::kTickerTopic, "bench.trades", "bench.ticker"}) {
    cluster.create_topic(topic, 12);
  }

  // Baseline 2: a bare librdkafka producer of the same records.
  const double bare_rate = bare_producer_rate(cluster, lines);

  // The ingester: replay at speed 0, one io thread, until every record is acknowledged.
  double ingest_rate = 0;
  double dropped = 0;
  {
    asio::io_context io(1);
    prometheus::Registry registry;
    config::Config config;
    config.ingester_source = "replay:" + path;
    config.ingester_replay_speed = 0;
    config.ingester_products = {"BTC-USD", "ETH-USD"};
    kafka::ClientConfig client{cluster.bootstrap(), "bench-ingester",
                               kafka::MockCluster::client_properties()};
    kafka::Producer producer(io.get_executor(), client, registry);
    ingest::Ingester ingester(io.get_executor(), config, producer, registry);
    bool finished = false;
    const auto start = Clock::now();
    asio::co_spawn(io, ingester.run(), [&](std::exception_ptr) { finished = true; });
    double acknowledged = 0;
    while (acknowledged < static_cast<double>(count) && seconds_since(start) < 300) {
      io.run_for(std::chrono::milliseconds(20));
      acknowledged = counter_sum(registry, "mesh_ingester_published_total");
      dropped = counter_sum(registry, "mesh_ingester_dropped_total") +
                counter_sum(registry, "mesh_ingester_publish_failures_total");
      if (acknowledged + dropped >= static_cast<double>(count)) break;
    }
    const double elapsed = seconds_since(start);
    ingest_rate = acknowledged / elapsed;
    ingester.stop();
    while (!finished) io.run_for(std::chrono::milliseconds(10));
  }

  std::printf("ingest replay, %zu messages (matches and tickers), one io thread, mock Kafka\n",
              count);
  std::printf("  %-44s %12.0f msgs/s\n", "Boost.JSON parse only (baseline)", parse_rate);
  std::printf("  %-44s %12.0f msgs/s  (%.2fx parse)\n", "feed parser + normalize + encode",
              parser_rate, parser_rate / parse_rate);
  std::printf("  %-44s %12.0f msgs/s\n", "bare librdkafka producer, same records (baseline)",
              bare_rate);
  std::printf("  %-44s %12.0f msgs/s  (%.2fx bare producer, %.2fx parse)\n",
              "ingester: replay -> parse -> produce -> ack", ingest_rate, ingest_rate / bare_rate,
              ingest_rate / parse_rate);
  std::printf("  records not published (dropped or failed): %.0f\n", dropped);

  std::ofstream out(result_path);
  out << "{\"benchmark\":\"ingest_replay\",\"messages\":" << count
      << ",\"json_parse_msgs_per_s\":" << static_cast<long>(parse_rate)
      << ",\"feed_parser_msgs_per_s\":" << static_cast<long>(parser_rate)
      << ",\"bare_producer_msgs_per_s\":" << static_cast<long>(bare_rate)
      << ",\"ingester_msgs_per_s\":" << static_cast<long>(ingest_rate)
      << ",\"ratio_vs_bare_producer\":" << ingest_rate / bare_rate
      << ",\"ratio_vs_json_parse\":" << ingest_rate / parse_rate
      << ",\"not_published\":" << static_cast<long>(dropped) << "}\n";
  return dropped == 0 ? 0 : 1;
}
