#include <string>
#include <variant>

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "mesh/tasks/records.hpp"

namespace mesh::tasks {
namespace {

namespace json = boost::json;

constexpr std::string_view kId = "0f8fad5b-d9cb-469f-a165-70867728950e";

template <class T>
T decoded_ok(Decoded<T> decoded) {
  if (const auto* error = std::get_if<DecodeError>(&decoded)) {
    FAIL("unexpected DecodeError: " << error->reason);
  }
  return std::get<T>(std::move(decoded));
}

template <class T>
std::string decoded_error(const Decoded<T>& decoded) {
  const auto* error = std::get_if<DecodeError>(&decoded);
  REQUIRE(error);
  CHECK_FALSE(error->reason.empty());
  return error->reason;
}

PendingTask sample_pending() {
  PendingTask task;
  task.id = std::string(kId);
  task.user_id = "user-42";
  task.type = TaskType::sha256;
  task.payload = json::parse(R"({"data":"abc","rounds":3})");
  task.created_at_ms = 1'700'000'000'123;
  task.profile_id = "fast";
  return task;
}

CompletedTask sample_completed() {
  CompletedTask task;
  task.id = std::string(kId);
  task.user_id = "user-42";
  task.status = TaskStatus::succeeded;
  task.result = json::parse(R"({"count":25})");
  task.attempts = 2;
  task.started_at_ms = 1'700'000'000'200;
  task.finished_at_ms = 1'700'000'000'250;
  return task;
}

// The JSON of a valid record with one member replaced (or removed, if `value` is empty).
std::string with_member(const std::string& record, std::string_view key, std::string_view value) {
  json::object object = json::parse(record).as_object();
  if (value.empty()) {
    object.erase(key);
  } else {
    object[key] = json::parse(value);
  }
  return json::serialize(object);
}

}  // namespace

TEST_CASE("task status names, parsing and rank") {
  for (const TaskStatus status :
       {TaskStatus::queued, TaskStatus::running, TaskStatus::succeeded, TaskStatus::failed}) {
    CHECK(parse_task_status(to_string(status)) == status);
  }
  CHECK_FALSE(parse_task_status("done"));
  CHECK_FALSE(parse_task_status("Queued"));
  CHECK(status_rank(TaskStatus::queued) == 0);
  CHECK(status_rank(TaskStatus::running) == 1);
  CHECK(status_rank(TaskStatus::succeeded) == 2);
  CHECK(status_rank(TaskStatus::failed) == 2);
}

TEST_CASE("pending records round trip") {
  PendingTask task = sample_pending();
  SECTION("sha256") {}
  SECTION("echo with unicode and nesting, empty profile") {
    task.type = TaskType::echo;
    task.payload = json::parse(R"({"a":[1,2.5,{"b":"\u00e9\ud83d\ude00"}],"n":null})");
    task.profile_id.clear();
  }
  SECTION("echo of null") {
    task.type = TaskType::echo;
    task.payload = nullptr;
  }
  SECTION("primes") {
    task.type = TaskType::primes;
    task.payload = json::parse(R"({"below":100000000})");
  }
  SECTION("sleep") {
    task.type = TaskType::sleep;
    task.payload = json::parse(R"({"ms":0})");
    task.created_at_ms = 0;
  }
  const std::string text = encode(task);
  const PendingTask decoded = decoded_ok(decode_pending(text));
  CHECK(decoded.id == task.id);
  CHECK(decoded.user_id == task.user_id);
  CHECK(decoded.type == task.type);
  CHECK(decoded.payload == task.payload);
  CHECK(decoded.created_at_ms == task.created_at_ms);
  CHECK(decoded.profile_id == task.profile_id);
  CHECK(encode(decoded) == text);
}

TEST_CASE("pending record wire format") {
  CHECK(
      encode(sample_pending()) ==
      R"({"id":"0f8fad5b-d9cb-469f-a165-70867728950e","user_id":"user-42","type":"sha256",)"
      R"("payload":{"data":"abc","rounds":3},"created_at_ms":1700000000123,"profile_id":"fast"})");
}

TEST_CASE("completed records round trip") {
  CompletedTask task = sample_completed();
  SECTION("succeeded") {}
  SECTION("succeeded with a null result") { task.result = nullptr; }
  SECTION("failed") {
    task.status = TaskStatus::failed;
    task.result = nullptr;
    task.error = "worker shut down\n\"twice\"";
    task.attempts = 3;
  }
  SECTION("under a profile") { task.profile_id = "0f8fad5b-d9cb-469f-a165-70867728950f"; }
  const std::string text = encode(task);
  const CompletedTask decoded = decoded_ok(decode_completed(text));
  CHECK(decoded.id == task.id);
  CHECK(decoded.user_id == task.user_id);
  CHECK(decoded.status == task.status);
  CHECK(decoded.result == task.result);
  CHECK(decoded.error == task.error);
  CHECK(decoded.attempts == task.attempts);
  CHECK(decoded.started_at_ms == task.started_at_ms);
  CHECK(decoded.finished_at_ms == task.finished_at_ms);
  CHECK(decoded.profile_id == task.profile_id);
  CHECK(encode(decoded) == text);
}

TEST_CASE("completed records without profile_id (older workers) decode with none") {
  CompletedTask task = sample_completed();
  task.profile_id = "p";
  const std::string without = with_member(encode(task), "profile_id", "");
  CHECK(without.find("profile_id") == std::string::npos);
  CHECK(decoded_ok(decode_completed(without)).profile_id.empty());
}

TEST_CASE("completed record wire format") {
  CHECK(encode(sample_completed()) ==
        R"({"id":"0f8fad5b-d9cb-469f-a165-70867728950e","user_id":"user-42","status":"succeeded",)"
        R"("result":{"count":25},"error":"","attempts":2,"started_at_ms":1700000000200,)"
        R"("finished_at_ms":1700000000250,"profile_id":""})");
}

TEST_CASE("decoders tolerate unknown top-level members") {
  const std::string pending = with_member(encode(sample_pending()), "trace_id", R"("abc")");
  CHECK(decoded_ok(decode_pending(pending)).user_id == "user-42");
  const std::string completed = with_member(encode(sample_completed()), "worker", "7");
  CHECK(decoded_ok(decode_completed(completed)).attempts == 2);
}

TEST_CASE("pending records breaking a rule are rejected with a reason") {
  const std::string valid = encode(sample_pending());
  struct Case {
    std::string text;
    std::string reason;  // a substring of the reason
  };
  const Case cases[] = {
      {with_member(valid, "id", ""), "/id: is required"},
      {with_member(valid, "id", "7"), "/id: must be a string"},
      {with_member(valid, "id", R"("")"), "/id: must not be empty"},
      {with_member(valid, "id", R"("0F8FAD5B-D9CB-469F-A165-70867728950E")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "id", R"("0f8fad5bd9cb469fa16570867728950e")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "id", R"("0f8fad5b-d9cb-469f-a165-70867728950e ")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "id", R"("{0f8fad5b-d9cb-469f-a165-70867728950e}")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "id", R"("0f8fad5b-d9cb-469f-a165-70867728950g")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "id", R"("0f8fad5b-d9cb-469f-a16570867728950e-")"),
       "/id: must be a canonical UUID"},
      {with_member(valid, "user_id", ""), "/user_id: is required"},
      {with_member(valid, "user_id", R"("")"), "/user_id: must not be empty"},
      {with_member(valid, "user_id", "42"), "/user_id: must be a string"},
      {with_member(valid, "type", R"("fibonacci")"), "/type: is not a known task type"},
      {with_member(valid, "type", R"("SHA256")"), "/type: is not a known task type"},
      {with_member(valid, "type", "1"), "/type: must be a string"},
      {with_member(valid, "payload", ""), "/payload: is required"},
      {with_member(valid, "payload", R"({"data":"abc","rounds":0})"),
       "/payload/rounds: must be an integer from 1 to 10000000"},
      {with_member(valid, "payload", R"({"data":"abc","rounds":2,"x":1})"),
       "/payload/x: is not a known field"},
      {with_member(valid, "payload", R"([1])"), "/payload: must be an object"},
      {with_member(valid, "created_at_ms", ""), "/created_at_ms: is required"},
      {with_member(valid, "created_at_ms", R"("1700000000123")"),
       "/created_at_ms: must be an integer"},
      {with_member(valid, "created_at_ms", "1.7e12"), "/created_at_ms: must be an integer"},
      {with_member(valid, "created_at_ms", "-1"), "/created_at_ms: must be an integer from 0"},
      {with_member(valid, "created_at_ms", "99999999999999999999999"),
       "/created_at_ms: must be an integer from 0"},
      {with_member(valid, "profile_id", ""), "/profile_id: is required"},
      {with_member(valid, "profile_id", "null"), "/profile_id: must be a string"},
      {"[]", "record must be an object"},
      {"\"text\"", "record must be an object"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK_THAT(decoded_error(decode_pending(c.text)), Catch::Contains(c.reason));
  }
}

TEST_CASE("completed records breaking a rule are rejected with a reason") {
  const std::string valid = encode(sample_completed());
  CompletedTask failed = sample_completed();
  failed.status = TaskStatus::failed;
  failed.result = nullptr;
  failed.error = "boom";
  const std::string valid_failed = encode(failed);
  struct Case {
    std::string text;
    std::string reason;
  };
  const Case cases[] = {
      {with_member(valid, "id", R"("not-a-uuid")"), "/id: must be a canonical UUID"},
      {with_member(valid, "status", R"("queued")"), "/status: must be succeeded or failed"},
      {with_member(valid, "status", R"("running")"), "/status: must be succeeded or failed"},
      {with_member(valid, "status", R"("done")"), "/status: must be succeeded or failed"},
      {with_member(valid, "status", "2"), "/status: must be a string"},
      {with_member(valid, "result", ""), "/result: is required"},
      {with_member(valid, "error", ""), "/error: is required"},
      {with_member(valid, "error", R"("oops")"), "/error: must be empty when status is succeeded"},
      {with_member(valid_failed, "result", "{}"), "/result: must be null when status is failed"},
      {with_member(valid_failed, "error", R"("")"),
       "/error: must not be empty when status is failed"},
      {with_member(valid, "attempts", "0"), "/attempts: must be an integer from 1 to 2147483647"},
      {with_member(valid, "attempts", "2147483648"), "/attempts: must be an integer from 1"},
      {with_member(valid, "attempts", "true"), "/attempts: must be an integer"},
      {with_member(valid, "started_at_ms", "-5"), "/started_at_ms: must be an integer from 0"},
      {with_member(valid, "finished_at_ms", "1e3"), "/finished_at_ms: must be an integer"},
      {with_member(valid, "finished_at_ms", ""), "/finished_at_ms: is required"},
      {with_member(valid, "profile_id", "7"), "/profile_id: must be a string"},
      {with_member(valid, "profile_id", "null"), "/profile_id: must be a string"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK_THAT(decoded_error(decode_completed(c.text)), Catch::Contains(c.reason));
  }
}

TEST_CASE("garbage never crashes a decoder") {
  const std::string too_deep = std::string(100000, '[') + std::string(100000, ']');
  struct Case {
    std::string text;
    std::string reason;
  };
  const Case cases[] = {
      {"", "invalid JSON at byte 0"},
      {"garbage", "invalid JSON"},
      {"{", "invalid JSON"},
      {"{\"id\":}", "invalid JSON"},
      {"{} {}", "invalid JSON at byte 3"},
      {"{\"id\":\"\xff\xfe\"}", "invalid JSON"},
      {"{\"id\":\"\xc3\"}", "invalid JSON"},
      {"{\"id\":\"\\ud800\"}", "invalid JSON"},
      {std::string("{\"id\":\"a\0b\"}", 12), "invalid JSON"},
      {"{\"created_at_ms\":NaN}", "invalid JSON"},
      {"{\"a\":1,}", "invalid JSON"},
      {"/* c */{}", "invalid JSON"},
      {too_deep, "invalid JSON"},
      {std::string(kMaxRecordBytes + 1, ' '), "exceeds 1048576"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text.substr(0, 40));
    CHECK_THAT(decoded_error(decode_pending(c.text)), Catch::Contains(c.reason));
    CHECK_THAT(decoded_error(decode_completed(c.text)), Catch::Contains(c.reason));
  }
}

TEST_CASE("every truncation of a valid record is rejected") {
  for (const std::string& text : {encode(sample_pending()), encode(sample_completed())}) {
    for (std::size_t length = 0; length < text.size(); ++length) {
      const std::string_view prefix(text.data(), length);
      CAPTURE(prefix);
      CHECK(std::holds_alternative<DecodeError>(decode_pending(prefix)));
      CHECK(std::holds_alternative<DecodeError>(decode_completed(prefix)));
    }
  }
}

TEST_CASE("single-byte corruption of a valid record never throws") {
  for (const std::string& valid : {encode(sample_pending()), encode(sample_completed())}) {
    for (std::size_t i = 0; i < valid.size(); ++i) {
      for (const char replacement : {'\0', '"', '\\', '{', ']', '9', '-', 'e', '\x80', '\xff'}) {
        std::string text = valid;
        text[i] = replacement;
        CHECK_NOTHROW(decode_pending(text));
        CHECK_NOTHROW(decode_completed(text));
      }
    }
  }
}

TEST_CASE("payload depth fits inside a record up to the limit") {
  const auto echo_record = [](std::size_t depth) {
    return R"({"id":"0f8fad5b-d9cb-469f-a165-70867728950e","user_id":"u","type":"echo","payload":)" +
           std::string(depth, '[') + std::string(depth, ']') +
           R"(,"created_at_ms":0,"profile_id":""})";
  };
  CHECK(decoded_ok(decode_pending(echo_record(kMaxPayloadDepth))).payload.is_array());
  CHECK_THAT(decoded_error(decode_pending(echo_record(kMaxPayloadDepth + 1))),
             Catch::Contains("too deep"));
}

TEST_CASE("records up to exactly the size limit decode") {
  PendingTask task = sample_pending();
  task.type = TaskType::echo;
  task.payload = "";
  const std::size_t overhead = encode(task).size();
  task.payload = std::string(kMaxRecordBytes - overhead, 'x');
  const std::string text = encode(task);
  REQUIRE(text.size() == kMaxRecordBytes);
  CHECK(decoded_ok(decode_pending(text)).payload == task.payload);
  CHECK_THAT(decoded_error(decode_pending(text + " ")), Catch::Contains("exceeds"));
}

}  // namespace mesh::tasks
