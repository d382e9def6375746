// Hostile input against the whole product in-process: every attack gets a 4xx (or a closed
// connection), the process keeps serving, and what was accepted before stays intact.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "app_fixture.hpp"
#include "mesh/auth/base64url.hpp"
#include "mesh/auth/jwt.hpp"
#include "mesh/core/ids.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/tasks/records.hpp"
#include "mesh/testing/env.hpp"

using namespace mesh;
using namespace mesh::roles::test;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

namespace {

// A string literal with its embedded NUL bytes.
template <std::size_t N>
std::string bytes(const char (&text)[N]) {
  return std::string(text, N - 1);
}

// Reads from `socket` until the peer closes it or `timeout` passes; returns the final error
// (eof when closed) or would_block when still open at the deadline.
error_code read_until_closed(boost::asio::io_context& io, tcp::socket& socket,
                             std::chrono::milliseconds timeout) {
  std::array<char, 1024> chunk{};
  error_code result = boost::asio::error::would_block;
  std::function<void()> read_more = [&] {
    socket.async_read_some(boost::asio::buffer(chunk), [&](error_code ec, std::size_t) {
      if (ec) {
        result = ec;
        return;
      }
      read_more();
    });
  };
  read_more();
  io.restart();
  io.run_for(timeout);
  return result;
}

// Writes `bytes`, then closes the sending side (the peer sees end of stream), and reads until
// the server closes or `timeout` passes.
testing::RawReply send_and_close(unsigned short port, const std::string& bytes,
                                 std::chrono::milliseconds timeout = 10s) {
  return testing::raw_exchange(port, bytes, timeout, /*close_send=*/true);
}

// The status code of the first response in raw bytes, or 0.
unsigned first_status(const std::string& bytes) {
  if (bytes.rfind("HTTP/1.1 ", 0) != 0 || bytes.size() < 12) return 0;
  return static_cast<unsigned>(std::stoi(bytes.substr(9, 3)));
}

std::string post_request(const std::string& target, const std::string& body,
                         const std::string& token, const std::string& extra_headers = {}) {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
         (token.empty() ? "" : "Authorization: Bearer " + token + "\r\n") + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// One user with one finished task, checked after every attack.
struct Victim {
  explicit Victim(AppFixture& app) : app(app), user(app.new_user("victim")) {
    id = app.submit(user.token, "sha256", R"({"data":"abc","rounds":1})");
    const auto done = app.wait_final(user.token, id);
    REQUIRE(done.at("status") == "succeeded");
    result = done.at("result");
    accepted = metric(app.app(), "mesh_gateway_tasks_accepted_total");
  }

  // The process serves, the task reads the same, and nothing new was queued.
  void check_intact(const std::string& after) {
    INFO("after: " << after);
    REQUIRE(app.serving());
    const auto reply = app.get("/v1/tasks/" + id, user.token);
    REQUIRE(reply.status == 200);
    const auto task = reply.json().as_object();
    CHECK(task.at("status") == "succeeded");
    CHECK(task.at("result") == result);
    CHECK(app.sql_count("SELECT count(*) FROM tasks") == 1);
    CHECK(app.sql_count("SELECT count(*) FROM users") == 1);
    CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == accepted);
  }

  AppFixture& app;
  AppFixture::User user;
  std::string id;
  json::value result;
  double accepted = 0;
};

}  // namespace

