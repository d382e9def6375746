// External identity through the whole app: an RS256 token of the configured OIDC issuer works
// like a mesh token, and its user gets a `users` row on first sight so profiles can name it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <boost/json/parse.hpp>

#include "../auth/oidc_support.hpp"
#include "app_fixture.hpp"
#include "mesh/auth/oidc.hpp"

using namespace mesh;
using namespace mesh::roles::test;
namespace oidc = mesh::testing::oidc;
namespace json = boost::json;

TEST_CASE("oidc: an external token reaches the API and its user is provisioned once", "[oidc]") {
  const auto key = oidc::rsa_key("key-1");
  const auto jwks_file = std::filesystem::temp_directory_path() /
                         ("mesh-jwks-" + std::to_string(::getpid()) + ".json");
  std::ofstream(jwks_file) << oidc::jwks(std::vector<oidc::TestKey>{key});
  const std::string issuer = "https://issuer.test/";
  AppFixture app([&](config::Config& config) {
    config.oidc_issuer = issuer;
    config.oidc_audience = "mesh-api";
    config.oidc_jwks = jwks_file.string();
  });
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto claims = [&](std::string_view subject, std::string_view name) {
    return json::serialize(json::object{{"iss", issuer},
                                        {"aud", "mesh-api"},
                                        {"sub", subject},
                                        {"preferred_username", name},
                                        {"iat", now},
                                        {"exp", now + 600}});
  };
  const auto token = oidc::token(key, claims("auth0|123", "dana"));
  const auto expected_id = auth::external_user_id(issuer, "auth0|123");

  auto me = app.get("/v1/users/me", token);
  REQUIRE(me.status == 200);
  const auto fields = json::parse(me.body).as_object();
  CHECK(fields.at("id") == json::value(expected_id));
  CHECK(fields.at("username") == "dana");
  auto created = app.post("/v1/profiles", R"({"name":"external"})", token);
  CHECK(created.status == 201);
  CHECK(app.get("/v1/users/me", token).status == 200);
  CHECK(app.sql_count("SELECT count(*) FROM users WHERE id = '" + expected_id + "'") == 1);

  // A local user already holds the display name: the external one gets a suffixed name.
  app.register_user("erin");
  const auto clash = oidc::token(key, claims("auth0|456", "erin"));
  auto clash_me = app.get("/v1/users/me", clash);
  REQUIRE(clash_me.status == 200);
  CHECK(json::parse(clash_me.body).at("username").as_string().starts_with("erin#"));

  // External users cannot log in with a password, and a token signed by another key is 401.
  CHECK(app.post("/v1/auth/login", R"({"username":"dana","password":"!external"})").status == 401);
  const auto stranger = oidc::rsa_key("key-1");
  CHECK(app.get("/v1/users/me", oidc::token(stranger, claims("auth0|123", "dana"))).status == 401);
  std::filesystem::remove(jwks_file);
}
