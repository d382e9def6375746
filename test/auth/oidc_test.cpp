#include "mesh/auth/oidc.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "mesh/auth/jwks.hpp"
#include "mesh/auth/jwks_source.hpp"
#include "mesh/http/router.hpp"
#include "mesh/http/server.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/http_client.hpp"
#include "mesh/testing/metrics.hpp"
#include "oidc_support.hpp"

using namespace mesh;
using namespace mesh::auth;
using namespace mesh::testing::oidc;
using namespace std::chrono_literals;

namespace Catch {
template <>
struct StringMaker<OidcError> {
  static std::string convert(OidcError error) { return std::string(to_string(error)); }
};
}  // namespace Catch

namespace {

const std::string kIssuer = "https://issuer.example/";
const std::string kAudience = "mesh-api";
constexpr std::chrono::system_clock::time_point kNow{1'700'000'000s};

// Valid at kNow; tests change one member at a time.
boost::json::object claims() {
  return {{"iss", kIssuer},       {"aud", kAudience},     {"sub", "user-1"},
          {"iat", 1'700'000'000}, {"exp", 1'700'000'900}, {"preferred_username", "ada"}};
}

std::string payload(boost::json::object object = claims()) {
  return boost::json::serialize(object);
}

struct Keys {
  TestKey rsa = rsa_key("rsa-1");
  TestKey ec = ec_key("ec-1");
};

const Keys& keys() {
  static const Keys instance;  // RSA generation is slow: once per run
  return instance;
}

std::unique_ptr<OidcVerifier> make_verifier(const std::vector<TestKey>& with = {keys().rsa,
                                                                                keys().ec}) {
  auto verifier = std::make_unique<OidcVerifier>(OidcOptions{kIssuer, kAudience, 60s});
  verifier->set_keys(KeySet::parse(jwks(with)));
  return verifier;
}

OidcError rejection(const OidcVerifier& verifier, const std::string& token) {
  const auto verified = verifier.verify(token, kNow);
  REQUIRE_FALSE(verified.claims);
  return verified.error;
}

OidcError rejection(const std::unique_ptr<OidcVerifier>& verifier, const std::string& token) {
  return rejection(*verifier, token);
}

std::string with_member(std::string_view key, boost::json::value value) {
  auto object = claims();
  object[key] = std::move(value);
  return payload(object);
}

std::string without_member(std::string_view key) {
  auto object = claims();
  object.erase(key);
  return payload(object);
}

}  // namespace

TEST_CASE("oidc: valid RS256 and ES256 tokens are accepted", "[oidc]") {
  const auto verifier = make_verifier();
  for (const auto* key : {&keys().rsa, &keys().ec}) {
    const auto verified = verifier->verify(token(*key, payload()), kNow);
    REQUIRE(verified.claims);
    CHECK(verified.claims->subject == "user-1");
    CHECK(verified.claims->display_name == "ada");
    CHECK(verified.claims->expires_at == 1'700'000'900);
    const auto principal = verifier->principal(*verified.claims);
    CHECK(principal.user_id == external_user_id(kIssuer, "user-1"));
    CHECK(principal.username == "ada");
    CHECK(principal.role == "user");
  }
}

TEST_CASE("oidc: the display name falls back to email, then sub", "[oidc]") {
  const auto verifier = make_verifier();
  auto object = claims();
  object.erase("preferred_username");
  object["email"] = "ada@example.com";
  auto verified = verifier->verify(token(keys().rsa, payload(object)), kNow);
  REQUIRE(verified.claims);
  CHECK(verified.claims->display_name == "ada@example.com");
  object.erase("email");
  verified = verifier->verify(token(keys().rsa, payload(object)), kNow);
  REQUIRE(verified.claims);
  CHECK(verified.claims->display_name == "user-1");
}

TEST_CASE("oidc: the user id is a UUIDv8 of SHA-256(issuer \\n sub)", "[oidc]") {
  // Computed independently: sha256("https://issuer.example/\nuser-1")[0:16], version 8, variant.
  CHECK(external_user_id(kIssuer, "user-1") == "cd44dc3d-57f0-8015-8d99-63234e1c6491");
  CHECK(external_user_id(kIssuer, "user-1") == external_user_id(kIssuer, "user-1"));
  CHECK(external_user_id("https://other.example/", "user-1") !=
        external_user_id(kIssuer, "user-1"));
  CHECK(external_user_id(kIssuer, "user-2") != external_user_id(kIssuer, "user-1"));
  const std::regex uuid_v8("[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  CHECK(std::regex_match(external_user_id("x", "y"), uuid_v8));
}

TEST_CASE("oidc: claims are checked", "[oidc]") {
  const auto verifier = make_verifier();
  const auto& key = keys().ec;
  CHECK(rejection(verifier, token(key, with_member("iss", "https://evil.example/"))) ==
        OidcError::wrong_issuer);
  CHECK(rejection(verifier, token(key, without_member("iss"))) == OidcError::wrong_issuer);
  CHECK(rejection(verifier, token(key, with_member("aud", "other-api"))) ==
        OidcError::wrong_audience);
  CHECK(rejection(verifier, token(key, with_member("aud", boost::json::array{"a", "b"}))) ==
        OidcError::wrong_audience);
  CHECK(rejection(verifier, token(key, without_member("aud"))) == OidcError::wrong_audience);
  CHECK(verifier->verify(token(key, with_member("aud", boost::json::array{"a", kAudience})), kNow)
            .claims);

  // Expiry with 60 s of leeway for clock skew.
  CHECK(rejection(verifier, token(key, with_member("exp", 1'700'000'000 - 60))) ==
        OidcError::expired);
  CHECK(verifier->verify(token(key, with_member("exp", 1'700'000'000 - 59)), kNow).claims);
  CHECK(rejection(verifier, token(key, with_member("nbf", 1'700'000'061))) ==
        OidcError::not_yet_valid);
  CHECK(verifier->verify(token(key, with_member("nbf", 1'700'000'060)), kNow).claims);
  CHECK(rejection(verifier, token(key, with_member("iat", 1'700'000'061))) ==
        OidcError::not_yet_valid);

  CHECK(rejection(verifier, token(key, without_member("exp"))) == OidcError::malformed);
  CHECK(rejection(verifier, token(key, without_member("sub"))) == OidcError::malformed);
  CHECK(rejection(verifier, token(key, with_member("sub", ""))) == OidcError::malformed);
  CHECK(rejection(verifier, token(key, with_member("sub", 42))) == OidcError::malformed);
  CHECK(rejection(verifier, token(key, with_member("exp", 1.7e9))) == OidcError::malformed);
  CHECK(rejection(verifier, token(key, with_member("aud", boost::json::array{kAudience, 1}))) ==
        OidcError::malformed);
  CHECK(rejection(verifier, token(key, with_member("preferred_username", true))) ==
        OidcError::malformed);
  // Parsers disagree on which repeated member wins: refused outright.
  const std::string repeated =
      R"({"iss":"https://issuer.example/","aud":"mesh-api","sub":"user-1","sub":"admin",)"
      R"("exp":1700000900})";
  CHECK(rejection(verifier, token(key, repeated)) == OidcError::malformed);
}

TEST_CASE("oidc: algorithms are pinned to RS256 and ES256 and to the key's type", "[oidc]") {
  const auto verifier = make_verifier();
  const auto& rsa = keys().rsa;
  const std::string body = payload();

  const std::string none = signing_input(R"({"alg":"none","kid":"rsa-1"})", body) + ".";
  CHECK(rejection(verifier, none) == OidcError::unsupported_algorithm);
  // The classic confusion: HS256 keyed with the RSA public key a naive verifier would use.
  for (const auto& secret : {public_pem(rsa), big_endian(rsa.pkey.get(), OSSL_PKEY_PARAM_RSA_N)}) {
    CHECK(rejection(verifier, hs256_token(secret, R"({"alg":"HS256","kid":"rsa-1"})", body)) ==
          OidcError::unsupported_algorithm);
  }
  CHECK(rejection(verifier, token(rsa, R"({"alg":"PS256","kid":"rsa-1"})", body)) ==
        OidcError::unsupported_algorithm);
  CHECK(rejection(verifier, token(rsa, R"({"alg":"RS512","kid":"rsa-1"})", body)) ==
        OidcError::unsupported_algorithm);
  CHECK(rejection(verifier, token(rsa, R"({"alg":"RS256","kid":"rsa-1","crit":["exp"]})", body)) ==
        OidcError::unsupported_algorithm);
  CHECK(rejection(verifier, token(rsa, R"({"alg":"RS256","kid":"rsa-1","typ":"JWE"})", body)) ==
        OidcError::unsupported_algorithm);
  CHECK(verifier->verify(token(rsa, R"({"alg":"RS256","kid":"rsa-1","typ":"at+jwt"})", body), kNow)
            .claims);

  // An ES256 header naming the RSA key's kid, signed by an EC key.
  TestKey posing = ec_key("rsa-1");
  CHECK(rejection(verifier, token(posing, body)) == OidcError::key_mismatch);
  CHECK(rejection(verifier, token(rsa_key("unknown"), body)) == OidcError::unknown_key);
}

TEST_CASE("oidc: signatures are verified", "[oidc]") {
  const auto verifier = make_verifier();
  for (const auto* key : {&keys().rsa, &keys().ec}) {
    std::string forged = token(*key, payload());
    // Flip one bit of the signature's first byte (its first character carries 6 full bits).
    const auto dot = forged.rfind('.');
    forged[dot + 1] = forged[dot + 1] == 'A' ? 'B' : 'A';
    CHECK(rejection(verifier, forged) == OidcError::bad_signature);

    // Another key under the same kid.
    TestKey impostor = key->rsa ? rsa_key(key->kid) : ec_key(key->kid);
    CHECK(rejection(verifier, token(impostor, payload())) == OidcError::bad_signature);

    // The payload swapped under a valid signature.
    const std::string valid = token(*key, payload());
    const std::string other = token(*key, with_member("sub", "admin"));
    const auto first_dot = valid.find('.');
    const std::string spliced = valid.substr(0, first_dot) +
                                other.substr(first_dot, other.rfind('.') - first_dot) +
                                valid.substr(valid.rfind('.'));
    CHECK(rejection(verifier, spliced) == OidcError::bad_signature);
  }
  // An ES256 signature must be exactly r || s: DER or truncated forms are refused.
  const std::string es = token(keys().ec, payload());
  const std::string short_sig = es.substr(0, es.rfind('.') + 1) + base64url_encode("abc");
  CHECK(rejection(verifier, short_sig) == OidcError::bad_signature);
}

TEST_CASE("oidc: malformed and hostile tokens never throw", "[oidc]") {
  const auto verifier = make_verifier();
  const std::string valid = token(keys().rsa, payload());
  CHECK(rejection(verifier, "") == OidcError::malformed);
  CHECK(rejection(verifier, "a.b") == OidcError::malformed);
  CHECK(rejection(verifier, valid + ".x") == OidcError::malformed);
  CHECK(rejection(verifier, valid + "=") == OidcError::malformed);
  CHECK(rejection(verifier, "!!!." + valid.substr(valid.find('.') + 1)) == OidcError::malformed);
  const std::string header_padded = base64url_encode(header_for(keys().rsa)) + "==";
  CHECK(rejection(verifier, header_padded + valid.substr(valid.find('.'))) == OidcError::malformed);
  CHECK(rejection(verifier, std::string(OidcVerifier::max_token_size + 1, 'a')) ==
        OidcError::malformed);
  const std::string huge_claim = with_member("pad", boost::json::string(9000, 'x'));
  CHECK(rejection(verifier, token(keys().rsa, huge_claim)) == OidcError::malformed);
  CHECK(rejection(verifier, token(keys().rsa, "[1,2]")) == OidcError::malformed);
  CHECK(rejection(verifier, token(keys().rsa, header_for(keys().rsa), "{\"sub\":")) ==
        OidcError::malformed);
  CHECK(rejection(verifier, token(keys().rsa, R"({"alg":"RS256","kid":7})", payload())) ==
        OidcError::malformed);
  CHECK(rejection(verifier, token(keys().rsa, R"({"alg":"RS256","alg":"RS256"})", payload())) ==
        OidcError::malformed);
}

TEST_CASE("oidc: key selection by kid, or the one key of the algorithm", "[oidc]") {
  TestKey rsa_without_kid = keys().rsa;
  rsa_without_kid.kid.clear();
  const std::string header = R"({"alg":"RS256"})";
  {
    const auto verifier = make_verifier({keys().rsa, keys().ec});
    CHECK(verifier->verify(token(rsa_without_kid, header, payload()), kNow).claims);
  }
  {
    const auto verifier = make_verifier({keys().rsa, rsa_key("rsa-2")});
    CHECK(rejection(verifier, token(rsa_without_kid, header, payload())) == OidcError::unknown_key);
  }
  {
    OidcVerifier empty(OidcOptions{kIssuer, kAudience});
    CHECK(rejection(empty, token(keys().rsa, payload())) == OidcError::unknown_key);
  }
}

TEST_CASE("oidc: an unknown kid calls the refresh hook", "[oidc]") {
  auto verifier = make_verifier();
  int calls = 0;
  verifier->on_unknown_key([&calls] { ++calls; });
  CHECK(verifier->verify(token(keys().rsa, payload()), kNow).claims);
  CHECK(calls == 0);
  CHECK(rejection(verifier, token(rsa_key("new"), payload())) == OidcError::unknown_key);
  CHECK(calls == 1);
  CHECK(rejection(verifier, token(ec_key("rsa-1"), payload())) == OidcError::key_mismatch);
  CHECK(calls == 1);
  verifier->on_unknown_key({});
  CHECK(rejection(verifier, token(rsa_key("newer"), payload())) == OidcError::unknown_key);
  CHECK(calls == 1);
}

TEST_CASE("oidc: the verifier needs an issuer and an audience", "[oidc]") {
  CHECK_THROWS_AS(OidcVerifier(OidcOptions{"", kAudience}), std::invalid_argument);
  CHECK_THROWS_AS(OidcVerifier(OidcOptions{kIssuer, ""}), std::invalid_argument);
  CHECK_THROWS_AS(OidcVerifier(OidcOptions{kIssuer, kAudience, -1s}), std::invalid_argument);
}

TEST_CASE("jwks: RSA keys under 2048 bits are refused", "[jwks]") {
  const TestKey weak = rsa_key("weak", 1024);
  try {
    KeySet::parse(jwks({weak}));
    FAIL("a JWKS with only a 1024-bit key must be rejected");
  } catch (const std::invalid_argument& error) {
    CHECK_THAT(error.what(), Catch::Contains("1024 bits"));
  }
  const auto set = KeySet::parse(jwks({weak, keys().rsa}));
  REQUIRE(set->keys().size() == 1);
  CHECK(set->keys()[0].kid == "rsa-1");
  REQUIRE(set->skipped().size() == 1);
  CHECK_THAT(set->skipped()[0], Catch::Contains("weak") && Catch::Contains("1024 bits"));

  // A token of the weak key does not verify even when its kid is known to the provider.
  OidcVerifier verifier(OidcOptions{kIssuer, kAudience});
  verifier.set_keys(set);
  CHECK(rejection(verifier, token(weak, payload())) == OidcError::unknown_key);
}

TEST_CASE("jwks: junk entries are skipped, usable keys kept", "[jwks]") {
  const auto& rsa = keys().rsa;
  const auto& ec = keys().ec;
  auto off_curve = jwk(ec, {{"kid", "off-curve"}});
  {
    auto y = std::string(off_curve["y"].as_string());
    y[5] = y[5] == 'A' ? 'B' : 'A';
    off_curve["y"] = y;
  }
  const std::vector<boost::json::value> entries{
      42,
      "text",
      boost::json::object{},
      boost::json::object{{"kty", "oct"}, {"k", "c2VjcmV0"}},
      jwk(ec, {{"kid", "p384"}, {"crv", "P-384"}}),
      jwk(ec, {{"kid", "no-crv"}, {"crv", nullptr}}),
      jwk(rsa, {{"kid", "enc"}, {"use", "enc"}}),
      jwk(rsa, {{"kid", "rs512"}, {"alg", "RS512"}}),
      jwk(ec, {{"kid", "es-as-rs"}, {"alg", "RS256"}}),
      jwk(rsa, {{"kid", "bad-n"}, {"n", "not base64!"}}),
      jwk(rsa, {{"kid", "padded-e"}, {"e", "AQAB=="}}),
      jwk(rsa, {{"kid", "even-e"}, {"e", "AQAA"}}),
      jwk(rsa, {{"kid", "no-e"}, {"e", nullptr}}),
      jwk(ec, {{"kid", "short-x"}, {"x", "AAAA"}}),
      off_curve,
      jwk(rsa, {{"kid", 12}}),
      jwk(rsa, {{"alg", "RS256"}}),
      jwk(ec, {{"alg", "ES256"}}),
  };
  const auto set = KeySet::parse(jwks(entries));
  REQUIRE(set->keys().size() == 2);
  CHECK(set->keys()[0].alg == SigningAlg::rs256);
  CHECK(set->keys()[1].alg == SigningAlg::es256);
  CHECK(set->skipped().size() == entries.size() - 2);

  OidcVerifier verifier(OidcOptions{kIssuer, kAudience});
  verifier.set_keys(set);
  CHECK(verifier.verify(token(rsa, payload()), kNow).claims);
  CHECK(verifier.verify(token(ec, payload()), kNow).claims);
}

TEST_CASE("jwks: malformed documents are rejected with a reason", "[jwks]") {
  const auto rejects = [](const std::string& document, std::string_view reason) {
    try {
      KeySet::parse(document);
      FAIL("accepted: " << document.substr(0, 80));
    } catch (const std::invalid_argument& error) {
      CHECK_THAT(error.what(), Catch::Contains(std::string(reason)));
    }
  };
  rejects("", "not JSON");
  rejects("{\"keys\":[", "not JSON");
  rejects("[]", "\"keys\" array");
  rejects("{\"keys\":{}}", "\"keys\" array");
  rejects("{\"keys\":[]}", "no usable");
  rejects("{\"keys\":[{\"kty\":\"oct\"}]}", "unsupported kty");
  rejects(std::string(KeySet::max_document_size + 1, ' '), "above the limit");
  const std::vector<TestKey> many(KeySet::max_keys + 1, keys().ec);
  rejects(jwks(many), "above the limit");
  const std::vector<TestKey> most(KeySet::max_keys, keys().ec);
  CHECK(KeySet::parse(jwks(most))->keys().size() == KeySet::max_keys);
}

namespace {

template <class T>
T await(asio::io_context& io, Task<T> task) {
  return asio::co_spawn(io, std::move(task), asio::use_future).get();
}

// A loopback JWKS endpoint whose document and status the test changes at will.
class JwksServer {
 public:
  JwksServer() {
    auto router = std::make_shared<http::Router>();
    router->add("GET", "/.well-known/jwks.json", [this](http::Request&) -> Task<http::Response> {
      std::lock_guard lock(mutex_);
      ++requests_;
      if (status_ != 200) co_return http::problem(status_, "unavailable");
      co_return http::Response::text(200, document_, "application/json");
    });
    http::ServerOptions options;
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<http::Server>(io_.io().get_executor(), options, router, registry_);
    server_->start();
  }
  ~JwksServer() { asio::co_spawn(io_.io(), server_->stop(5s), asio::use_future).get(); }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->local_endpoint().port()) +
           "/.well-known/jwks.json";
  }
  void serve(std::string document, unsigned status = 200) {
    std::lock_guard lock(mutex_);
    document_ = std::move(document);
    status_ = status;
  }
  int requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  testing::IoThread io_;
  prometheus::Registry registry_;
  std::unique_ptr<http::Server> server_;
  mutable std::mutex mutex_;
  std::string document_;
  unsigned status_ = 200;
  int requests_ = 0;
};

// A loopback https JWKS endpoint with a self-signed certificate for 127.0.0.1.
class TlsJwksServer {
 public:
  explicit TlsJwksServer(std::string document)
      : certificate_(self_signed_for_loopback()), document_(std::move(document)) {
    context_.use_certificate_chain(asio::buffer(certificate_.certificate_pem));
    context_.use_private_key(asio::buffer(certificate_.key_pem), asio::ssl::context::pem);
    acceptor_.emplace(io_->io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    asio::co_spawn(io_->io(), serve(), [this](std::exception_ptr) { served_.set_value(); });
  }
  // The accept loop ends before the acceptor goes, and the acceptor before its io_context.
  ~TlsJwksServer() {
    asio::post(io_->io(), [this] { acceptor_->close(); });
    served_.get_future().wait();
    acceptor_.reset();
    io_.reset();
  }

  std::string url() const {
    return "https://127.0.0.1:" + std::to_string(acceptor_->local_endpoint().port()) + "/jwks";
  }
  const std::string& certificate_pem() const { return certificate_.certificate_pem; }

 private:
  Task<void> serve() {
    namespace beast = boost::beast;
    while (true) {
      error_code ec;
      auto socket = co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), context_);
      beast::get_lowest_layer(stream).expires_after(5s);
      co_await stream.async_handshake(asio::ssl::stream_base::server,
                                      asio::redirect_error(asio::use_awaitable, ec));
      if (ec) continue;  // the client refused the certificate
      beast::flat_buffer buffer;
      beast::http::request<beast::http::empty_body> request;
      co_await beast::http::async_read(stream, buffer, request,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) continue;
      beast::http::response<beast::http::string_body> response(beast::http::status::ok, 11);
      response.set(beast::http::field::content_type, "application/json");
      response.body() = document_;
      response.prepare_payload();
      co_await beast::http::async_write(stream, response,
                                        asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  std::unique_ptr<testing::IoThread> io_ = std::make_unique<testing::IoThread>();
  TestCertificate certificate_;
  std::string document_;
  asio::ssl::context context_{asio::ssl::context::tls_server};
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::promise<void> served_;
};

struct SourceFixture {
  explicit SourceFixture(std::string location, std::chrono::milliseconds gap = 0ms,
                         std::string ca_file = {}) {
    JwksSourceOptions options;
    options.location = std::move(location);
    options.min_early_refresh_gap = gap;
    options.ca_file = std::move(ca_file);
    source = std::make_unique<JwksSource>(io.io().get_executor(), options, verifier, registry);
  }
  ~SourceFixture() { await(io.io(), source->stop()); }

  double refreshes(const std::string& result) {
    return testing::metric(registry, "mesh_oidc_jwks_refresh_total", {{"result", result}})
        .value_or(0);
  }
  bool accepts(const std::string& token) {
    return verifier.verify(token, std::chrono::system_clock::now()).claims.has_value();
  }

  testing::IoThread io;
  prometheus::Registry registry;
  OidcVerifier verifier{OidcOptions{kIssuer, kAudience}};
  std::unique_ptr<JwksSource> source;
};

// A token valid now (the source tests verify against the real clock).
std::string fresh_token(const TestKey& key) {
  const auto now =
      std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto object = claims();
  object["iat"] = now;
  object["exp"] = now + 600;
  return token(key, payload(object));
}

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("mesh-oidc-" + std::to_string(::getpid()) + "-" + name);
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  const auto partial = path.string() + ".tmp";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  std::filesystem::rename(partial, path);  // atomic, so a refresh never reads half a file
}

}  // namespace

TEST_CASE("jwks source: key rotation over HTTP, and old keys kept when the URL fails",
          "[jwks_source]") {
  JwksServer server;
  const TestKey& first = keys().rsa;
  const TestKey second = ec_key("ec-2");
  server.serve(jwks({first}));
  SourceFixture f(server.url());
  await(f.io.io(), f.source->start());
  CHECK(f.refreshes("ok") == 1);
  CHECK(f.accepts(fresh_token(first)));

  // The provider rotates: the first token with the new kid triggers one refresh. The waits
  // below only read counters, so every refresh in this test is one the test asked for.
  server.serve(jwks({second}));
  const std::string rotated = fresh_token(second);
  CHECK_FALSE(f.accepts(rotated));
  CHECK(testing::wait_until([&] { return f.refreshes("ok") == 2; }));
  CHECK(f.accepts(rotated));
  REQUIRE(f.verifier.keys()->keys().size() == 1);
  CHECK(f.verifier.keys()->keys()[0].kid == "ec-2");

  // The provider fails: 503, then a document without a usable key. The keys stay.
  server.serve("", 503);
  CHECK_FALSE(f.accepts(fresh_token(rsa_key("unknown-1"))));
  CHECK(testing::wait_until([&] { return f.refreshes("error") == 1; }));
  CHECK(f.accepts(rotated));

  server.serve("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}");
  CHECK_FALSE(f.accepts(fresh_token(rsa_key("unknown-2"))));
  CHECK(testing::wait_until([&] { return f.refreshes("error") == 2; }));
  CHECK(f.accepts(rotated));
  CHECK(f.refreshes("ok") == 2);
  CHECK(server.requests() == 4);
  CHECK(testing::metric(f.registry, "mesh_oidc_jwks_keys") == 1);
}

TEST_CASE("jwks source: early refreshes are rate-limited", "[jwks_source]") {
  JwksServer server;
  server.serve(jwks({keys().rsa}));
  {
    SourceFixture f(server.url(), std::chrono::hours(1));
    CHECK_FALSE(f.source->request_refresh());  // not started
    await(f.io.io(), f.source->start());
    // The initial load counts as the last fetch: no early refresh within the gap.
    CHECK_FALSE(f.source->request_refresh());
    CHECK_FALSE(f.accepts(fresh_token(rsa_key("unknown"))));
    CHECK(server.requests() == 1);
  }
  {
    SourceFixture f(server.url(), 0ms);
    await(f.io.io(), f.source->start());
    CHECK(f.source->request_refresh());
    CHECK(testing::wait_until([&] { return f.refreshes("ok") >= 2; }));
    await(f.io.io(), f.source->stop());
    CHECK_FALSE(f.source->request_refresh());  // stopped
  }
}

TEST_CASE("jwks source: start fails without keys", "[jwks_source]") {
  JwksServer server;
  const auto fails = [](const std::string& location, std::string_view reason) {
    SourceFixture f(location);
    try {
      await(f.io.io(), f.source->start());
      FAIL("started with " << location);
    } catch (const std::runtime_error& error) {
      CHECK_THAT(error.what(), Catch::Contains(std::string(reason)));
    }
    CHECK(f.refreshes("error") == 1);
  };
  server.serve("", 404);
  fails(server.url(), "HTTP status 404");
  server.serve("not json");
  fails(server.url(), "not JSON");
  server.serve(std::string(KeySet::max_document_size + 10, ' '));
  fails(server.url(), "body");
  fails(temp_file("missing.json").string(), "cannot open");
  fails("http://127.0.0.1:1/jwks", "connect");

  prometheus::Registry registry;
  OidcVerifier verifier{OidcOptions{kIssuer, kAudience}};
  testing::IoThread io;
  const auto refused = [&](std::string location) {
    JwksSourceOptions options;
    options.location = std::move(location);
    CHECK_THROWS_AS(JwksSource(io.io().get_executor(), options, verifier, registry),
                    std::invalid_argument);
  };
  refused("");
  refused("ftp://example.com/jwks");
  refused("http://");
}

TEST_CASE("jwks source: a file, re-read on refresh", "[jwks_source]") {
  const auto path = temp_file("keys.json");
  write_file(path, jwks({keys().rsa}));
  for (const std::string& location : {path.string(), "file://" + path.string()}) {
    write_file(path, jwks({keys().rsa}));
    SourceFixture f(location);
    await(f.io.io(), f.source->start());
    CHECK(f.accepts(fresh_token(keys().rsa)));

    const TestKey next = ec_key("file-2");
    write_file(path, jwks({keys().rsa, next}));
    const std::string rotated = fresh_token(next);
    CHECK(testing::wait_until([&] { return f.accepts(rotated); }));

    write_file(path, "{}");
    CHECK_FALSE(f.accepts(fresh_token(ec_key("file-3"))));
    CHECK(testing::wait_until([&] { return f.refreshes("error") >= 1; }));
    CHECK(f.accepts(rotated));
  }
  std::filesystem::remove(path);
}

TEST_CASE("jwks source: https verifies the server's certificate", "[jwks_source]") {
  TlsJwksServer server(jwks({keys().ec}));
  {
    // Not in the system store: refused.
    SourceFixture f(server.url());
    try {
      await(f.io.io(), f.source->start());
      FAIL("a self-signed certificate was accepted");
    } catch (const std::runtime_error& error) {
      CHECK_THAT(error.what(), Catch::Contains("tls handshake"));
    }
    CHECK_FALSE(f.accepts(fresh_token(keys().ec)));
  }
  {
    const auto ca_file = temp_file("ca.pem");
    write_file(ca_file, server.certificate_pem());
    SourceFixture f(server.url(), 0ms, ca_file.string());
    await(f.io.io(), f.source->start());
    CHECK(f.accepts(fresh_token(keys().ec)));
    std::filesystem::remove(ca_file);
  }
}