TEST_CASE("hostile: malformed, mistyped, huge, deep and invalid-UTF-8 JSON bodies get 400") {
  AppFixture app;
  Victim victim(app);
  const auto& token = victim.user.token;

  const std::string deep_open(100'000, '[');
  const std::string deep_closed = deep_open + std::string(100'000, ']');
  std::string deep_object;
  for (int i = 0; i < 50'000; ++i) deep_object += "{\"a\":";
  const std::vector<std::string> bodies{
      // Malformed and truncated.
      "{",
      "}",
      "{\"type\":\"echo\",\"payload\":",
      "{\"type\":\"echo\",\"payload\":{\"a\":[1,2",
      "{\"type\":\"echo\",\"payload\":\"unterminated",
      "{\"type\":\"echo\" \"payload\":1}",
      "{'type':'echo','payload':1}",
      "{\"type\":\"echo\",\"payload\":01}",
      "{\"type\":\"echo\",\"payload\":NaN}",
      "{\"type\":\"echo\",\"payload\":Infinity}",
      "{\"type\":\"echo\",\"payload\":1,}",
      "{\"type\":\"echo\",\"payload\":1} trailing",
      "{\"type\":\"echo\",\"payload\":1}{}",
      "\xef\xbb\xbf{\"type\":\"echo\",\"payload\":1}",  // a byte-order mark
      "",
      " ",
      "null",
      "[]",
      "42",
      "\"string\"",
      // Wrong types.
      R"({"type":"sha256","payload":"x"})",
      R"({"type":5,"payload":{}})",
      R"({"type":null,"payload":{}})",
      R"({"type":["echo"],"payload":{}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":"7"}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":1.5}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":true}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":null}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":[1]}})",
      R"({"type":"sha256","payload":{"data":{"x":1},"rounds":1}})",
      R"({"type":"primes","payload":{"below":"1000"}})",
      R"({"type":"sleep","payload":{"ms":1e3}})",
      // Huge numbers.
      R"({"type":"sha256","payload":{"data":"abc","rounds":1e400}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":99999999999999999999999}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":-1}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":-99999999999999999999999}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":18446744073709551616}})",
      R"({"type":"sha256","payload":{"data":"abc","rounds":4294967297}})",
      R"({"type":"primes","payload":{"below":9223372036854775807}})",
      R"({"type":"primes","payload":{"below":-9223372036854775808}})",
      R"({"type":"sleep","payload":{"ms":1e400}})",
      R"({"type":"sleep","payload":{"ms":-0.0}})",
      R"({"type":"echo","payload":1e400})",
      R"({"type":"echo","payload":-1e400})",
      R"({"type":"echo","payload":{"n":[1,2,1e999]}})",
      "{\"type\":\"echo\",\"payload\":1" + std::string(100'000, '0') + "}",
      // Deep nesting.
      deep_open,
      deep_closed,
      "{\"type\":\"echo\",\"payload\":" + deep_closed + "}",
      "{\"type\":\"echo\",\"payload\":" + deep_object,
      // Invalid UTF-8 in strings, keys and the type.
      "{\"type\":\"echo\",\"payload\":\"\xff\xfe\"}",
      "{\"type\":\"echo\",\"payload\":\"\xc0\xaf\"}",          // overlong '/'
      "{\"type\":\"echo\",\"payload\":\"\xed\xa0\x80\"}",      // an encoded surrogate
      "{\"type\":\"echo\",\"payload\":\"\xe2\x82\"}",          // truncated sequence
      "{\"type\":\"echo\",\"payload\":\"\xf4\x90\x80\x80\"}",  // above U+10FFFF
      "{\"type\":\"echo\",\"payload\":{\"\x80key\":1}}",
      "{\"type\":\"ech\xc3\",\"payload\":1}",
      R"({"type":"echo","payload":"\ud800"})",  // a lone surrogate escape
      R"({"type":"echo","payload":"\udc00\ud800"})",
      // NUL bytes, raw (never valid JSON).
      bytes("{\"type\":\"echo\",\"payload\":\"a\0b\"}"),
      bytes("{\"type\":\"echo\",\0\"payload\":1}"),
      bytes("\0\0\0\0"),
      std::string(1000, '\0'),
  };
  int n = 0;
  for (const auto& body : bodies) {
    const auto reply = app.post("/v1/tasks", body, token);
    INFO("body #" << n++ << " (" << body.size() << " bytes): " << body.substr(0, 120) << " -> "
                  << reply.status << " " << reply.body.substr(0, 300));
    // 415 for the empty body, which http_json sends without Content-Type.
    CHECK(reply.status == (body.empty() ? 415u : 400u));
    CHECK(reply.header("content-type") == "application/problem+json");
    CHECK(app.serving());
  }
  victim.check_intact("malformed task bodies");

  // The same on the public account routes.
  for (const auto& body :
       {std::string("{\"username\":\"\xff\xfe\xfd\",\"password\":\"12345678\"}"),
        std::string("{\"username\":\"ok_name\",\"password\":\"\xc0\xaf\xc0\xaf\xc0\xaf\xc0\xaf\"}"),
        std::string("{\"username\":\"ok_name\",\"password\":1e400}"),
        bytes("{\"username\":\"ok\0name\",\"password\":\"12345678\"}"), deep_closed, deep_open,
        std::string("{\"username\":\"ok_name\",\"password\":\"12345678\"")}) {
    for (const char* route : {"/v1/auth/register", "/v1/auth/login"}) {
      const auto reply = app.post(route, body);
      INFO(route << " " << body.substr(0, 80) << " -> " << reply.status << " " << reply.body);
      CHECK(reply.status >= 400);
      CHECK(reply.status < 500);
    }
  }
  victim.check_intact("malformed account bodies");
}

