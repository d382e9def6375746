// The gateway API of issue 2 end to end: real HTTP against the whole product in-process
// (embedded Kafka mock cluster, a fresh Postgres database, the throwaway Redis).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <future>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "app_fixture.hpp"
#include "mesh/auth/base64url.hpp"
#include "mesh/auth/jwt.hpp"
#include "mesh/core/ids.hpp"
#include "mesh/testing/env.hpp"

using namespace mesh;
using namespace mesh::roles::test;
namespace json = boost::json;

namespace {

std::string credentials_json(const json::value& username, const json::value& password) {
  return json::serialize(json::object{{"username", username}, {"password", password}});
}
std::string credentials(std::string_view username, std::string_view password) {
  return credentials_json(json::string(username), json::string(password));
}
json::value jstr(std::string_view text) { return json::string(text); }
std::string text_of(const json::value& value) {
  return value.is_string() ? std::string(value.as_string()) : json::serialize(value);
}

std::string repeat(std::string_view unit, std::size_t times) {
  std::string out;
  for (std::size_t i = 0; i < times; ++i) out += unit;
  return out;
}

void check_problem(const testing::HttpReply& reply, unsigned status) {
  INFO(reply.status << " " << reply.body);
  CHECK(reply.status == status);
  CHECK(reply.header("content-type") == "application/problem+json");
  const auto body = json::parse(reply.body).as_object();
  CHECK(body.at("status").to_number<unsigned>() == status);
  CHECK(body.at("title").is_string());
  CHECK(body.at("detail").is_string());
}

void check_unauthorized(const testing::HttpReply& reply) {
  check_problem(reply, 401);
  const auto challenge = reply.header("www-authenticate");
  REQUIRE(challenge);
  CHECK(challenge->rfind("Bearer", 0) == 0);
}

std::string task_body(std::string_view type, std::string_view payload_json) {
  return "{\"type\":\"" + std::string(type) + "\",\"payload\":" + std::string(payload_json) + "}";
}

std::vector<std::string> ids_of(const std::vector<json::object>& items) {
  std::vector<std::string> ids;
  for (const auto& item : items) ids.emplace_back(item.at("id").as_string());
  return ids;
}

}  // namespace

