// messages::validate, decode and encode: the validation table of the POST body, and records
// that round-trip exactly while poison records are refused with a reason.
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/messages/records.hpp"

namespace mesh::messages::test {
namespace {

namespace json = boost::json;

constexpr std::string_view kValid =
    R"({"ts":"19941114","sender":"alice","messageAttributes":{"k":"v"},)"
    R"("sent_from_ip":"192.0.2.1","priority":3})";

json::object valid_body() { return json::parse(kValid).as_object(); }

// The pointer of the field validate() refuses, or "ok".
std::string verdict(const json::object& body) {
  const auto result = validate(body);
  if (const auto* error = std::get_if<FieldError>(&result)) return error->pointer;
  return "ok";
}

// The valid body with `field` set to `value` (parsed JSON text).
std::string with(std::string_view field, std::string_view value) {
  auto body = valid_body();
  body[field] = json::parse(value);
  return verdict(body);
}

json::value nested(int levels) {
  json::value value = "leaf";
  for (int i = 0; i < levels; ++i) value = json::object{{"n", std::move(value)}};
  return value;
}

TEST_CASE("validate: the seed's body is accepted with every field", "[messages][records]") {
  const auto result = validate(valid_body());
  REQUIRE(std::holds_alternative<Fields>(result));
  const auto& fields = std::get<Fields>(result);
  CHECK(fields.ts == "19941114");
  CHECK(fields.sender == "alice");
  CHECK(json::serialize(fields.attributes) == R"({"k":"v"})");
  CHECK(fields.sent_from_ip == "192.0.2.1");
  CHECK(fields.priority == 3);
}

TEST_CASE("validate: missing and unknown fields", "[messages][records]") {
  for (const auto* field : {"ts", "sender", "messageAttributes", "sent_from_ip", "priority"}) {
    auto body = valid_body();
    body.erase(field);
    CHECK(verdict(body) == std::string("/") + field);
  }
  auto extra = valid_body();
  extra["id"] = "chosen-by-client";
  CHECK(verdict(extra) == "/id");
  auto escaped = valid_body();
  escaped["a/b~c"] = 1;
  CHECK(verdict(escaped) == "/a~1b~0c");
  CHECK(verdict(json::object{}) == "/ts");
  CHECK(verdict(json::object{{"ts", "19941114"}}) == "/sender");
}

TEST_CASE("validate: ts is YYYYMMDD (a real date) or RFC 3339", "[messages][records]") {
  for (const auto* good : {R"("19941114")", R"("20240229")", R"("2026-11-30T14:05:00Z")",
                           R"("2026-11-30T14:05:00.123456+01:00")", R"("2026-11-30t14:05:00z")",
                           R"("2016-12-31T23:59:60Z")", R"("2024-02-29T00:00:00-12:30")"}) {
    INFO(good);
    CHECK(with("ts", good) == "ok");
  }
  for (const auto* bad :
       {R"(19941114)",
        R"(null)",
        R"(["19941114"])",
        R"("")",
        R"("1994111")",
        R"("199411140")",
        R"("19940230")",
        R"("19941314")",
        R"("19941100")",
        R"("00000101")",
        R"("20230229")",
        R"("1994-11-14")",
        R"("2026-11-30T14:05:00")",
        R"("2026-11-30T24:00:00Z")",
        R"("2026-11-30T14:60:00Z")",
        R"("2026-11-30 14:05:00Z")",
        R"("2026-11-30T14:05:00.Z")",
        R"("2026-11-30T14:05:00+1:00")",
        R"("2026-02-30T14:05:00Z")",
        R"(" 19941114")",
        R"("2026-11-30T14:05:00.123456789012345678901234567890123456789012345Z")"}) {
    INFO(bad);
    CHECK(with("ts", bad) == "/ts");
  }
}

TEST_CASE("validate: sender is 1 to 128 characters without control characters",
          "[messages][records]") {
  std::string accents;
  for (int i = 0; i < 128; ++i) accents += "é";  // 128 characters, 256 bytes
  CHECK(with("sender", json::serialize(json::string(accents))) == "ok");
  CHECK(with("sender", R"("Zoë 🚀 東京")") == "ok");
  CHECK(with("sender", json::serialize(json::string(accents + "e"))) == "/sender");
  // Query parameters reach is_valid_sender without a JSON parser's UTF-8 check.
  CHECK(is_valid_sender("Zoë"));
  CHECK(is_valid_sender("\xf0\x9f\x9a\x80"));
  for (const char* bad :
       {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80"}) {
    CHECK_FALSE(is_valid_sender(bad));
  }
  CHECK(with("sender", json::serialize(json::string(std::string(129, 'a')))) == "/sender");
  for (const auto* bad : {R"("")", R"(7)", R"(null)", R"({"name":"x"})", R"("a\nb")",
                          R"("a\u0000b")", R"("a\tb")", R"("a\u007fb")", R"("a\u0085b")"}) {
    INFO(bad);
    CHECK(with("sender", bad) == "/sender");
  }
}

TEST_CASE("validate: messageAttributes is an object, at most 16 KiB and 8 levels",
          "[messages][records]") {
  CHECK(with("messageAttributes", "{}") == "ok");
  CHECK(with("messageAttributes", R"({"a":[1,2.5,true,null,"x",{"b":[]}]})") == "ok");
  for (const auto* bad : {R"([])", R"("x")", R"(null)", R"(1)", R"(true)"}) {
    INFO(bad);
    CHECK(with("messageAttributes", bad) == "/messageAttributes");
  }
  auto body = valid_body();
  body["messageAttributes"] = json::object{{"blob", std::string(16 * 1024 - 20, 'x')}};
  CHECK(verdict(body) == "ok");
  body["messageAttributes"] = json::object{{"blob", std::string(16 * 1024, 'x')}};
  CHECK(verdict(body) == "/messageAttributes");

  body["messageAttributes"] = nested(kMaxAttributesDepth);  // the outer object is level 1
  CHECK(verdict(body) == "ok");
  body["messageAttributes"] = nested(kMaxAttributesDepth + 1);
  CHECK(verdict(body) == "/messageAttributes");
  body["messageAttributes"] = json::object{{"deep", json::parse("[[[[[[[1]]]]]]]")}};  // 7 arrays
  CHECK(verdict(body) == "ok");
  body["messageAttributes"] = json::object{{"deep", json::parse("[[[[[[[[1]]]]]]]]")}};
  CHECK(verdict(body) == "/messageAttributes");
}

TEST_CASE("validate: sent_from_ip is an IPv4 or IPv6 address and nothing else",
          "[messages][records]") {
  for (const auto* good : {"192.0.2.1", "0.0.0.0", "255.255.255.255", "::1",
                           "::", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1", "FE80::1"}) {
    INFO(good);
    CHECK(is_valid_ip(good));
    CHECK(with("sent_from_ip", json::serialize(json::string(good))) == "ok");
  }
  for (const auto* bad :
       {"1.2.3.4.5", "::1%lo", "fe80::1%eth0", "[::1]", "1.2.3.4:80", "[::1]:80", "256.1.1.1",
        "1.2.3", "", " 1.2.3.4", "1.2.3.4 ", "localhost", "2001:db8:::1", "1.2.3.4/24"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_ip(bad));
    CHECK(with("sent_from_ip", json::serialize(json::string(bad))) == "/sent_from_ip");
  }
  CHECK(with("sent_from_ip", "3221225985") == "/sent_from_ip");
  CHECK(with("sent_from_ip", "null") == "/sent_from_ip");
}

TEST_CASE("validate: priority is a JSON integer from 0 to 9", "[messages][records]") {
  for (const auto* good : {"0", "9", "5"}) {
    INFO(good);
    CHECK(with("priority", good) == "ok");
  }
  // Boost.JSON parses 1.0 and 1e1 as doubles: refused although their value is integral.
  for (const auto* bad : {"-1", "10", "1.5", "1.0", "1e1", "1E0", R"("1")", "true", "null", "[1]",
                          "18446744073709551615", "-9223372036854775808"}) {
    INFO(bad);
    CHECK(with("priority", bad) == "/priority");
  }
}

Message sample() {
  Message message;
  message.id = core::uuid_v7();
  message.publisher_id = core::uuid_v7();
  message.ts = "2026-11-30T14:05:00.5+01:00";
  message.sender = "Zoë \"quoted\" \\ 🚀";
  message.attributes =
      json::parse(R"({"zeta":1,"alpha":{"ü":"😀","list":[1,2,{"c":null}]},"m":"a\tb"})").as_object();
  message.sent_from_ip = "2001:db8::1";
  message.priority = 7;
  message.published_at_ms = 1'795'000'000'123;
  return message;
}

TEST_CASE("records: encode then decode gives the message back, key order kept",
          "[messages][records]") {
  const Message message = sample();
  const std::string record = encode(message);
  auto decoded = decode(record);
  REQUIRE(std::holds_alternative<Message>(decoded));
  const auto& back = std::get<Message>(decoded);
  CHECK(back.id == message.id);
  CHECK(back.publisher_id == message.publisher_id);
  CHECK(back.ts == message.ts);
  CHECK(back.sender == message.sender);
  CHECK(json::serialize(back.attributes) == json::serialize(message.attributes));
  CHECK(json::serialize(back.attributes).starts_with(R"({"zeta":1,"alpha":)"));
  CHECK(back.sent_from_ip == message.sent_from_ip);
  CHECK(back.priority == 7);
  CHECK(back.published_at_ms == message.published_at_ms);
  CHECK(encode(back) == record);
}

TEST_CASE("records: poison records are refused with a reason, never thrown",
          "[messages][records]") {
  const Message message = sample();
  auto record = json::parse(encode(message)).as_object();
  auto mutated = [&](std::string_view field, json::value value) {
    auto copy = record;
    copy[field] = std::move(value);
    return json::serialize(copy);
  };
  auto without = [&](std::string_view field) {
    auto copy = record;
    copy.erase(field);
    return json::serialize(copy);
  };
  const std::vector<std::string> poison{
      "",
      "not json",
      "[1,2]",
      R"({"id":)",
      std::string(kMaxBodyBytes + 1, ' '),
      std::string(100, '[') + std::string(100, ']'),
      "\"\xff\xfe\"",
      without("id"),
      without("publisher_id"),
      without("published_at_ms"),
      without("sender"),
      mutated("id", "not-a-uuid"),
      mutated("id", 5),
      mutated("publisher_id", "E2B1C1D4-0000-7000-8000-000000000000"),
      mutated("published_at_ms", -1),
      mutated("published_at_ms", "1"),
      mutated("priority", 12),
      mutated("sent_from_ip", "::1%lo"),
      mutated("ts", "19941332"),
      mutated("unexpected", true),
  };
  for (const auto& text : poison) {
    INFO(text.substr(0, 200));
    const auto decoded = decode(text);
    REQUIRE(std::holds_alternative<DecodeError>(decoded));
    CHECK_FALSE(std::get<DecodeError>(decoded).reason.empty());
  }
}

}  // namespace
}  // namespace mesh::messages::test