TEST_CASE("hostile: payloads Postgres cannot store as jsonb are refused; the pipeline goes on") {
  // Valid JSON that jsonb refuses: the \u0000 escape (jsonb cannot hold NUL in text), in a value
  // or in a key. The gateway refuses it before it is queued; later tasks complete.
  AppFixture app;
  const auto user = app.new_user("nul");
  for (const std::string payload : {R"("a\u0000b")", R"({"k\u0000":1})", R"([{"x":["\u0000"]}])"}) {
    const auto reply =
        app.post("/v1/tasks", "{\"type\":\"echo\",\"payload\":" + payload + "}", user.token);
    INFO(payload << " -> " << reply.status << " " << reply.body);
    CHECK(reply.status == 400);
    CHECK_THAT(reply.body, Catch::Contains("U+0000"));
  }
  const auto sha = app.post(
      "/v1/tasks", R"({"type":"sha256","payload":{"data":"\u0000","rounds":1}})", user.token);
  CHECK(sha.status == 400);
  CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == 0);
  const auto later = app.submit(user.token, "echo", R"("after the NUL")");
  const auto done = app.wait_final(user.token, later, 30s);
  CHECK(done.at("result") == "after the NUL");
  CHECK(app.serving());
}

namespace {

// Publishes one record straight to the embedded cluster, bypassing the gateway's validation.
void produce_raw(const std::string& bootstrap, const std::string& topic, const std::string& key,
                 const std::string& value) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof(error)) ==
          RD_KAFKA_CONF_OK);
  int delivery = -1;
  rd_kafka_conf_set_opaque(conf, &delivery);
  rd_kafka_conf_set_dr_msg_cb(conf,
                              [](rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
                                *static_cast<int*>(opaque) = message->err;
                              });
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  REQUIRE(producer != nullptr);
  const auto queued =
      rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()),
                        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  const auto flushed = rd_kafka_flush(producer, 10000);
  rd_kafka_destroy(producer);
  REQUIRE(queued == RD_KAFKA_RESP_ERR_NO_ERROR);
  REQUIRE(flushed == RD_KAFKA_RESP_ERR_NO_ERROR);
  REQUIRE(delivery == RD_KAFKA_RESP_ERR_NO_ERROR);
}

// A pending echo task as the gateway would queue it.
tasks::PendingTask echo_task(const std::string& user_id, json::value payload,
                             std::int64_t created_at_ms = core::unix_ms()) {
  return {core::uuid_v7(), user_id, tasks::TaskType::echo, std::move(payload), created_at_ms, {}};
}

}  // namespace

TEST_CASE("hostile: a queued record Postgres refuses is dead-lettered; its batch is stored") {
  // A record another producer wrote: it decodes, but its created_at is past Postgres' timestamp
  // range (SQLSTATE 22008), so no transaction holding it can commit. The updater must store the
  // rest record by record and dead-letter this one, not retry the batch forever.
  AppFixture app;
  const auto user = app.new_user("direct");
  const std::string bootstrap = app.app().embedded_kafka_cluster()->bootstrap();
  const auto bad = echo_task(user.id, "refused", 9'000'000'000'000'000'000);
  produce_raw(bootstrap, "tasks.pending", bad.id, tasks::encode(bad));
  std::vector<std::string> good;
  for (int i = 0; i < 5; ++i) {
    const auto task = echo_task(user.id, i);
    produce_raw(bootstrap, "tasks.pending", task.id, tasks::encode(task));
    good.push_back(task.id);
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    const auto task = app.wait_final(user.token, good[i]);
    CHECK(task.at("result") == json::value(static_cast<std::int64_t>(i)));
    CHECK(task.at("type") == "echo");
  }
  REQUIRE(testing::wait_until(
      [&] { return metric(app.app(), "mesh_updater_dead_letters_total") >= 1; }, 60s));
  // Its pending record was never stored (a completion may have made a row without a type).
  CHECK(app.sql_count("SELECT count(*) FROM tasks WHERE id = '" + bad.id +
                      "' AND type IS NOT NULL") == 0);
  // And the pipeline goes on.
  const auto later = app.submit(user.token, "echo", R"("after")");
  CHECK(app.wait_final(user.token, later).at("result") == "after");
  CHECK(app.serving());
}