TEST_CASE("gateway: register creates accounts and refuses invalid or taken names") {
  AppFixture app;
  int created = 0;

  const auto reply = app.post("/v1/auth/register", credentials("alice", std::string(kPassword)));
  INFO(reply.body);
  REQUIRE(reply.status == 201);
  CHECK(reply.header("content-type").value_or("").rfind("application/json", 0) == 0);
  const auto body = reply.json().as_object();
  CHECK(body.size() == 2);
  CHECK(core::is_uuid(body.at("id").as_string()));
  CHECK(body.at("username") == "alice");
  ++created;
  // argon2id hash stored, never the password.
  const auto hash = app.sql_value("SELECT password_hash FROM users WHERE username = 'alice'");
  REQUIRE(hash);
  CHECK(hash->rfind("$argon2id$", 0) == 0);
  CHECK(hash->find(kPassword) == std::string::npos);

  // Taken, exactly and in another case.
  for (const char* taken : {"alice", "ALICE", "Alice"}) {
    INFO(taken);
    check_problem(app.post("/v1/auth/register", credentials(taken, "another password")), 409);
  }

  // Usernames: 3 to 64 of [A-Za-z0-9_.-].
  struct Name {
    json::value value;
    bool valid;
  };
  const std::vector<Name> names{
      {"ab", false},
      {"abc", true},
      {jstr(std::string(64, 'n')), true},
      {jstr(std::string(65, 'm')), false},
      {"A.b-c_9", true},
      {"has space", false},
      {"semi;colon", false},
      {"slash/name", false},
      {"quote\"d", false},
      {"émile", false},  // letters outside ASCII
      {"zoë_user", false},
      {"", false},
      {json::value(json::string(std::string_view("nul\0byte", 8))), false},
      {42, false},  // not a string
      {nullptr, false},
      {json::array{"abc"}, false},
      {json::object{{"name", "abc"}}, false},
      {true, false},
  };
  for (const auto& name : names) {
    const auto r = app.post("/v1/auth/register", credentials_json(name.value, jstr(kPassword)));
    INFO(json::serialize(name.value) << " -> " << r.status << " " << r.body);
    if (name.valid) {
      CHECK(r.status == 201);
      ++created;
    } else {
      check_problem(r, 400);
      CHECK(problem_field(r) == "/username");
    }
  }
  // Missing username or password.
  {
    const auto r = app.post("/v1/auth/register", R"({"password":"long enough password"})");
    check_problem(r, 400);
    CHECK(problem_field(r) == "/username");
    const auto p = app.post("/v1/auth/register", R"({"username":"nopassword"})");
    check_problem(p, 400);
    CHECK(problem_field(p) == "/password");
  }

  // Passwords: 8 to 128 characters, counted as characters, not bytes.
  struct Password {
    json::value value;
    bool valid;
  };
  const std::vector<Password> passwords{
      {jstr(std::string(7, 'p')), false},
      {jstr(std::string(8, 'p')), true},
      {jstr(std::string(128, 'p')), true},
      {jstr(std::string(129, 'p')), false},
      {jstr(repeat("é", 7)), false},    // 14 bytes, 7 characters
      {jstr(repeat("é", 8)), true},     // 16 bytes, 8 characters
      {jstr(repeat("€", 128)), true},   // 384 bytes, 128 characters
      {jstr(repeat("€", 129)), false},  // 129 characters
      {jstr(repeat("😀", 8)), true},     // 4-byte characters
      {jstr(repeat("😀", 7)), false},    // 28 bytes but 7 characters
      {12345678, false},
      {nullptr, false},
      {json::array{"password"}, false},
  };
  int n = 0;
  for (const auto& password : passwords) {
    const std::string username = "pw_user_" + std::to_string(n++);
    const auto r = app.post("/v1/auth/register", credentials_json(jstr(username), password.value));
    INFO(json::serialize(password.value) << " -> " << r.status << " " << r.body);
    if (password.valid) {
      CHECK(r.status == 201);
      ++created;
      // And the password works, byte for byte.
      if (r.status == 201) {
        const auto login =
            app.post("/v1/auth/login", credentials_json(jstr(username), password.value));
        CHECK(login.status == 200);
      }
    } else {
      check_problem(r, 400);
      CHECK(problem_field(r) == "/password");
    }
  }

  // Unknown fields are refused, and nothing is created.
  {
    const auto r = app.post("/v1/auth/register",
                            R"({"username":"eve","password":"long enough","role":"admin"})");
    check_problem(r, 400);
    CHECK(problem_field(r) == "/role");
  }

  // 415 unless the body is declared application/json.
  for (const char* type :
       {"text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json"}) {
    INFO(type);
    testing::HttpCall call{.method = "POST",
                           .target = "/v1/auth/register",
                           .body = credentials("eve", std::string(kPassword)),
                           .headers = {{"Content-Type", type}}};
    check_problem(testing::http(app.port(), call), 415);
  }
  {
    testing::HttpCall call{.method = "POST",
                           .target = "/v1/auth/register",
                           .body = credentials("eve", std::string(kPassword))};
    check_problem(testing::http(app.port(), call), 415);
  }
  // A parameter on the media type is fine.
  {
    testing::HttpCall call{.method = "POST",
                           .target = "/v1/auth/register",
                           .body = credentials("charset_user", std::string(kPassword)),
                           .headers = {{"Content-Type", "application/json; charset=utf-8"}}};
    CHECK(testing::http(app.port(), call).status == 201);
    ++created;
  }

  // Malformed JSON, and JSON that is not an object.
  for (const char* bad : {"{", "{\"username\":", "not json", "{\"username\":\"x\",}", "[]",
                          "\"alice\"", "null", "{} {}"}) {
    INFO(bad);
    check_problem(app.post("/v1/auth/register", bad), 400);
  }
  check_problem(app.post("/v1/auth/register", ""), 415);  // no body, no Content-Type

  // Exactly the accounts answered 201 exist, and eve was never created.
  CHECK(app.sql_count("SELECT count(*) FROM users") == created);
  CHECK(app.sql_count("SELECT count(*) FROM users WHERE username = 'eve'") == 0);
  CHECK(app.post("/v1/auth/register", credentials("eve", std::string(kPassword))).status == 201);
}

