// The message service end to end in one process: POST through a real HTTP server and Kafka's
// mock cluster, stored by MessageConsumer into a real Postgres, read back through GET, deleted
// with the publisher's or an admin's rights.
#include <algorithm>
#include <cctype>
#include <functional>
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

std::string body(std::string_view sender, int priority,
                 std::string_view attributes = R"({"k":"v"})") {
  return std::string(R"({"ts":"19941114","sender":)") + json::serialize(json::string(sender)) +
         R"(,"messageAttributes":)" + std::string(attributes) +
         R"(,"sent_from_ip":"192.0.2.1","priority":)" + std::to_string(priority) + "}";
}

// `levels` objects nested in one another.
std::string deep_object(int levels) {
  std::string text;
  for (int i = 1; i < levels; ++i) text += R"({"a":)";
  text += "{}";
  text += std::string(static_cast<std::size_t>(levels - 1), '}');
  return text;
}

std::string accepted_id(const testing::HttpReply& reply) {
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  const std::string id(reply.json().at("id").as_string());
  CHECK(core::is_uuid(id));
  CHECK(reply.header("location") == "/v1/messages/" + id);
  return id;
}

void check_problem(const testing::HttpReply& reply, unsigned status) {
  INFO(reply.body);
  CHECK(reply.status == status);
  CHECK(reply.header("content-type").value_or("").starts_with("application/problem+json"));
}

TEST_CASE("messages api: every route needs a caller", "[messages][api]") {
  Service service({.start_consumer = false});
  const std::string id = core::uuid_v7();
  check_problem(service.post(body("alice", 1), std::nullopt), 401);
  check_problem(service.get("/v1/messages", std::nullopt), 401);
  check_problem(service.get("/v1/messages/" + id, std::nullopt), 401);
  check_problem(service.remove(id, std::nullopt), 401);
  CHECK(service.post(body("alice", 1), std::nullopt).header("www-authenticate").has_value());
}

TEST_CASE("messages api: malformed, oversized and hostile bodies get 4xx, nothing published",
          "[messages][api]") {
  Service service({.start_consumer = false});
  const User user = make_user();
  struct Case {
    std::string body;
    unsigned status;
    std::string field;
  };
  const std::vector<Case> cases{
      {"{", 400, ""},
      {"[1,2]", 400, ""},
      {R"("text")", 400, ""},
      {"null", 400, ""},
      {std::string(200, '[') + std::string(200, ']'), 400, ""},
      {"{\"ts\":\"\xff\"}", 400, ""},
      {body("alice", 1) + "garbage", 400, ""},
      {body("alice", 10), 400, "/priority"},
      {body("alice", 1, "[]"), 400, "/messageAttributes"},
      {body("a\x01z", 1), 400, "/sender"},
      {body("alice", 1, deep_object(9)), 400, "/messageAttributes"},
      {body("alice", 1, deep_object(15)), 400, "/messageAttributes"},
      {R"({"ts":"19941114","sender":"a","messageAttributes":{},"sent_from_ip":"::1%lo","priority":1})",
       400, "/sent_from_ip"},
      {R"({"ts":"19941114","sender":"a","messageAttributes":{},"sent_from_ip":"::1","priority":1,"id":"x"})",
       400, "/id"},
      {body("alice", 1, R"({"blob":")" + std::string(kMaxBodyBytes, 'x') + R"("})"), 413, ""},
  };
  for (const auto& c : cases) {
    INFO(c.body.substr(0, 120));
    const auto reply = service.post(c.body, user);
    check_problem(reply, c.status);
    if (!c.field.empty()) CHECK(invalid_field(reply) == c.field);
  }
  // Not declared as JSON.
  testing::HttpCall call;
  call.method = "POST";
  call.target = "/v1/messages";
  call.body = body("alice", 1);
  call.headers = {{"X-Test-User", user.id + " user"}, {"Content-Type", "text/plain"}};
  check_problem(testing::http(service.port(), call), 415);
  // A caller whose id is not a mesh user id cannot publish (publisher_id is a uuid).
  check_problem(service.post(body("alice", 1), User{"external|123", "user"}), 403);

  CHECK(testing::metric(service.registry(), "mesh_messages_published_total") == 0.0);
  // The one valid body after all that is accepted: the process is fine.
  accepted_id(service.post(body("alice", 1), user));
  CHECK(testing::metric(service.registry(), "mesh_messages_published_total") == 1.0);
}

