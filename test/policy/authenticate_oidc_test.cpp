// The authentication middleware with an OIDC verifier beside mesh's own HS256 tokens.
#include <chrono>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "../auth/oidc_support.hpp"
#include "mesh/auth/jwt.hpp"
#include "mesh/auth/oidc.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::policy::test {
namespace {

using namespace std::chrono_literals;
namespace oidc = testing::oidc;

const std::string kIssuer = "https://login.example/";
constexpr std::chrono::system_clock::time_point kNow{1'700'000'000s};

std::string oidc_payload() {
  return boost::json::serialize(boost::json::object{{"iss", kIssuer},
                                                    {"aud", "mesh-api"},
                                                    {"sub", "google-oauth2|1234"},
                                                    {"email", "ada@example.com"},
                                                    {"iat", 1'700'000'000},
                                                    {"exp", 1'700'000'600}});
}

struct Setup {
  auth::JwtCodec jwt{"0123456789abcdef0123456789abcdef", "mesh", 900s};
  oidc::TestKey key = oidc::ec_key("k1");
  auth::OidcVerifier verifier{auth::OidcOptions{kIssuer, "mesh-api"}};
  Authenticator authenticator{jwt, verifier.as_external_verifier()};

  Setup() { verifier.set_keys(auth::KeySet::parse(oidc::jwks({key}))); }
};

// Runs the middleware on a request carrying `token`; the handler echoes the principal.
http::Response through_middleware(const Authenticator& authenticator, const std::string& token) {
  asio::io_context io;
  http::Request request;
  request.method = "GET";
  request.path = request.target = "/v1/users/me";
  request.headers.emplace_back("authorization", "Bearer " + token);
  const http::Next echo = [](http::Request& seen) -> Task<http::Response> {
    REQUIRE(seen.principal);
    co_return http::Response::text(
        200, seen.principal->user_id + " " + seen.principal->username + " " + seen.principal->role);
  };
  const auto middleware = authenticator.middleware();
  return testing::run(io, middleware(request, echo));
}

}  // namespace

TEST_CASE("Authenticator: mesh tokens and OIDC tokens both yield principals", "[authenticate]") {
  Setup s;
  std::string error;
  const auto own = s.authenticator.verify(s.jwt.issue("u-1", "bob", "admin", kNow), kNow, error);
  REQUIRE(own);
  CHECK(own->user_id == "u-1");
  CHECK(own->role == "admin");

  const auto external = s.authenticator.verify(oidc::token(s.key, oidc_payload()), kNow, error);
  REQUIRE(external);
  CHECK(external->user_id == auth::external_user_id(kIssuer, "google-oauth2|1234"));
  CHECK(external->username == "ada@example.com");
  CHECK(external->role == "user");
}

TEST_CASE("Authenticator: OIDC tokens through the middleware", "[authenticate]") {
  Setup s;
  const auto now = std::chrono::system_clock::now();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(now.time_since_epoch()).count();
  const auto payload = boost::json::serialize(boost::json::object{
      {"iss", kIssuer}, {"aud", "mesh-api"}, {"sub", "abc"}, {"exp", seconds + 600}});

  const auto accepted = through_middleware(s.authenticator, oidc::token(s.key, payload));
  CHECK(accepted.status == 200);
  CHECK(accepted.body == auth::external_user_id(kIssuer, "abc") + " abc user");

  // Signed by a key the provider never published.
  const auto stranger =
      through_middleware(s.authenticator, oidc::token(oidc::ec_key("k1"), payload));
  CHECK(stranger.status == 401);
  CHECK(stranger.content_type == "application/problem+json");
  CHECK(stranger.body.find("bad_signature") != std::string::npos);
  const auto unknown =
      through_middleware(s.authenticator, oidc::token(oidc::ec_key("k9"), payload));
  CHECK(unknown.status == 401);
  CHECK(unknown.body.find("unknown_key") != std::string::npos);

  // The confusion attack: HS256 keyed with the public key goes to mesh's codec, never to OIDC.
  const auto confused = through_middleware(
      s.authenticator,
      oidc::hs256_token(oidc::public_pem(s.key), R"({"alg":"HS256","kid":"k1"})", payload));
  CHECK(confused.status == 401);
  CHECK(confused.body.find("bad_signature") != std::string::npos);
}

TEST_CASE("Authenticator: without an external verifier RS256/ES256 tokens are refused",
          "[authenticate]") {
  Setup s;
  const Authenticator own_only(s.jwt);
  std::string error;
  CHECK_FALSE(own_only.verify(oidc::token(s.key, oidc_payload()), kNow, error));
  CHECK(error == "unsupported_algorithm");
}

}  // namespace mesh::policy::test
