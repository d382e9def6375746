// Profiles, memberships, /v1/users/me, tasks under a profile and the overview, through the
// in-process app over real HTTP.
#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include "app_fixture.hpp"
#include "mesh/core/ids.hpp"
#include "mesh/testing/http_client.hpp"

using namespace mesh;
using namespace mesh::roles::test;
namespace json = boost::json;

namespace {

testing::HttpReply del(AppFixture& app, const std::string& target, const std::string& token) {
  return testing::http(
      app.port(),
      {.method = "DELETE", .target = target, .headers = {{"Authorization", "Bearer " + token}}});
}

json::object body_of(const testing::HttpReply& reply) {
  return json::parse(reply.body).as_object();
}

void check_problem(const testing::HttpReply& reply, unsigned status) {
  CHECK(reply.status == status);
  CHECK(reply.header("content-type") == "application/problem+json");
}

std::string create_profile(AppFixture& app, const std::string& token, const std::string& body) {
  auto reply = app.post("/v1/profiles", body, token);
  REQUIRE(reply.status == 201);
  return std::string(body_of(reply).at("id").as_string());
}

}  // namespace

TEST_CASE("profiles: /v1/users/me names the caller; every route needs a token", "[profiles]") {
  AppFixture app;
  auto alice = app.new_user("alice");
  auto me = app.get("/v1/users/me", alice.token);
  REQUIRE(me.status == 200);
  const auto fields = body_of(me);
  CHECK(fields.at("id") == json::value(alice.id));
  CHECK(fields.at("username") == json::value(alice.username));
  CHECK(fields.at("role") == "user");
  CHECK(fields.at("created_at").as_string().size() == 24);
  for (const char* target : {"/v1/users/me", "/v1/users/me/overview", "/v1/profiles/x",
                             "/v1/users/00000000-0000-0000-0000-000000000000/profiles"}) {
    check_problem(app.get(target), 401);
  }
  check_problem(app.post("/v1/profiles", R"({"name":"x"})"), 401);
  check_problem(app.get("/v1/users/me", "not.a.token"), 401);
}

TEST_CASE("profiles: create, read, members add and remove, listing per user", "[profiles]") {
  AppFixture app;
  auto alice = app.new_user("alice");
  auto bob = app.new_user("bob");
  auto carol = app.new_user("carol");

  auto created = app.post(
      "/v1/profiles", R"({"name":"Trading desk","watchlist":["BTC-USD","ETH-USD"]})", alice.token);
  REQUIRE(created.status == 201);
  const auto profile = body_of(created);
  const std::string id(profile.at("id").as_string());
  CHECK(core::is_uuid(id));
  CHECK(created.header("location") == "/v1/profiles/" + id);
  CHECK(profile.at("name") == "Trading desk");
  CHECK(profile.at("watchlist") == json::parse(R"(["BTC-USD","ETH-USD"])"));
  CHECK(profile.at("created_by") == json::value(alice.id));
  CHECK(profile.at("members") == json::array{json::value(alice.id)});

  // Members only: bob is not one yet.
  check_problem(app.get("/v1/profiles/" + id, bob.token), 403);
  check_problem(
      app.post("/v1/profiles/" + id + "/members", R"({"user_id":")" + carol.id + "\"}", bob.token),
      403);
  check_problem(app.get("/v1/profiles/" + core::uuid_v7(), alice.token), 404);
  check_problem(app.get("/v1/profiles/not-a-uuid", alice.token), 404);

  auto added =
      app.post("/v1/profiles/" + id + "/members", R"({"user_id":")" + bob.id + "\"}", alice.token);
  CHECK(added.status == 204);
  // Idempotent.
  CHECK(app.post("/v1/profiles/" + id + "/members", R"({"user_id":")" + bob.id + "\"}", alice.token)
            .status == 204);
  auto as_bob = app.get("/v1/profiles/" + id, bob.token);
  REQUIRE(as_bob.status == 200);
  CHECK(body_of(as_bob).at("members").as_array().size() == 2);
  check_problem(app.post("/v1/profiles/" + id + "/members",
                         R"({"user_id":")" + core::uuid_v7() + "\"}", alice.token),
                404);

  // Listing: the user or nobody (no admin here).
  auto bobs = app.get("/v1/users/" + bob.id + "/profiles", bob.token);
  REQUIRE(bobs.status == 200);
  REQUIRE(body_of(bobs).at("items").as_array().size() == 1);
  CHECK(body_of(bobs).at("items").as_array()[0].at("id") == json::value(id));
  check_problem(app.get("/v1/users/" + bob.id + "/profiles", carol.token), 403);
  check_problem(app.get("/v1/users/nope/profiles", carol.token), 400);
  CHECK(body_of(app.get("/v1/users/" + carol.id + "/profiles", carol.token))
            .at("items")
            .as_array()
            .empty());

  // Removal: members only, never the last member.
  check_problem(del(app, "/v1/profiles/" + id + "/members/" + bob.id, carol.token), 403);
  CHECK(del(app, "/v1/profiles/" + id + "/members/" + bob.id, alice.token).status == 204);
  check_problem(del(app, "/v1/profiles/" + id + "/members/" + bob.id, alice.token), 404);
  check_problem(del(app, "/v1/profiles/" + id + "/members/" + alice.id, alice.token), 409);
  CHECK(app.sql_count("SELECT count(*) FROM profile_members WHERE profile_id = '" + id + "'") == 1);
}