namespace {

// SET on the throwaway Redis, through a blocking hiredis connection.
void redis_set(const std::string& key, const std::string& value) {
  const auto options = redis::parse_url(testing::redis_url());
  redisContext* context = redisConnect(options.host.c_str(), options.port);
  REQUIRE(context != nullptr);
  REQUIRE(context->err == 0);
  auto* reply = static_cast<redisReply*>(
      redisCommand(context, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
  const bool ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
  if (reply != nullptr) freeReplyObject(reply);
  redisFree(context);
  REQUIRE(ok);
}

}  // namespace

TEST_CASE("updater: a completion stored before its pending record; GET stays complete") {
  // The updater reads tasks.pending and tasks.completed independently, so after a restart a
  // completion can be stored first: the row then has no type or payload yet. GET fills them
  // from the gateway's pending entry, and the pending record completes the row later.
  AppFixture app;
  const auto user = app.new_user("order");
  const std::string bootstrap = app.app().embedded_kafka_cluster()->bootstrap();
  const auto pending = echo_task(user.id, json::parse(R"({"late":true})"));
  tasks::CompletedTask done;
  done.id = pending.id;
  done.user_id = user.id;
  done.result = pending.payload;
  done.started_at_ms = pending.created_at_ms;
  done.finished_at_ms = pending.created_at_ms + 1;
  // What the gateway caches when Kafka acknowledges a task.
  const json::object cached{{"user_id", user.id},
                            {"type", "echo"},
                            {"payload", pending.payload},
                            {"created_at_ms", pending.created_at_ms}};
  redis_set("mesh:task:" + pending.id, json::serialize(cached));
  produce_raw(bootstrap, "tasks.completed", done.id, tasks::encode(done));
  REQUIRE(testing::wait_until(
      [&] {
        return app.sql_count("SELECT count(*) FROM tasks WHERE id = '" + pending.id + "'") == 1;
      },
      kPipelineDeadline));
  CHECK(app.sql_count("SELECT count(*) FROM tasks WHERE id = '" + pending.id +
                      "' AND type IS NULL") == 1);
  auto task = app.task(user.token, pending.id);
  CHECK(task.at("status") == "succeeded");
  CHECK(task.at("type") == "echo");
  CHECK(task.at("payload") == pending.payload);
  CHECK(task.at("result") == pending.payload);
  CHECK(is_rfc3339(task.at("created_at")));
  // Another user still gets 404.
  const auto other = app.new_user("stranger");
  CHECK(app.get("/v1/tasks/" + pending.id, other.token).status == 404);

  // The pending record arrives: the row is complete, status unchanged.
  produce_raw(bootstrap, "tasks.pending", pending.id, tasks::encode(pending));
  REQUIRE(testing::wait_until(
      [&] {
        return app.sql_count("SELECT count(*) FROM tasks WHERE id = '" + pending.id +
                             "' AND type = 'echo' AND status = 'succeeded'") == 1;
      },
      kPipelineDeadline));
  task = app.task(user.token, pending.id);
  CHECK(task.at("payload") == pending.payload);
  CHECK(task.at("result") == pending.payload);
}

TEST_CASE("hostile: deepest payload allowed round-trips; one level deeper is refused") {
  AppFixture app;
  const auto user = app.new_user("deep");
  // The body object is level 1, so a payload may nest 31 levels.
  const std::string deepest = std::string(31, '[') + "\"bottom\"" + std::string(31, ']');
  const std::string too_deep = "[" + deepest + "]";
  const auto reply =
      app.post("/v1/tasks", "{\"type\":\"echo\",\"payload\":" + too_deep + "}", user.token);
  CHECK(reply.status == 400);
  const auto id = app.submit(user.token, "echo", deepest);
  const auto task = app.wait_final(user.token, id);
  CHECK(task.at("status") == "succeeded");
  CHECK(task.at("result") == json::parse(deepest));
  CHECK(task.at("payload") == json::parse(deepest));
  // The list endpoint renders it too (three levels deeper than the payload: parse with room).
  const auto list = app.get("/v1/tasks", user.token);
  REQUIRE(list.status == 200);
  boost::json::parse_options roomy;
  roomy.max_depth = 64;
  const auto body = json::parse(list.body, {}, roomy);
  REQUIRE(body.at("items").as_array().size() == 1);
  CHECK(body.at("items").at(0).at("result") == json::parse(deepest));
}

TEST_CASE("hostile: oversized headers and bodies, broken framing and pipelined garbage") {
  AppFixture app;
  Victim victim(app);
  const auto& token = victim.user.token;

  {  // oversized headers get 431
    // Raw requests: the server may close before the client finished writing, so write errors
    // are ignored and the answer is read afterwards.
    const std::string auth = "Authorization: Bearer " + token + "\r\n";
    const auto one_big =
        send_and_close(app.port(), "GET /v1/tasks HTTP/1.1\r\nHost: x\r\n" + auth +
                                       "X-Big: " + std::string(20'000, 'h') + "\r\n\r\n");
    CHECK(first_status(one_big.bytes) == 431);
    CHECK(one_big.bytes.find("application/problem+json") != std::string::npos);
    std::string many = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 800; ++i)
      many += "X-H" + std::to_string(i) + ": " + std::string(20, 'v') + "\r\n";
    many += "\r\n";
    CHECK(first_status(send_and_close(app.port(), many).bytes) == 431);
    const auto long_target =
        send_and_close(app.port(), "GET /v1/tasks/" + std::string(20'000, 'a') +
                                       " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n");
    CHECK(first_status(long_target.bytes) == 431);
    // Just under the limit is served.
    CHECK(app.get("/v1/tasks", token, {{"X-Big", std::string(12'000, 'h')}}).status == 200);
    victim.check_intact("oversized headers");
  }

  {  // a body over 1 MiB gets 413 as soon as its length is known
    // Content-Length announces 1 MiB + 1; the server must answer without reading it all.
    const std::string head =
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
        token + "\r\nContent-Length: 1048577\r\n\r\n{\"type\":\"echo\",";
    const auto reply = testing::raw_exchange(app.port(), head, 10s);
    CHECK_FALSE(reply.timed_out);
    CHECK(first_status(reply.bytes) == 413);
    CHECK(reply.bytes.find("application/problem+json") != std::string::npos);

    // Chunked: the limit holds when no length is announced.
    std::string chunked =
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
        token + "\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string piece(64 * 1024, 'x');
    char size_line[32];
    std::snprintf(size_line, sizeof(size_line), "%zx\r\n", piece.size());
    for (int i = 0; i < 17; ++i) chunked += size_line + piece + "\r\n";
    chunked += "0\r\n\r\n";
    const auto chunked_reply = send_and_close(app.port(), chunked);
    CHECK_FALSE(chunked_reply.timed_out);
    CHECK(first_status(chunked_reply.bytes) == 413);

    // A body exactly at the limit is read (and refused as JSON, not as too large).
    const std::string at_limit(1024 * 1024, ' ');
    const auto full = app.post("/v1/tasks", at_limit, token);
    CHECK(full.status == 400);
    victim.check_intact("oversized bodies");
  }

  {  // a Content-Length larger than the bytes sent, then close
    const auto reply = send_and_close(
        app.port(),
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
            token + "\r\nContent-Length: 500\r\n\r\n{\"type\":\"echo\",\"payload\":1}");
    CHECK_FALSE(reply.timed_out);
    // Nothing to answer: the request never completed. Either silence or a 400, never a 202.
    CHECK((reply.bytes.empty() || first_status(reply.bytes) == 400));
    // Headers cut off in the middle, then close.
    const auto cut = send_and_close(app.port(), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Le");
    CHECK_FALSE(cut.timed_out);
    CHECK((cut.bytes.empty() || first_status(cut.bytes) == 400));
    victim.check_intact("short bodies");
  }

  {  // broken framing gets 400 and a closed connection
    const std::vector<std::string> requests{
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: "
        "6\r\n\r\nhello!",
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
        "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, identity\r\n\r\n",
        "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET\r\n\r\n",
        "G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nX-Ctl: a\x01"
        "b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n folded: header\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls client hello",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        bytes("GET /healthz HTTP/1.1\r\nHost: x\0y\r\n\r\n"),
    };
    for (const auto& request : requests) {
      const auto reply = send_and_close(app.port(), request);
      INFO(request << " -> " << reply.bytes.substr(0, 200));
      CHECK_FALSE(reply.timed_out);
      const auto status = first_status(reply.bytes);
      CHECK(status >= 400);
      CHECK(status < 500);
      CHECK(app.serving());
    }
    victim.check_intact("broken framing");
  }

  {  // pipelined garbage after a valid request: the valid one is answered, then 400
    const std::string valid = "GET /v1/tasks/" + victim.id +
                              " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    const auto reply =
        testing::raw_exchange(app.port(), valid + "GARBAGE \x01\x02\x03\r\n\r\n", 10s);
    CHECK_FALSE(reply.timed_out);
    CHECK(first_status(reply.bytes) == 200);
    CHECK(reply.bytes.find(victim.id) != std::string::npos);
    const auto second = reply.bytes.find("HTTP/1.1 ", 1);
    REQUIRE(second != std::string::npos);
    CHECK(first_status(reply.bytes.substr(second)) == 400);

    // A valid POST followed by garbage: the task is accepted exactly once.
    const std::string post =
        post_request("/v1/tasks", R"({"type":"echo","payload":"pipelined"})", token);
    const auto posted =
        testing::raw_exchange(app.port(), post + bytes("\0\xff garbage\r\n\r\n"), 10s);
    CHECK_FALSE(posted.timed_out);
    CHECK(first_status(posted.bytes) == 202);
    const auto body_start = posted.bytes.find("\r\n\r\n");
    REQUIRE(body_start != std::string::npos);
    const auto json_end = posted.bytes.find('}', body_start);
    REQUIRE(json_end != std::string::npos);
    const auto accepted =
        json::parse(posted.bytes.substr(body_start + 4, json_end - body_start - 3));
    const std::string id(accepted.at("id").as_string());
    CHECK(app.wait_final(token, id).at("result") == "pipelined");
    CHECK(app.list_all(token).size() == 2);
    CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == victim.accepted + 1);
    CHECK(app.serving());
  }
}

TEST_CASE("hostile: forged tokens get 401 and change nothing") {
  AppFixture app;
  Victim victim(app);
  const auto& user = victim.user;
  const auto now = std::chrono::system_clock::now();
  const auto now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto claims = [&](std::string_view sub, std::string_view role) {
    return json::serialize(json::object{{"sub", sub},
                                        {"name", user.username},
                                        {"role", role},
                                        {"iss", kJwtIssuer},
                                        {"iat", now_s},
                                        {"exp", now_s + 600}});
  };
  const auto dot1 = user.token.find('.');
  const auto dot2 = user.token.find('.', dot1 + 1);
  const std::string header = user.token.substr(0, dot1);
  const std::string signature = user.token.substr(dot2 + 1);
  std::string flipped = user.token;
  flipped[dot2 + 5] = flipped[dot2 + 5] == 'A' ? 'B' : 'A';
  const auth::JwtCodec other(std::string("an-entirely-different-secret-0123456789abc"),
                             std::string(kJwtIssuer), 3600s);

  const std::vector<std::pair<const char*, std::string>> forged{
      {"alg none", forge_token(R"({"alg":"none","typ":"JWT"})", claims(user.id, "user"), "", true)},
      {"alg None", forge_token(R"({"alg":"None"})", claims(user.id, "user"), "", true)},
      {"alg none, other user",
       forge_token(R"({"alg":"none"})", claims(core::uuid_v7(), "admin"), "", true)},
      {"HS256 with another secret", other.issue(user.id, user.username, "user", now)},
      {"HS256 with an empty secret",
       forge_token(R"({"alg":"HS256","typ":"JWT"})", claims(user.id, "user"), "")},
      {"tampered payload",
       header + "." + auth::base64url_encode(claims(user.id, "admin")) + "." + signature},
      {"payload of another user",
       header + "." + auth::base64url_encode(claims(core::uuid_v7(), "user")) + "." + signature},
      {"flipped signature byte", flipped},
      {"signature removed", user.token.substr(0, dot2 + 1)},
      {"signature doubled", user.token + signature},
      {"10 KB token", std::string(10 * 1024, 'A')},
      {"10 KB of dots", std::string(10 * 1024, '.')},
      {"10 KB valid-looking token",
       forge_token(R"({"alg":"HS256","typ":"JWT"})",
                   json::serialize(json::object{{"sub", user.id},
                                                {"pad", std::string(7000, 'p')},
                                                {"iss", kJwtIssuer},
                                                {"iat", now_s},
                                                {"exp", now_s + 600}}),
                   "guess")},
      {"RS256 header",
       forge_token(R"({"alg":"RS256","typ":"JWT"})", claims(user.id, "user"), kJwtSecret)},
      {"crit header",
       forge_token(R"({"alg":"HS256","crit":["exp"]})", claims(user.id, "user"), kJwtSecret)},
      {"duplicate alg",
       forge_token(R"({"alg":"HS256","alg":"none"})", claims(user.id, "user"), kJwtSecret)},
      {"header not JSON", auth::base64url_encode("not json") + "." +
                              auth::base64url_encode(claims(user.id, "user")) + "." + signature},
      {"padded base64", user.token + "=="},
      {"invalid base64", "!!!." + user.token.substr(dot1 + 1)},
      {"non-ASCII", "\xc3\xa9\xc3\xa9.\xc3\xa9.\xc3\xa9"},
  };
  for (const auto& [what, token] : forged) {
    INFO(what);
    const auto list = app.get("/v1/tasks", token);
    CHECK(list.status == 401);
    CHECK(list.header("www-authenticate").has_value());
    CHECK(app.get("/v1/tasks/" + victim.id, token).status == 401);
    CHECK(app.post("/v1/tasks", R"({"type":"echo","payload":"forged"})", token).status == 401);
    CHECK(app.serving());
  }
  victim.check_intact("forged tokens");
}

TEST_CASE("hostile: slow clients are disconnected at the read deadline") {
  AppFixture app([](config::Config& config) { config.http_read_timeout = 300ms; });
  Victim victim(app);

  // Half a request line that never completes.
  auto started = std::chrono::steady_clock::now();
  const auto half_line = testing::raw_exchange(app.port(), "GET /healthz HTT", 5s);
  CHECK_FALSE(half_line.timed_out);
  CHECK(half_line.bytes.empty());
  CHECK(std::chrono::steady_clock::now() - started < 4s);

  // Complete headers, a body that never arrives.
  const auto half_body = testing::raw_exchange(
      app.port(),
      "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: "
      "Bearer " +
          victim.user.token + "\r\nContent-Length: 100\r\n\r\n{\"type\":",
      5s);
  CHECK_FALSE(half_body.timed_out);
  CHECK(first_status(half_body.bytes) != 202);

  // Headers trickling in without end (a slowloris that never finishes its header block).
  const auto endless =
      testing::raw_exchange(app.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n", 5s);
  CHECK_FALSE(endless.timed_out);
  CHECK(endless.bytes.empty());

  // Many slow clients at once: each is closed, none blocks the others.
  std::vector<std::unique_ptr<boost::asio::io_context>> ios;
  std::vector<std::unique_ptr<tcp::socket>> sockets;
  for (int i = 0; i < 50; ++i) {
    ios.push_back(std::make_unique<boost::asio::io_context>());
    sockets.push_back(std::make_unique<tcp::socket>(*ios.back()));
    sockets.back()->connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), app.port()));
    boost::asio::write(*sockets.back(), boost::asio::buffer(std::string("GET /hea")));
  }
  CHECK(app.serving());
  // Every connection of ours is closed by the server: a read sees end of stream.
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    const auto ec = read_until_closed(*ios[i], *sockets[i], 5s);
    INFO("slow client " << i << ": " << ec.message());
    CHECK((ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset));
  }
  // And the server let go of them.
  CHECK(testing::wait_until([&] { return metric(app.app(), "mesh_http_connections") == 0; }, 10s));
  victim.check_intact("slow clients");
}