TEST_CASE("gateway: login issues bearer tokens; bad credentials get one indistinct 401") {
  AppFixture app;
  const auto id = app.register_user("bob");

  const auto reply = app.post("/v1/auth/login", credentials("bob", std::string(kPassword)));
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  const auto body = reply.json().as_object();
  CHECK(body.at("token_type") == "Bearer");
  CHECK(body.at("expires_in") == 3600);
  const std::string token(body.at("access_token").as_string());
  CHECK(std::count(token.begin(), token.end(), '.') == 2);

  // The token names the user and works on /v1/tasks.
  const auth::JwtCodec codec(std::string(kJwtSecret), std::string(kJwtIssuer), 3600s);
  const auto verified = codec.verify(token, std::chrono::system_clock::now());
  REQUIRE(verified.claims);
  CHECK(verified.claims->subject == id);
  CHECK(verified.claims->username == "bob");
  const auto list = app.get("/v1/tasks", token);
  CHECK(list.status == 200);
  CHECK(list.json().at("items").as_array().empty());

  const auto wrong = app.post("/v1/auth/login", credentials("bob", "wrong password"));
  const auto unknown = app.post("/v1/auth/login", credentials("nobody", std::string(kPassword)));
  check_problem(wrong, 401);
  check_problem(unknown, 401);
  CHECK(wrong.body == unknown.body);  // nothing tells which part was wrong

  // Other refusals.
  check_problem(app.post("/v1/auth/login", R"({"username":"bob"})"), 400);
  check_problem(app.post("/v1/auth/login", R"({"username":5,"password":"x"})"), 400);
  check_problem(app.post("/v1/auth/login", "{"), 400);
  {
    testing::HttpCall call{.method = "POST",
                           .target = "/v1/auth/login",
                           .body = credentials("bob", std::string(kPassword)),
                           .headers = {{"Content-Type", "text/plain"}}};
    check_problem(testing::http(app.port(), call), 415);
  }
  // Absurdly long credentials are refused without hashing them.
  check_problem(app.post("/v1/auth/login", credentials(std::string(5000, 'b'), "x")), 401);
  check_problem(app.post("/v1/auth/login", credentials("bob", std::string(100'000, 'x'))), 401);
}

TEST_CASE("gateway: every /v1 task route requires a valid bearer token") {
  AppFixture app;
  const auto user = app.new_user("carol");
  // Control: a valid token, also one forged here with the right secret (so the forgeries below
  // differ from it only in what they get wrong).
  const auto now = std::chrono::system_clock::now();
  const auto now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const std::string claims = json::serialize(json::object{{"sub", user.id},
                                                          {"name", user.username},
                                                          {"role", "user"},
                                                          {"iss", kJwtIssuer},
                                                          {"iat", now_s},
                                                          {"exp", now_s + 600}});
  const std::string hs256 = R"({"alg":"HS256","typ":"JWT"})";
  const auto forged_ok = forge_token(hs256, claims, kJwtSecret);
  CHECK(app.get("/v1/tasks", user.token).status == 200);
  CHECK(app.get("/v1/tasks", forged_ok).status == 200);

  const auth::JwtCodec expired_codec(std::string(kJwtSecret), std::string(kJwtIssuer), 3600s);
  const auth::JwtCodec other_secret(std::string("another-secret-that-is-long-enough-0123456789"),
                                    std::string(kJwtIssuer), 3600s);
  const auth::JwtCodec other_issuer(std::string(kJwtSecret), "someone-else", 3600s);
  // The payload of a valid token swapped for one claiming to be admin, signature kept.
  const auto dot1 = user.token.find('.');
  const auto dot2 = user.token.find('.', dot1 + 1);
  const std::string admin_claims = json::serialize(json::object{{"sub", user.id},
                                                                {"name", user.username},
                                                                {"role", "admin"},
                                                                {"iss", kJwtIssuer},
                                                                {"iat", now_s},
                                                                {"exp", now_s + 600}});
  const std::string tampered = user.token.substr(0, dot1 + 1) +
                               auth::base64url_encode(admin_claims) + user.token.substr(dot2);

  struct Bad {
    const char* what;
    std::optional<std::string> authorization;
  };
  const std::vector<Bad> bad{
      {"no header", std::nullopt},
      {"empty header", std::string("")},
      {"wrong scheme", "Basic " + auth::base64url_encode("carol:" + std::string(kPassword))},
      {"token without scheme", user.token},
      {"scheme without token", std::string("Bearer ")},
      {"alg none", "Bearer " + forge_token(R"({"alg":"none","typ":"JWT"})", claims, "", true)},
      {"alg none with a signature",
       "Bearer " + forge_token(R"({"alg":"none","typ":"JWT"})", claims, kJwtSecret)},
      {"alg HS512", "Bearer " + forge_token(R"({"alg":"HS512","typ":"JWT"})", claims, kJwtSecret)},
      {"bad signature (other secret)",
       "Bearer " + other_secret.issue(user.id, user.username, "user", now)},
      {"tampered payload", "Bearer " + tampered},
      {"expired", "Bearer " + expired_codec.issue(user.id, user.username, "user", now - 3h)},
      {"wrong issuer", "Bearer " + other_issuer.issue(user.id, user.username, "user", now)},
      {"garbage", std::string("Bearer not-a-token")},
      {"two segments", std::string("Bearer abc.def")},
      {"four segments", "Bearer " + user.token + ".x"},
      {"10 KB token", "Bearer " + std::string(10 * 1024, 'a')},
  };
  const std::string some_id = core::uuid_v7();
  for (const auto& b : bad) {
    INFO(b.what);
    testing::HttpReply replies[3];
    for (int route = 0; route < 3; ++route) {
      testing::HttpCall call;
      call.method = route == 2 ? "POST" : "GET";
      call.target = route == 0 ? "/v1/tasks" : route == 1 ? "/v1/tasks/" + some_id : "/v1/tasks";
      if (route == 2) {
        call.body = task_body("echo", "1");
        call.headers.emplace_back("Content-Type", "application/json");
      }
      if (b.authorization) call.headers.emplace_back("Authorization", *b.authorization);
      replies[route] = testing::http(app.port(), call);
      check_unauthorized(replies[route]);
    }
  }
  // Nothing was queued by any of them.
  CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == 0);
  // The scheme name is case-insensitive.
  CHECK(app.get("/v1/tasks", {}, {{"Authorization", "bearer " + user.token}}).status == 200);
}

TEST_CASE("gateway: each task type is accepted, readable at once and ends with its exact result") {
  AppFixture app;
  const auto user = app.new_user("dave");

  struct Expected {
    const char* type;
    std::string payload;
    std::string result;
  };
  const std::vector<Expected> expected{
      {"echo", R"({"list":[1,2.5,"three",null,true,{"deep":{"er":[]}}],"text":"héllo ✓"})",
       R"({"list":[1,2.5,"three",null,true,{"deep":{"er":[]}}],"text":"héllo ✓"})"},
      {"echo", "\"just a string\"", "\"just a string\""},
      {"echo", "null", "null"},
      {"sha256", R"({"data":"abc","rounds":1})",
       R"({"hex":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})"},
      {"sha256", R"({"data":"","rounds":1})",
       R"({"hex":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})"},
      {"primes", R"({"below":1000000})", R"({"count":78498})"},
      {"primes", R"({"below":2})", R"({"count":0})"},
      {"sleep", R"({"ms":50})", R"({"slept_ms":50})"},
  };

  // Invalid type or payload: 400 naming the field, never queued.
  struct Invalid {
    std::string body;
    const char* field;
  };
  const std::vector<Invalid> invalid{
      {R"({"type":"nope","payload":{}})", "/type"},
      {R"({"type":"ECHO","payload":{}})", "/type"},
      {R"({"type":5,"payload":{}})", "/type"},
      {R"({"payload":{}})", "/type"},
      {R"({"type":"echo"})", "/payload"},
      {R"({"type":"echo","payload":1,"extra":true})", "/extra"},
      {R"({"type":"sha256","payload":{"data":"abc"}})", "/payload/rounds"},
      {R"({"type":"sha256","payload":{"rounds":1}})", "/payload/data"},
      {R"({"type":"sha256","payload":{"data":"abc","rounds":0}})", "/payload/rounds"},
      {R"({"type":"sha256","payload":{"data":"abc","rounds":10000001}})", "/payload/rounds"},
      {R"({"type":"sha256","payload":{"data":"abc","rounds":"7"}})", "/payload/rounds"},
      {R"({"type":"sha256","payload":{"data":"abc","rounds":1.5}})", "/payload/rounds"},
      {R"({"type":"sha256","payload":{"data":7,"rounds":1}})", "/payload/data"},
      {R"({"type":"sha256","payload":{"data":"abc","rounds":1,"salt":"x"}})", "/payload/salt"},
      {R"({"type":"sha256","payload":"abc"})", "/payload"},
      {R"({"type":"primes","payload":{"below":1}})", "/payload/below"},
      {R"({"type":"primes","payload":{"below":100000001}})", "/payload/below"},
      {R"({"type":"primes","payload":{"below":-5}})", "/payload/below"},
      {R"({"type":"primes","payload":[]})", "/payload"},
      {R"({"type":"sleep","payload":{"ms":-1}})", "/payload/ms"},
      {R"({"type":"sleep","payload":{"ms":60001}})", "/payload/ms"},
      {R"({"type":"sleep","payload":{"ms":true}})", "/payload/ms"},
      {R"({"type":"sleep","payload":{}})", "/payload/ms"},
      {R"({"type":"sleep","payload":null})", "/payload"},
  };
  for (const auto& bad : invalid) {
    const auto reply = app.post("/v1/tasks", bad.body, user.token);
    INFO(bad.body << " -> " << reply.body);
    check_problem(reply, 400);
    CHECK(problem_field(reply) == bad.field);
  }

  std::vector<std::string> ids;
  for (const auto& e : expected) {
    const auto reply = app.post("/v1/tasks", task_body(e.type, e.payload), user.token);
    INFO(e.type << " " << e.payload << " -> " << reply.body);
    REQUIRE(reply.status == 202);
    const auto body = reply.json().as_object();
    CHECK(body.size() == 2);
    CHECK(body.at("status") == "queued");
    const std::string id(body.at("id").as_string());
    CHECK(core::is_uuid(id));
    CHECK(reply.header("location") == "/v1/tasks/" + id);
    // Read-your-writes: right after the 202, never a 404.
    const auto now = app.get("/v1/tasks/" + id, user.token);
    INFO(now.body);
    REQUIRE(now.status == 200);
    const auto seen = now.json().as_object();
    CHECK(text_of(seen.at("id")) == id);
    CHECK(seen.at("type") == e.type);
    CHECK(seen.at("payload") == json::parse(e.payload));
    CHECK(is_rfc3339(seen.at("created_at")));
    ids.push_back(id);
  }

  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto task = app.wait_final(user.token, ids[i]);
    INFO(expected[i].type << " " << expected[i].payload << " -> " << json::serialize(task));
    CHECK(task.size() == 11);  // with profile_id
    CHECK(task.at("profile_id").is_null());
    CHECK(text_of(task.at("id")) == ids[i]);
    CHECK(task.at("type") == expected[i].type);
    CHECK(task.at("status") == "succeeded");
    CHECK(task.at("payload") == json::parse(expected[i].payload));
    CHECK(task.at("result") == json::parse(expected[i].result));
    CHECK(task.at("error").is_null());
    CHECK(task.at("attempts") == 1);
    CHECK(is_rfc3339(task.at("created_at")));
    CHECK(is_rfc3339(task.at("started_at")));
    CHECK(is_rfc3339(task.at("finished_at")));
    if (is_rfc3339(task.at("started_at")) && is_rfc3339(task.at("finished_at"))) {
      // Same format and zone: text order is time order.
      const std::string created(task.at("created_at").as_string());
      const std::string started(task.at("started_at").as_string());
      const std::string finished(task.at("finished_at").as_string());
      CHECK(started <= finished);
      CHECK(created <= started);
    }
  }

  // Only the valid tasks exist: in the list, in the table, in the accepted counter.
  const auto items = app.list_all(user.token);
  std::vector<std::string> listed = ids_of(items);
  std::vector<std::string> submitted = ids;
  std::sort(listed.begin(), listed.end());
  std::sort(submitted.begin(), submitted.end());
  CHECK(listed == submitted);
  CHECK(app.sql_count("SELECT count(*) FROM tasks") == static_cast<long long>(ids.size()));
  CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == static_cast<double>(ids.size()));
  CHECK(metric(app.app(), "mesh_worker_tasks_total", {{"status", "succeeded"}}) ==
        static_cast<double>(ids.size()));

  // A payload as large as the 1 MiB body limit allows: a request that can never succeed must not
  // be answered 503 "retry"; accepted, it completes with its exact result.
  {
    const std::string big(1'000'000, 'x');
    const auto reply = app.post("/v1/tasks", task_body("echo", "\"" + big + "\""), user.token);
    INFO(reply.status << " " << reply.body);
    CHECK(reply.status != 503);
    if (reply.status == 202) {
      const std::string id(reply.json().at("id").as_string());
      const auto task = app.wait_final(user.token, id);
      CHECK(task.at("status") == "succeeded");
      CHECK(task.at("result") == jstr(big));
    } else {
      CHECK((reply.status == 413 || reply.status == 400));
    }
  }

  // A burst: every GET right after its 202 answers 200.
  const auto burst_user = app.new_user("burst");
  for (int i = 0; i < 30; ++i) {
    const auto id = app.submit(burst_user.token, "echo", std::to_string(i));
    const auto now = app.get("/v1/tasks/" + id, burst_user.token);
    INFO(i << " " << now.body);
    CHECK(now.status == 200);
  }
}

TEST_CASE("gateway: Idempotency-Key gives one task per user and key") {
  AppFixture app;
  const auto alice = app.new_user("alice");
  const auto bob = app.new_user("bob");
  const std::string body = task_body("echo", R"({"n":1})");
  const Headers key{{"Idempotency-Key", "order-42"}};

  const auto first = app.post("/v1/tasks", body, alice.token, key);
  REQUIRE(first.status == 202);
  const std::string id(first.json().at("id").as_string());
  const auto second = app.post("/v1/tasks", body, alice.token, key);
  REQUIRE(second.status == 202);
  CHECK(text_of(second.json().at("id")) == id);
  CHECK(second.json().at("status") == "queued");
  CHECK(second.header("location") == "/v1/tasks/" + id);

  // Same key, different request: 422, nothing new.
  const auto different = app.post("/v1/tasks", task_body("echo", R"({"n":2})"), alice.token, key);
  check_problem(different, 422);

  // Another user with the same key gets a task of their own.
  const auto other = app.post("/v1/tasks", body, bob.token, key);
  REQUIRE(other.status == 202);
  const std::string other_id(other.json().at("id").as_string());
  CHECK(other_id != id);

  // Invalid keys are refused.
  check_problem(
      app.post("/v1/tasks", body, alice.token, {{"Idempotency-Key", std::string(256, 'k')}}), 400);
  check_problem(app.post("/v1/tasks", body, alice.token, {{"Idempotency-Key", "has space"}}), 400);

  // A key used once more after the task ran still answers the same id.
  const auto done = app.wait_final(alice.token, id);
  CHECK(done.at("result") == json::parse(R"({"n":1})"));
  const auto later = app.post("/v1/tasks", body, alice.token, key);
  REQUIRE(later.status == 202);
  CHECK(text_of(later.json().at("id")) == id);
  app.wait_final(bob.token, other_id);

  CHECK(ids_of(app.list_all(alice.token)) == std::vector<std::string>{id});
  CHECK(ids_of(app.list_all(bob.token)) == std::vector<std::string>{other_id});
  CHECK(app.sql_count("SELECT count(*) FROM tasks") == 2);
  CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == 2);
}

