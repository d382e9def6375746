#pragma once
// The ingester tests' harness: an Ingester with its own mock Kafka cluster on one io_context,
// feed message builders, and reading a topic back.
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/io_context.hpp>

#include "mesh/config/config.hpp"
#include "mesh/ingest/ingester.hpp"
#include "mesh/kafka/mock_cluster.hpp"
#include "mesh/kafka/producer.hpp"

namespace mesh::ingest::test {

std::string match(std::int64_t trade_id, const std::string& product = "BTC-USD",
                  const std::string& type = "match",
                  const std::string& time = "2026-11-30T14:03:07.123456Z");
std::string ticker(std::int64_t sequence, const std::string& product = "BTC-USD",
                   const std::string& time = "2026-11-30T14:03:07.123456Z");
std::string heartbeat(std::int64_t last_trade_id, const std::string& product = "BTC-USD");
// The market.trades record of match(trade_id, product) (same time).
std::string trade_record(std::int64_t trade_id, const std::string& product = "BTC-USD");

struct Record {
  std::string key;
  std::string value;
};

class Harness {
 public:
  Harness();
  ~Harness();

  // Creates the producer and the ingester from `config` and starts run().
  void start(kafka::Properties producer_properties = {});
  // Serves the io_context until `done` or a deadline; the result of the last check.
  bool wait_for(const std::function<bool()>& done);
  // A counter or gauge of the registry, 0 when absent.
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {});
  double published(const char* topic);
  // stop(), then waits for run() to return (rethrowing what it threw) and for the records in
  // flight to complete.
  void stop();
  // Every record of `topic` (all partitions, from the start), read until `count` arrived.
  std::vector<Record> read(const std::string& topic, std::size_t count);
  // The values of `records` with `key`, in their order.
  static std::vector<std::string> values(const std::vector<Record>& records,
                                         const std::string& key);

  asio::io_context io;
  kafka::MockCluster cluster{1};
  prometheus::Registry registry;
  config::Config config;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<Ingester> ingester;
  bool finished = false;
  std::exception_ptr error;
};

}  // namespace mesh::ingest::test