TEST_CASE("profiles: malformed and hostile bodies get 4xx and store nothing", "[profiles]") {
  AppFixture app;
  auto alice = app.new_user("alice");
  const std::vector<std::pair<std::string, std::string>> bad{
      {R"({})", "/name"},
      {R"({"name":""})", "/name"},
      {R"({"name":42})", "/name"},
      {"{\"name\":\"a\\u0000b\"}", "/name"},
      {R"({"name":")" + std::string(101, 'x') + "\"}", "/name"},
      {R"({"name":"x","watchlist":"BTC-USD"})", "/watchlist"},
      {R"({"name":"x","watchlist":["btc-usd"]})", "/watchlist/0"},
      {R"({"name":"x","watchlist":["BTC-USD","BTC-USD"]})", "/watchlist/1"},
      {R"({"name":"x","watchlist":["BTC-USD",1]})", "/watchlist/1"},
      {R"({"name":"x","owner":"me"})", "/owner"},
      {R"({"name":"x","watchlist":["'); DROP TABLE profiles; --"]})", "/watchlist/0"},
  };
  for (const auto& [body, pointer] : bad) {
    INFO(body);
    auto reply = app.post("/v1/profiles", body, alice.token);
    check_problem(reply, 400);
    CHECK(reply.body.find(pointer) != std::string::npos);
  }
  std::string many = R"({"name":"x","watchlist":[)";
  for (int i = 0; i < 51; ++i)
    many += std::string(i ? "," : "") + "\"P" + std::to_string(i) + "-USD\"";
  check_problem(app.post("/v1/profiles", many + "]}", alice.token), 400);
  check_problem(app.post("/v1/profiles", "[1,2]", alice.token), 400);
  check_problem(app.post("/v1/profiles", "{\"name\":", alice.token), 400);
  check_problem(
      testing::http(app.port(), {.method = "POST",
                                 .target = "/v1/profiles",
                                 .body = R"({"name":"x"})",
                                 .headers = {{"Content-Type", "text/plain"},
                                             {"Authorization", "Bearer " + alice.token}}}),
      415);
  const auto id = create_profile(app, alice.token, R"({"name":"ok"})");
  check_problem(app.post("/v1/profiles/" + id + "/members", R"({"user_id":"x"})", alice.token),
                400);
  check_problem(app.post("/v1/profiles/" + id + "/members", R"({"user_id":1})", alice.token), 400);
  check_problem(app.post("/v1/profiles/" + id + "/members",
                         R"({"user_id":")" + alice.id + R"(","extra":1})", alice.token),
                400);
  CHECK(app.sql_count("SELECT count(*) FROM profiles") == 1);
  CHECK(app.serving());
}

TEST_CASE("profiles: tasks carry a profile only for its members; the overview counts them",
          "[profiles]") {
  AppFixture app;
  auto alice = app.new_user("alice");
  auto mallory = app.new_user("mallory");
  const auto profile = create_profile(app, alice.token, R"({"name":"research"})");

  auto forbidden = app.post(
      "/v1/tasks", R"({"type":"echo","payload":1,"profile_id":")" + profile + "\"}", mallory.token);
  check_problem(forbidden, 403);
  check_problem(
      app.post("/v1/tasks", R"({"type":"echo","payload":1,"profile_id":"x"})", alice.token), 400);

  auto accepted =
      app.post("/v1/tasks", R"({"type":"echo","payload":"hi","profile_id":")" + profile + "\"}",
               alice.token);
  REQUIRE(accepted.status == 202);
  const std::string task_id(body_of(accepted).at("id").as_string());
  CHECK(app.task(alice.token, task_id).at("profile_id") == json::value(profile));
  const auto done = app.wait_final(alice.token, task_id);
  CHECK(done.at("status") == "succeeded");
  CHECK(done.at("profile_id") == json::value(profile));
  CHECK(app.sql_value("SELECT profile_id::text FROM tasks WHERE id = '" + task_id + "'") ==
        profile);
  const auto plain = app.submit(alice.token, "echo", "2");
  CHECK(app.wait_final(alice.token, plain).at("profile_id").is_null());

  auto overview = app.get("/v1/users/me/overview", alice.token);
  REQUIRE(overview.status == 200);
  const auto fields = body_of(overview);
  REQUIRE(fields.at("profiles").is_array());
  CHECK(fields.at("profiles").as_array().size() == 1);
  CHECK(fields.at("tasks").at("succeeded") == 2);
  CHECK(fields.at("tasks").at("queued") == 0);
  // No session is open: the session store answered with an empty list.
  CHECK(fields.at("sessions").as_array().empty());
  CHECK(fields.at("partial").as_array().empty());
}