TEST_CASE("gateway: GET /v1/tasks/{id} answers 404 for unknown ids and other users' tasks") {
  AppFixture app;
  const auto owner = app.new_user("owner");
  const auto stranger = app.new_user("stranger");
  const auto id = app.submit(owner.token, "sleep", R"({"ms":200})");
  // Right after the 202 (served from the read-your-writes cache) and after it is stored.
  check_problem(app.get("/v1/tasks/" + id, stranger.token), 404);
  CHECK(app.get("/v1/tasks/" + id, owner.token).status == 200);
  app.wait_final(owner.token, id);
  check_problem(app.get("/v1/tasks/" + id, stranger.token), 404);
  CHECK(app.list_all(stranger.token).empty());

  for (const std::string& target :
       {"/v1/tasks/" + core::uuid_v7(),
        std::string("/v1/tasks/00000000-0000-0000-0000-000000000000"),
        std::string("/v1/tasks/not-a-uuid"), std::string("/v1/tasks/") + std::string(id).substr(1),
        "/v1/tasks/" +
            [&] {
              std::string upper = id;
              std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
              return upper;
            }(),
        std::string("/v1/tasks/%27%20OR%201=1--"),
        std::string("/v1/tasks/") + std::string(300, 'f')}) {
    INFO(target);
    check_problem(app.get(target, owner.token), 404);
  }
}

