#include <chrono>
#include <stdexcept>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "mesh/tasks/task_types.hpp"

namespace mesh::tasks {
namespace {

namespace json = boost::json;

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace

TEST_CASE("task type names round trip") {
  for (const TaskType type : kAllTaskTypes) {
    CHECK(parse_task_type(to_string(type)) == type);
  }
  CHECK(to_string(TaskType::sha256) == "sha256");
  CHECK_FALSE(parse_task_type("SHA256"));
  CHECK_FALSE(parse_task_type(""));
  CHECK_FALSE(parse_task_type("echo "));
  CHECK_FALSE(parse_task_type("fibonacci"));
}

TEST_CASE("only sha256 and primes take a CPU slot") {
  CHECK(is_cpu_bound(TaskType::sha256));
  CHECK(is_cpu_bound(TaskType::primes));
  CHECK_FALSE(is_cpu_bound(TaskType::echo));
  CHECK_FALSE(is_cpu_bound(TaskType::sleep));
}

TEST_CASE("valid payloads pass validation") {
  struct Case {
    TaskType type;
    std::string payload;
  };
  const std::string max_data =
      R"({"data":")" + std::string(kMaxShaDataBytes, 'a') + R"(","rounds":1})";
  const Case cases[] = {
      {TaskType::echo, "null"},
      {TaskType::echo, "1.5"},
      {TaskType::echo, R"({"a":[1,{"b":"\u00e9\ud83d\ude00"}],"c":null})"},
      {TaskType::echo, nested_arrays(kMaxPayloadDepth)},
      {TaskType::sha256, R"({"data":"","rounds":1})"},
      {TaskType::sha256, R"({"rounds":10000000,"data":"abc"})"},
      {TaskType::sha256, max_data},
      {TaskType::primes, R"({"below":2})"},
      {TaskType::primes, R"({"below":100000000})"},
      {TaskType::sleep, R"({"ms":0})"},
      {TaskType::sleep, R"({"ms":60000})"},
  };
  for (const Case& c : cases) {
    CAPTURE(to_string(c.type), c.payload.substr(0, 80));
    CHECK_FALSE(validate_payload(c.type, json::parse(c.payload)));
  }
}

TEST_CASE("invalid payloads name the field and the rule") {
  struct Case {
    TaskType type;
    std::string payload;
    std::string field;
    std::string detail;  // a substring of the detail
  };
  const std::string long_data =
      R"({"data":")" + std::string(kMaxShaDataBytes + 1, 'a') + R"(","rounds":1})";
  std::string innermost_array = "/payload";
  for (std::size_t level = 1; level <= kMaxPayloadDepth; ++level) {
    innermost_array += "/0";
  }
  const Case cases[] = {
      // Not an object.
      {TaskType::sha256, "[]", "/payload", "must be an object"},
      {TaskType::primes, "null", "/payload", "must be an object"},
      {TaskType::sleep, "\"ms\"", "/payload", "must be an object"},
      // Missing fields.
      {TaskType::sha256, R"({"rounds":1})", "/payload/data", "is required"},
      {TaskType::sha256, R"({"data":"abc"})", "/payload/rounds", "is required"},
      {TaskType::primes, "{}", "/payload/below", "is required"},
      {TaskType::sleep, "{}", "/payload/ms", "is required"},
      // Wrong JSON types.
      {TaskType::sha256, R"({"data":1,"rounds":1})", "/payload/data", "must be a string"},
      {TaskType::sha256, R"({"data":null,"rounds":1})", "/payload/data", "must be a string"},
      {TaskType::sha256, R"({"data":"abc","rounds":"5"})", "/payload/rounds", "must be an integer"},
      {TaskType::sha256, R"({"data":"abc","rounds":true})", "/payload/rounds",
       "must be an integer"},
      {TaskType::primes, R"({"below":[10]})", "/payload/below", "must be an integer"},
      {TaskType::sleep, R"({"ms":null})", "/payload/ms", "must be an integer"},
      {TaskType::sleep, R"({"ms":{}})", "/payload/ms", "must be an integer"},
      // Floats, even integral ones.
      {TaskType::sha256, R"({"data":"abc","rounds":1.5})", "/payload/rounds",
       "without fraction or exponent"},
      {TaskType::sha256, R"({"data":"abc","rounds":1e3})", "/payload/rounds",
       "without fraction or exponent"},
      {TaskType::primes, R"({"below":100.0})", "/payload/below", "without fraction or exponent"},
      {TaskType::sleep, R"({"ms":-0.0})", "/payload/ms", "without fraction or exponent"},
      // Out of range.
      {TaskType::sha256, R"({"data":"abc","rounds":0})", "/payload/rounds", "from 1 to 10000000"},
      {TaskType::sha256, R"({"data":"abc","rounds":-1})", "/payload/rounds", "from 1 to 10000000"},
      {TaskType::sha256, R"({"data":"abc","rounds":10000001})", "/payload/rounds",
       "from 1 to 10000000"},
      {TaskType::primes, R"({"below":1})", "/payload/below", "from 2 to 100000000"},
      {TaskType::primes, R"({"below":-0})", "/payload/below", "from 2 to 100000000"},
      {TaskType::primes, R"({"below":100000001})", "/payload/below", "from 2 to 100000000"},
      {TaskType::primes, R"({"below":-9223372036854775808})", "/payload/below",
       "from 2 to 100000000"},
      {TaskType::primes, R"({"below":18446744073709551615})", "/payload/below",
       "from 2 to 100000000"},
      {TaskType::primes, R"({"below":99999999999999999999999})", "/payload/below",
       "from 2 to 100000000"},
      {TaskType::primes, R"({"below":-99999999999999999999999})", "/payload/below",
       "from 2 to 100000000"},
      {TaskType::primes, R"({"below":1e400})", "/payload/below", "from 2 to 100000000"},
      {TaskType::sleep, R"({"ms":-1})", "/payload/ms", "from 0 to 60000"},
      {TaskType::sleep, R"({"ms":60001})", "/payload/ms", "from 0 to 60000"},
      // Extra fields, including ones differing only in case.
      {TaskType::sha256, R"({"data":"abc","rounds":1,"salt":"x"})", "/payload/salt",
       "is not a known field"},
      {TaskType::primes, R"({"below":10,"Below":10})", "/payload/Below", "is not a known field"},
      {TaskType::sleep, R"({"ms":1,"a/b~c":1})", "/payload/a~1b~0c", "is not a known field"},
      // Size limits.
      {TaskType::sha256, long_data, "/payload/data", "at most 65536 bytes"},
      // echo: JSON cannot carry non-finite numbers, and depth is bounded.
      {TaskType::echo, "1e400", "/payload", "finite"},
      {TaskType::echo, R"({"a":[0,{"b/c":-1e400}]})", "/payload/a/1/b~1c", "finite"},
      {TaskType::echo, nested_arrays(kMaxPayloadDepth + 1), innermost_array, "deeper than 31"},
      // Postgres jsonb cannot hold U+0000, in values or in keys, for any type.
      {TaskType::echo, R"({"a":["x\u0000y"]})", "/payload/a/0", "U+0000"},
      {TaskType::echo, R"({"k\u0000":1})", std::string("/payload/k\0", 11), "U+0000"},
      {TaskType::sha256, R"({"data":"\u0000","rounds":1})", "/payload/data", "U+0000"},
  };
  for (const Case& c : cases) {
    CAPTURE(to_string(c.type), c.payload.substr(0, 80));
    const auto error = validate_payload(c.type, json::parse(c.payload));
    REQUIRE(error);
    CHECK(error->field == c.field);
    CHECK_THAT(error->detail, Catch::Contains(c.detail));
  }
}

TEST_CASE("echo returns the exact payload") {
  for (const std::string& text : {
           std::string("null"),
           std::string("true"),
           std::string("-12"),
           std::string("18446744073709551615"),
           std::string("0.1"),
           std::string(R"("plain")"),
           std::string(R"({"nested":{"list":[1,2.5,"\u00fc\u6f22\ud83d\ude80",null,[]],"o":{}}})"),
           nested_arrays(kMaxPayloadDepth),
       }) {
    CAPTURE(text);
    const json::value payload = json::parse(text);
    const json::value result = execute(TaskType::echo, payload);
    CHECK(result == payload);
    CHECK(json::serialize(result) == json::serialize(payload));
  }
}

TEST_CASE("execute computes each type's result") {
  CHECK(
      execute(TaskType::sha256, json::parse(R"({"data":"abc","rounds":1})")) ==
      json::parse(R"({"hex":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})"));
  CHECK(
      execute(TaskType::sha256, json::parse(R"({"data":"abc","rounds":3})")) ==
      json::parse(R"({"hex":"f2a778f1a6ed3d5bc59a5d79104c598f3f07093f240ca4e91333fb09ed4f36da"})"));
  CHECK(execute(TaskType::primes, json::parse(R"({"below":2})")) == json::parse(R"({"count":0})"));
  CHECK(execute(TaskType::primes, json::parse(R"({"below":100})")) ==
        json::parse(R"({"count":25})"));
  CHECK(execute(TaskType::primes, json::parse(R"({"below":1000000})")) ==
        json::parse(R"({"count":78498})"));
  CHECK(execute(TaskType::sleep, json::parse(R"({"ms":250})")) ==
        json::parse(R"({"slept_ms":250})"));
}

TEST_CASE("execute refuses payloads that fail validation") {
  CHECK_THROWS_AS(execute(TaskType::sha256, json::parse(R"({"data":"abc"})")),
                  std::invalid_argument);
  CHECK_THROWS_AS(execute(TaskType::primes, json::parse(R"({"below":1.5})")),
                  std::invalid_argument);
  CHECK_THROWS_AS(execute(TaskType::sleep, json::parse(R"({"ms":-1})")), std::invalid_argument);
  CHECK_THROWS_AS(execute(TaskType::echo, json::parse("1e400")), std::invalid_argument);
}

TEST_CASE("sleep_duration is the timer a worker waits on") {
  CHECK(sleep_duration(TaskType::sleep, json::parse(R"({"ms":250})")) ==
        std::chrono::milliseconds(250));
  CHECK(sleep_duration(TaskType::sleep, json::parse(R"({"ms":0})")) ==
        std::chrono::milliseconds(0));
  CHECK_FALSE(sleep_duration(TaskType::echo, json::parse(R"({"ms":250})")));
  CHECK_FALSE(sleep_duration(TaskType::primes, json::parse(R"({"below":10})")));
  CHECK_THROWS_AS(sleep_duration(TaskType::sleep, json::parse(R"({"ms":"250"})")),
                  std::invalid_argument);
}

}  // namespace mesh::tasks
