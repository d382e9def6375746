// `mesh seed`: the binary creates the users, profiles and overlapping memberships it prints,
// and every printed pair is a real membership with a token that verifies.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include <libpq-fe.h>
#include <boost/json/parse.hpp>

#include "mesh/auth/jwt.hpp"
#include "mesh/testing/env.hpp"
#include "process.hpp"

using namespace mesh;
namespace json = boost::json;

namespace {

constexpr std::string_view kSecret = "seed-test-secret-0123456789-abcdefghijkl";

long long count(const std::string& url, const std::string& sql) {
  PGconn* connection = PQconnectdb(url.c_str());
  REQUIRE(PQstatus(connection) == CONNECTION_OK);
  PGresult* result = PQexec(connection, sql.c_str());
  REQUIRE(PQresultStatus(result) == PGRES_TUPLES_OK);
  const long long value = std::stoll(PQgetvalue(result, 0, 0));
  PQclear(result);
  PQfinish(connection);
  return value;
}

}  // namespace

TEST_CASE("mesh seed creates users and profiles with overlapping memberships", "[seed]") {
  const auto database = testing::fresh_pg_database();
  const auto logs =
      std::filesystem::temp_directory_path() / ("mesh-seed-" + std::to_string(::getpid()));
  std::filesystem::create_directories(logs);
  e2e::Process seed("seed",
                    {MESH_BINARY, "seed", "--users", "6", "--profiles", "8", "--pg-url", database},
                    {{"MESH_JWT_SECRET", std::string(kSecret)}}, logs);
  const auto status = seed.wait(std::chrono::seconds(120));
  REQUIRE(status);
  INFO(seed.log_tail());
  REQUIRE(status->exited());
  REQUIRE(status->exit_code() == 0);

  std::ifstream output(seed.stdout_path());
  std::stringstream text;
  text << output.rdbuf();
  const auto document = json::parse(text.str()).as_object();
  CHECK(document.at("users").as_array().size() == 6);
  CHECK(document.at("profiles").as_array().size() == 8);
  CHECK(count(database, "SELECT count(*) FROM users") == 6);
  CHECK(count(database, "SELECT count(*) FROM profiles") == 8);

  const auto& pairs = document.at("pairs").as_array();
  CHECK(static_cast<long long>(pairs.size()) ==
        count(database, "SELECT count(*) FROM profile_members"));
  const auth::JwtCodec jwt(std::string(kSecret), "mesh", std::chrono::hours(1));
  std::set<std::string> users_in_pairs;
  for (const auto& pair : pairs) {
    const std::string user(pair.at("user_id").as_string());
    const std::string profile(pair.at("profile_id").as_string());
    users_in_pairs.insert(user);
    CHECK(count(database, "SELECT count(*) FROM profile_members WHERE user_id = '" + user +
                              "' AND profile_id = '" + profile + "'") == 1);
    const auto verified =
        jwt.verify(pair.at("token").as_string(), std::chrono::system_clock::now());
    REQUIRE(verified.claims);
    CHECK(verified.claims->subject == user);
    CHECK(pair.at("stream_url").as_string().ends_with("/v1/stream/sessions/" + profile));
  }
  // 8 profiles of 1-3 members among 6 users: memberships overlap unless all were singletons,
  // in which case some user still has two profiles (8 profiles > 6 users).
  CHECK(count(database,
              "SELECT count(*) FROM (SELECT user_id FROM profile_members GROUP BY user_id "
              "HAVING count(*) > 1) AS several") >= 1);

  e2e::Process bad("seed-bad", {MESH_BINARY, "seed", "--users", "0"}, {}, logs);
  const auto bad_status = bad.wait(std::chrono::seconds(30));
  REQUIRE(bad_status);
  CHECK(bad_status->exit_code() != 0);
}