TEST_CASE("gateway: GET /v1/tasks lists newest first with keyset pagination and a status filter") {
  AppFixture app;
  const auto user = app.new_user("lister");
  // First a task that stays queued for the rest of the test: it sleeps on a timer, so the
  // tasks after it still run.
  const auto sleeping = app.submit(user.token, "sleep", R"({"ms":60000})");
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(app.submit(user.token, "echo", std::to_string(i)));
  for (const auto& id : ids) app.wait_final(user.token, id);
  REQUIRE(testing::wait_until(
      [&] {
        return app.sql_count("SELECT count(*) FROM tasks WHERE id = '" + sleeping + "'") == 1;
      },
      kPipelineDeadline));
  CHECK(app.task(user.token, sleeping).at("status") == "queued");

  std::vector<std::string> newest_first(ids.rbegin(), ids.rend());
  std::vector<std::string> everything = newest_first;
  everything.push_back(sleeping);

  // Default page.
  const auto all = app.get("/v1/tasks", user.token);
  REQUIRE(all.status == 200);
  const auto all_body = all.json();
  std::vector<json::object> all_items;
  for (const auto& item : all_body.at("items").as_array()) all_items.push_back(item.as_object());
  CHECK(ids_of(all_items) == everything);
  CHECK(all_body.at("next_cursor").is_null());

  // Pages of 3: 3 + 3 + 2, the last one with next_cursor null.
  std::vector<std::string> paged;
  std::string cursor;
  std::vector<std::size_t> sizes;
  for (int page = 0; page < 10; ++page) {
    const auto reply =
        app.get("/v1/tasks?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor), user.token);
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    const auto body = reply.json().as_object();
    const auto& items = body.at("items").as_array();
    sizes.push_back(items.size());
    for (const auto& item : items) paged.emplace_back(item.at("id").as_string());
    if (body.at("next_cursor").is_null()) break;
    cursor = std::string(body.at("next_cursor").as_string());
    CHECK(cursor == paged.back());
  }
  CHECK(sizes == std::vector<std::size_t>{3, 3, 2});
  CHECK(paged == everything);
  // Exactly one page's worth: no dangling empty page.
  {
    const auto reply = app.get("/v1/tasks?limit=8", user.token);
    CHECK(reply.json().at("items").as_array().size() == 8);
    CHECK(reply.json().at("next_cursor").is_null());
  }

  // Status filter, with pagination too.
  CHECK(ids_of(app.list_all(user.token, "status=succeeded", 2)) == newest_first);
  CHECK(ids_of(app.list_all(user.token, "status=queued", 2)) == std::vector<std::string>{sleeping});
  CHECK(app.list_all(user.token, "status=failed").empty());
  CHECK(app.list_all(user.token, "status=running").empty());
  for (const auto& item : app.list_all(user.token, "status=succeeded")) {
    CHECK(item.at("status") == "succeeded");
    CHECK(item.size() == 11);
  }

  // Bad parameters.
  for (const char* query : {"limit=0", "limit=101", "limit=abc", "limit=-1", "limit=1.5",
                            "limit=", "limit=10x", "limit=99999999999999999999", "cursor=nope",
                            "cursor=123", "status=done", "status=SUCCEEDED", "status=queued%00"}) {
    INFO(query);
    const auto reply = app.get(std::string("/v1/tasks?") + query, user.token);
    check_problem(reply, 400);
  }
  CHECK(app.get("/v1/tasks?limit=1", user.token).status == 200);
  CHECK(app.get("/v1/tasks?limit=100", user.token).status == 200);
}

TEST_CASE("gateway: HTTP errors are problem+json: 413, 405 with Allow, 404, 415, 400") {
  AppFixture app([](config::Config& config) { config.http_body_limit = 4096; });
  const auto user = app.new_user("http");

  // 413 over the body limit (before authentication, and on a public route).
  const std::string big = task_body("echo", "\"" + std::string(5000, 'x') + "\"");
  check_problem(app.post("/v1/tasks", big, user.token), 413);
  check_problem(app.post("/v1/auth/register", credentials("big", std::string(5000, 'p'))), 413);
  // Just under the limit is fine.
  const std::string fits = task_body("echo", "\"" + std::string(4000, 'x') + "\"");
  REQUIRE(fits.size() <= 4096);
  CHECK(app.post("/v1/tasks", fits, user.token).status == 202);

  // 405 with Allow.
  struct Wrong {
    const char* method;
    std::string target;
    std::vector<std::string> allowed;
  };
  const std::vector<Wrong> wrong{
      {"DELETE", "/v1/tasks", {"GET", "POST"}},
      {"PUT", "/v1/tasks", {"GET", "POST"}},
      {"DELETE", "/v1/tasks/" + core::uuid_v7(), {"GET"}},
      {"GET", "/v1/auth/login", {"POST"}},
      {"GET", "/v1/auth/register", {"POST"}},
      {"POST", "/healthz", {"GET"}},
  };
  for (const auto& w : wrong) {
    INFO(w.method << " " << w.target);
    testing::HttpCall call{.method = w.method, .target = w.target};
    call.headers.emplace_back("Authorization", "Bearer " + user.token);
    const auto reply = testing::http(app.port(), call);
    check_problem(reply, 405);
    const auto allow = reply.header("allow");
    REQUIRE(allow);
    std::set<std::string> methods;
    std::string rest = *allow;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string item = rest.substr(0, comma);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      methods.insert(item);
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    }
    for (const auto& m : w.allowed) CHECK(methods.count(m) == 1);
  }

  // 404 for unknown routes.
  for (const char* target :
       {"/nothing-here", "/v1", "/v2/tasks", "/v1/tasks/a/b", "/v1/users", "/v1/auth"}) {
    INFO(target);
    check_problem(app.get(target, user.token), 404);
  }

  // 415 and 400 on the authenticated route.
  {
    testing::HttpCall call{
        .method = "POST",
        .target = "/v1/tasks",
        .body = task_body("echo", "1"),
        .headers = {{"Content-Type", "text/plain"}, {"Authorization", "Bearer " + user.token}}};
    check_problem(testing::http(app.port(), call), 415);
  }
  check_problem(app.post("/v1/tasks", "{\"type\":", user.token), 400);
  check_problem(app.post("/v1/tasks", "[1]", user.token), 400);

  // Admin endpoints.
  const auto health = app.get("/healthz");
  CHECK(health.status == 200);
  const auto ready = app.get("/readyz");
  INFO(ready.body);
  CHECK(ready.status == 200);
  CHECK(ready.json().at("status") == "ready");
  const auto metrics = app.get("/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.header("content-type").value_or("").rfind("text/plain", 0) == 0);
  for (const char* name :
       {"mesh_http_requests_total", "mesh_gateway_tasks_accepted_total",
        "process_resident_memory_bytes", "process_max_fds", "mesh_http_request_duration_seconds"}) {
    INFO(name);
    CHECK(metrics.body.find(name) != std::string::npos);
  }
  CHECK(metrics.body.find("mesh_gateway_tasks_accepted_total 1") != std::string::npos);
  CHECK(metrics.body.find(R"(route="/v1/tasks",status="202")") != std::string::npos);
}

TEST_CASE("readiness: /readyz fails naming kafka while no broker is reachable, then recovers") {
  AppFixture app;
  REQUIRE(app.get("/readyz").status == 200);
  auto* cluster = app.app().embedded_kafka_cluster();
  REQUIRE(cluster != nullptr);
  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, true);
  testing::HttpReply ready;
  // The producer's statistics come every second; its connections go down at once.
  CHECK(testing::wait_until(
      [&] {
        ready = app.get("/readyz");
        return ready.status == 503;
      },
      30s));
  INFO(ready.body);
  CHECK(ready.json().at("failing") == json::parse(R"(["kafka"])"));
  // Liveness is not readiness: the process is fine.
  CHECK(app.get("/healthz").status == 200);
  // Prometheus sees it too: mesh_ready follows /readyz.
  CHECK(app.get("/metrics").body.find("\nmesh_ready 0\n") != std::string::npos);
  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, false);
  CHECK(testing::wait_until([&] { return app.get("/readyz").status == 200; }, 30s));

  // Down and up again: at least two transitions (a dependency may flap while recovering).
  const auto metrics = app.get("/metrics").body;
  INFO(metrics);
  CHECK(metrics.find("\nmesh_ready 1\n") != std::string::npos);
  CHECK(metrics.find(R"(mesh_build_info{role="all",version=")") != std::string::npos);
  const auto at = metrics.find("\nmesh_readiness_changes_total ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(metrics.substr(at + std::strlen("\nmesh_readiness_changes_total "))) >= 2);
}

TEST_CASE("gateway: 503 with Retry-After while Kafka cannot acknowledge, 202 again after") {
  // A short session timeout, so that after the outage the consumer groups drop the members they
  // lost quickly: accepted tasks must then complete soon after the brokers return.
  AppFixture app([](config::Config& config) { config.kafka_session_timeout = 6000ms; });
  const auto user = app.new_user("kafka");
  // Accepted just before the outage, while the consumer groups are still forming.
  const auto before = app.submit(user.token, "echo", R"("before")");
  auto* cluster = app.app().embedded_kafka_cluster();
  REQUIRE(cluster != nullptr);
  // The ack deadline is 1 s; librdkafka scans for timed-out records about once a second.
  const auto answer_deadline = app.config().kafka_ack_timeout + 2500ms;

  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, true);
  auto started = std::chrono::steady_clock::now();
  const auto refused = app.post("/v1/tasks", task_body("echo", R"("while down")"), user.token,
                                {{"Idempotency-Key", "during-outage"}});
  auto elapsed = std::chrono::steady_clock::now() - started;
  check_problem(refused, 503);
  CHECK(refused.header("retry-after").has_value());
  INFO("503 after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                    << " ms");
  CHECK(elapsed < answer_deadline);
  CHECK(metric(app.app(), "mesh_gateway_tasks_unavailable_total") == 1);
  // The process still answers everything that does not need Kafka.
  CHECK(app.get("/healthz").status == 200);
  CHECK(app.get("/v1/tasks/" + before, user.token).status == 200);

  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, false);
  const auto recovered = std::chrono::steady_clock::now();
  // A refused request can be retried with the same key: the key was not kept for it. Every
  // answer meanwhile is a 503 in time or the 202.
  std::string after;
  REQUIRE(
      testing::wait_until(
          [&] {
            started = std::chrono::steady_clock::now();
            const auto reply = app.post("/v1/tasks", task_body("echo", R"("while down")"),
                                        user.token, {{"Idempotency-Key", "during-outage"}});
            elapsed = std::chrono::steady_clock::now() - started;
            if (reply.status == 202) {
              after = std::string(reply.json().at("id").as_string());
              return true;
            }
            INFO("retry answered "
                 << reply.status << " after "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                 << " ms");
            CHECK(reply.status == 503);
            CHECK(elapsed < answer_deadline);
            return false;
          },
          30s, 0ms));
  CHECK(metric(app.app(), "mesh_gateway_tasks_accepted_total") == 2);
  // Both accepted tasks run to the end, soon: session timeout (6 s) plus a rebalance.
  const auto since_recovery = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 recovered);
  };
  CHECK(app.wait_final(user.token, before, 30s - since_recovery()).at("result") == "before");
  CHECK(app.wait_final(user.token, after, 30s - since_recovery()).at("result") == "while down");
  // And the key now names the accepted task.
  const auto replay = app.post("/v1/tasks", task_body("echo", R"("while down")"), user.token,
                               {{"Idempotency-Key", "during-outage"}});
  CHECK(replay.status == 202);
  CHECK(text_of(replay.json().at("id")) == after);
}