TEST_CASE("messages api: what is posted comes back exactly, after the consumer stored it",
          "[messages][api]") {
  Service service;
  const User publisher = make_user();
  const std::string attributes =
      R"({"zeta":1,"alpha":{"ü":"😀 \"quoted\" \\ tab\t","list":[1,-2,3.5,true,null,{"c":[]}]},)"
      R"("é":"東京","empty":{},"a":"\u0000\u001f"})";
  const std::string posted =
      R"({"priority":9,"sent_from_ip":"2001:db8::8a2e:370:7334","ts":"2026-11-30T14:05:00.25+01:00",)"
      R"("sender":"Zoë \"Z\" 🚀","messageAttributes":)" +
      attributes + "}";
  const auto id = accepted_id(service.post(posted, publisher));
  REQUIRE(service.wait_stored(id));

  const User reader = make_user();
  const auto reply = service.get("/v1/messages/" + id, reader);
  REQUIRE(reply.status == 200);
  CHECK(reply.header("content-type").value_or("").starts_with("application/json"));
  const auto got = reply.json().as_object();
  const auto sent = json::parse(posted).as_object();
  CHECK(got.at("id").as_string() == id);
  CHECK(got.at("publisher_id").as_string() == publisher.id);
  for (const auto* field : {"ts", "sender", "sent_from_ip", "priority"}) {
    INFO(field);
    CHECK(got.at(field) == sent.at(field));
  }
  // Serialized, so that key order counts too.
  CHECK(json::serialize(got.at("messageAttributes")) ==
        json::serialize(sent.at("messageAttributes")));
  CHECK(json::serialize(got.at("messageAttributes")).starts_with(R"({"zeta":1,"alpha":{"ü")"));
  const std::string published_at(got.at("published_at").as_string());
  CHECK(published_at.size() == 24);
  CHECK(published_at.ends_with("Z"));
  // The list shows the same item.
  const auto listed = service.get("/v1/messages", reader).json();
  REQUIRE(listed.at("items").as_array().size() == 1);
  CHECK(json::serialize(listed.at("items").as_array()[0]) == json::serialize(got));
  CHECK(listed.at("next_cursor").is_null());
  CHECK(testing::metric(service.consumer_registry(), "mesh_messages_stored_total") == 1.0);

  // Unknown and malformed ids.
  check_problem(service.get("/v1/messages/" + core::uuid_v7(), reader), 404);
  check_problem(service.get("/v1/messages/not-a-uuid", reader), 404);
  check_problem(service.get("/v1/messages/%27%20OR%201=1--", reader), 404);
  std::string upper = id;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  check_problem(service.get("/v1/messages/" + upper, reader), 404);
}

