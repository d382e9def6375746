// MessageConsumer against the mock cluster and a real Postgres: poison records go to
// messages.dlq with their reason and the consumer keeps going; while Postgres cannot store,
// nothing is committed, so a restarted consumer still stores everything.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/messages/records.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/metrics.hpp"
#include "support.hpp"

namespace mesh::messages::test {
namespace {

namespace json = boost::json;

Message message(std::string sender, int priority) {
  Message m;
  m.id = core::uuid_v7();
  m.publisher_id = core::uuid_v7();
  m.ts = "19941114";
  m.sender = std::move(sender);
  m.attributes = json::object{{"n", priority}};
  m.sent_from_ip = "10.0.0.1";
  m.priority = priority;
  m.published_at_ms = core::unix_ms();
  return m;
}

double metric(prometheus::Registry& registry, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  return testing::metric(registry, name, labels).value_or(0);
}

TEST_CASE("consumer: poison records go to messages.dlq with the reason; the rest is stored",
          "[messages][consumer]") {
  Service service;
  service.sql("ALTER TABLE messages ADD CONSTRAINT test_refuse CHECK (sender <> 'refuse-me')");
  std::vector<Message> good;
  for (int i = 0; i < 6; ++i) good.push_back(message("grace", i));
  const Message refused = message("refuse-me", 1);
  auto out_of_range = json::parse(encode(message("grace", 1))).as_object();
  out_of_range["priority"] = 12;
  const std::vector<std::string> poison{"not json at all", json::serialize(out_of_range),
                                        R"({"id":"x"})"};

  for (std::size_t i = 0; i < good.size(); ++i) {
    service.produce(kMessagesTopic, good[i].id, encode(good[i]));
    if (i < poison.size()) service.produce(kMessagesTopic, good[i].id, poison[i]);
  }
  service.produce(kMessagesTopic, refused.id, encode(refused));

  for (const auto& m : good) REQUIRE(service.wait_stored(m.id));
  REQUIRE(testing::wait_until(
      [&] {
        return metric(service.consumer_registry(), "mesh_messages_dead_lettered_total",
                      {{"reason", "refused"}}) == 1.0;
      },
      kStoreDeadline));
  CHECK(metric(service.consumer_registry(), "mesh_messages_dead_lettered_total",
               {{"reason", "undecodable"}}) == 3.0);
  CHECK(metric(service.consumer_registry(), "mesh_messages_stored_total") == 6.0);

  const auto dead = service.read_topic(kMessagesDeadLetterTopic, 4);
  REQUIRE(dead.size() == 4);
  std::set<std::string> originals;
  for (const auto& record : dead) {
    const auto value = json::parse(record.value);
    originals.insert(std::string(value.at("record").as_string()));
    CHECK(value.at("source_topic") == kMessagesTopic);
    CHECK_FALSE(value.at("reason").as_string().empty());
  }
  std::set<std::string> expected(poison.begin(), poison.end());
  expected.insert(encode(refused));
  CHECK(originals == expected);

  // Still consuming.
  const Message after = message("grace", 9);
  service.produce(kMessagesTopic, after.id, encode(after));
  CHECK(service.wait_stored(after.id));
  const auto rows = service.sql("SELECT count(*) FROM messages");
  CHECK(rows.get(0, 0) == "7");
}

TEST_CASE("consumer: nothing is committed while Postgres cannot store; a restart stores it",
          "[messages][consumer]") {
  Service service({.pg_timeout = 1000ms});
  const Message first = message("heidi", 1);
  service.produce(kMessagesTopic, first.id, encode(first));
  REQUIRE(service.wait_stored(first.id));

  service.lock_messages();
  const Message blocked = message("heidi", 2);
  service.produce(kMessagesTopic, blocked.id, encode(blocked));
  REQUIRE(testing::wait_until(
      [&] {
        return metric(service.consumer_registry(), "mesh_messages_store_failures_total") >= 1.0;
      },
      kStoreDeadline));
  service.stop_consumer();
  service.unlock_messages();
  CHECK(service.sql("SELECT count(*) FROM messages").get(0, 0) == "1");

  service.start_consumer();
  REQUIRE(service.wait_stored(blocked.id));
  CHECK(service.sql("SELECT count(*) FROM messages").get(0, 0) == "2");
}

}  // namespace
}  // namespace mesh::messages::test