namespace {

// EXISTS on the throwaway Redis, over its wire protocol.
bool redis_key_exists(const std::string& key) {
  const std::string url = testing::redis_url();  // redis://host:port
  const auto host_start = url.find("//") + 2;
  const auto colon = url.find(':', host_start);
  const auto slash = url.find('/', colon);
  const std::string host = url.substr(host_start, colon - host_start);
  const std::string port =
      url.substr(colon + 1, slash == std::string::npos ? std::string::npos : slash - colon - 1);
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect(
      {boost::asio::ip::make_address(host), static_cast<unsigned short>(std::stoi(port))});
  const std::string command =
      "*2\r\n$6\r\nEXISTS\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
  boost::asio::write(socket, boost::asio::buffer(command));
  std::string reply;
  boost::asio::read_until(socket, boost::asio::dynamic_buffer(reply), "\r\n");
  return reply.rfind(":1\r\n", 0) == 0;
}

}  // namespace

TEST_CASE("gateway: a replayed Idempotency-Key never answers 202 for a task Kafka did not ack") {
  AppFixture app;
  const auto user = app.new_user("racer");
  auto* cluster = app.app().embedded_kafka_cluster();
  REQUIRE(cluster != nullptr);
  const std::string body = task_body("echo", R"("raced")");
  const Headers key{{"Idempotency-Key", "race-1"}};

  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, true);
  // The first request claims the key, then waits for an acknowledgement that never comes.
  auto first =
      std::async(std::launch::async, [&] { return app.post("/v1/tasks", body, user.token, key); });
  REQUIRE(testing::wait_until([&] { return redis_key_exists("mesh:idem:" + user.id + ":race-1"); },
                              10s));
  // The same request again while the first is still waiting.
  const auto second = app.post("/v1/tasks", body, user.token, key);
  const auto second_get = second.status == 202
                              ? app.get("/v1/tasks/" + text_of(second.json().at("id")), user.token)
                              : testing::HttpReply{};
  const auto first_reply = first.get();
  for (int broker = 1; broker <= 3; ++broker) cluster->set_broker_down(broker, false);

  INFO("first: " << first_reply.status << " " << first_reply.body);
  INFO("second: " << second.status << " " << second.body);
  CHECK(first_reply.status == 503);
  if (second.status == 202) {
    // A 202 promises the task was acknowledged: readable at once, never 404.
    CHECK(second_get.status == 200);
    CHECK(first_reply.status == 202);
  } else {
    CHECK((second.status == 409 || second.status == 503));
  }
}