TEST_CASE("messages api: the Kafka record carries the id as key and the request's trace",
          "[messages][api]") {
  Service service({.start_consumer = false});
  const User publisher = make_user();
  const std::string trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto reply = testing::http_json(service.port(), "POST", "/v1/messages", body("ivan", 2), {},
                                        {{"X-Test-User", publisher.id + " user"},
                                         {"X-Request-Id", "req-messages-1"},
                                         {"traceparent", trace}});
  const auto id = accepted_id(reply);
  const auto records = service.read_topic(kMessagesTopic, 1);
  REQUIRE(records.size() == 1);
  CHECK(records[0].key == id);
  std::map<std::string, std::string> headers;
  for (const auto& header : records[0].headers) headers[header.key] = header.value;
  CHECK(headers["request_id"] == "req-messages-1");
  // The same trace, a new span.
  CHECK(headers["traceparent"].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
  CHECK(headers["traceparent"] != trace);
  const auto decoded = decode(records[0].value);
  REQUIRE(std::holds_alternative<Message>(decoded));
  CHECK(std::get<Message>(decoded).id == id);
  CHECK(std::get<Message>(decoded).publisher_id == publisher.id);
  CHECK(std::get<Message>(decoded).sender == "ivan");
}

TEST_CASE("messages api: list filters and keyset pages without duplicates or gaps",
          "[messages][api]") {
  Service service;
  const User publisher = make_user();
  std::map<std::string, std::pair<std::string, int>> published;  // id -> (sender, priority)
  for (int i = 0; i < 23; ++i) {
    const std::string sender = i % 3 == 0 ? "carol" : "dave";
    const int priority = i % 4;
    published[accepted_id(service.post(body(sender, priority), publisher))] = {sender, priority};
  }
  const User reader = make_user();
  REQUIRE(testing::wait_until(
      [&] {
        const auto reply = service.get("/v1/messages?limit=100", reader);
        return reply.status == 200 && reply.json().at("items").as_array().size() == 23;
      },
      kStoreDeadline, 20ms));

  // Walks every page of `query` with `limit`; returns the ids in order.
  auto walk = [&](const std::string& query, int limit) {
    std::vector<std::string> ids;
    std::string cursor;
    for (int page = 0; page < 50; ++page) {
      std::string target = "/v1/messages?limit=" + std::to_string(limit) + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto reply = service.get(target, reader);
      REQUIRE(reply.status == 200);
      const auto json = reply.json();
      const auto& items = json.at("items").as_array();
      CHECK(items.size() <= static_cast<std::size_t>(limit));
      for (const auto& item : items) ids.emplace_back(item.at("id").as_string());
      if (json.at("next_cursor").is_null()) return ids;
      CHECK(items.size() == static_cast<std::size_t>(limit));
      cursor = std::string(json.at("next_cursor").as_string());
    }
    FAIL("too many pages");
    return ids;
  };
  auto expected = [&](const std::function<bool(const std::pair<std::string, int>&)>& keep) {
    std::vector<std::string> ids;
    for (const auto& [id, fields] : published) {
      if (keep(fields)) ids.push_back(id);
    }
    std::sort(ids.rbegin(), ids.rend());  // newest first: UUIDv7 text order is time order
    return ids;
  };
  CHECK(walk("", 5) == expected([](const auto&) { return true; }));
  CHECK(walk("", 1) == expected([](const auto&) { return true; }));
  CHECK(walk("", 23).size() == 23);
  CHECK(walk("&sender=carol", 3) == expected([](const auto& f) { return f.first == "carol"; }));
  CHECK(walk("&priority=2", 4) == expected([](const auto& f) { return f.second == 2; }));
  CHECK(walk("&sender=dave&priority=1", 2) ==
        expected([](const auto& f) { return f.first == "dave" && f.second == 1; }));
  CHECK(walk("&sender=nobody", 5).empty());
  // The default page is 20.
  CHECK(service.get("/v1/messages", reader).json().at("items").as_array().size() == 20);

  for (const auto& [query, parameter] :
       std::vector<std::pair<std::string, std::string>>{{"limit=0", "limit"},
                                                        {"limit=101", "limit"},
                                                        {"limit=abc", "limit"},
                                                        {"limit=-1", "limit"},
                                                        {"limit=", "limit"},
                                                        {"priority=10", "priority"},
                                                        {"priority=1.5", "priority"},
                                                        {"priority=x", "priority"},
                                                        {"cursor=nope", "cursor"},
                                                        {"cursor=%27;DROP%20TABLE", "cursor"},
                                                        {"sender=", "sender"},
                                                        {"sender=a%0Ab", "sender"},
                                                        {"sender=%FF%FE", "sender"}}) {
    INFO(query);
    const auto reply = service.get("/v1/messages?" + query, reader);
    check_problem(reply, 400);
    CHECK(invalid_field(reply) == parameter);
  }
}

TEST_CASE("messages api: the publisher or an admin deletes; a redelivered record stays deleted",
          "[messages][api]") {
  Service service;
  const User publisher = make_user();
  const User other = make_user();
  const User admin = make_user("admin");
  const auto first = accepted_id(service.post(body("erin", 4), publisher));
  const auto second = accepted_id(service.post(body("erin", 5), publisher));
  REQUIRE(service.wait_stored(first));
  REQUIRE(service.wait_stored(second));

  check_problem(service.remove(first, other), 403);
  CHECK(service.get("/v1/messages/" + first, other).status == 200);
  CHECK(service.remove(first, publisher).status == 204);
  check_problem(service.remove(first, publisher), 404);
  check_problem(service.remove(first, admin), 404);
  check_problem(service.get("/v1/messages/" + first, publisher), 404);
  CHECK(service.remove(second, admin).status == 204);
  check_problem(service.remove(second, admin), 404);
  check_problem(service.remove(core::uuid_v7(), admin), 404);
  check_problem(service.remove("not-a-uuid", admin), 404);
  const auto listed = service.get("/v1/messages", other).json();
  CHECK(listed.at("items").as_array().empty());

  // The same record again (a redelivery), then a marker on the same partition (same key): once
  // the marker is stored, the redelivered record was processed before it.
  Message again;
  again.id = first;
  again.publisher_id = publisher.id;
  again.ts = "19941114";
  again.sender = "erin";
  again.attributes = json::object{{"k", "v"}};
  again.sent_from_ip = "192.0.2.1";
  again.priority = 4;
  again.published_at_ms = 1'795'000'000'000;
  service.produce(kMessagesTopic, first, encode(again));
  Message marker = again;
  marker.id = core::uuid_v7();
  service.produce(kMessagesTopic, first, encode(marker));
  REQUIRE(service.wait_stored(marker.id));
  check_problem(service.get("/v1/messages/" + first, publisher), 404);
  const auto rows =
      service.sql("SELECT count(*), count(deleted_at) FROM messages WHERE id = '" + first + "'");
  CHECK(rows.get(0, 0) == "1");
  CHECK(rows.get(0, 1) == "1");
  CHECK(testing::metric(service.consumer_registry(), "mesh_messages_duplicates_total") == 1.0);
}

TEST_CASE("messages api: 503 with Retry-After while Kafka cannot acknowledge; nothing stored",
          "[messages][api]") {
  Service service({.start_consumer = false, .ack_timeout = 1500ms});
  const User publisher = make_user();
  const auto before = accepted_id(service.post(body("frank", 1), publisher));  // connected

  service.cluster().set_broker_down(1, true);
  const auto refused = service.post(body("frank", 2), publisher);
  check_problem(refused, 503);
  CHECK(refused.header("retry-after") == "1");
  CHECK(testing::metric(service.registry(), "mesh_messages_rejected_total",
                        {{"reason", "unavailable"}}) == 1.0);
  service.cluster().set_broker_down(1, false);

  const auto later = accepted_id(service.post(body("frank", 3), publisher));
  service.start_consumer();
  // The two accepted ones may sit on different partitions: wait for both.
  REQUIRE(service.wait_stored(before));
  REQUIRE(service.wait_stored(later));
  const auto rows = service.sql("SELECT priority FROM messages ORDER BY id");
  REQUIRE(rows.rows() == 2);
  CHECK(rows.get(0, 0) == "1");
  CHECK(rows.get(1, 0) == "3");
}

}  // namespace
}  // namespace mesh::messages::test
