#include "mesh/auth/jwt.hpp"

#include <array>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <sodium.h>
#include <catch2/catch.hpp>

#include "mesh/auth/base64url.hpp"

using namespace mesh::auth;
using namespace std::chrono_literals;

namespace Catch {
template <>
struct StringMaker<JwtError> {
  static std::string convert(JwtError error) { return std::string(to_string(error)); }
};
}  // namespace Catch

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";
const std::string kIssuer = "mesh";
constexpr std::chrono::system_clock::time_point kNow{1'700'000'000s};
constexpr std::string_view kHeader = R"({"alg":"HS256","typ":"JWT"})";
// A payload that kNow accepts; tests change one thing about it at a time.
constexpr std::string_view kPayload =
    R"({"sub":"42","name":"ada","role":"user","iss":"mesh","iat":1700000000,"exp":1700000900})";

const JwtCodec& codec() {
  static const JwtCodec instance(kSecret, kIssuer, 900s);
  return instance;
}

// Signs independently of JwtCodec (libsodium directly), so tests can build tokens the codec
// would never issue.
std::string sign(std::string_view header, std::string_view payload,
                 std::string_view secret = kSecret) {
  REQUIRE(sodium_init() >= 0);
  std::string token = base64url_encode(header) + "." + base64url_encode(payload);
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(token.data()),
                                token.size());
  std::array<unsigned char, crypto_auth_hmacsha256_BYTES> mac;
  crypto_auth_hmacsha256_final(&state, mac.data());
  return token + "." + base64url_encode({reinterpret_cast<const char*>(mac.data()), mac.size()});
}

std::string sign_payload(std::string_view payload) { return sign(kHeader, payload); }
std::string sign_header(std::string_view header) { return sign(header, kPayload); }

std::vector<std::string> segments(const std::string& token) {
  std::vector<std::string> parts(1);
  for (const char c : token) {
    if (c == '.') {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts) {
  std::string token = parts.front();
  for (std::size_t i = 1; i < parts.size(); ++i) token += "." + parts[i];
  return token;
}

JwtError rejection(std::string_view token, std::chrono::system_clock::time_point now = kNow) {
  const auto verified = codec().verify(token, now);
  REQUIRE_FALSE(verified.claims);
  return verified.error;
}

Claims accepted(std::string_view token, std::chrono::system_clock::time_point now = kNow) {
  auto verified = codec().verify(token, now);
  REQUIRE(verified.claims);
  return *verified.claims;
}

}  // namespace

TEST_CASE("an issued token verifies to the claims it was issued with") {
  const std::string token = codec().issue("42", "ada", "admin", kNow + 300ms);
  const Claims claims = accepted(token, kNow + 1s);
  CHECK(claims == Claims{"42", "ada", "admin", 1'700'000'000, 1'700'000'900});
  CHECK(codec().ttl() == 900s);
}

TEST_CASE("an issued token has the fixed HS256 header and the codec's issuer") {
  const auto parts = segments(codec().issue("42", "ada", "user", kNow));
  REQUIRE(parts.size() == 3);
  CHECK(parts[0] == base64url_encode(kHeader));
  std::array<char, 256> buffer;
  const auto payload = base64url_decode(parts[1], buffer);
  REQUIRE(payload);
  CHECK(
      *payload ==
      R"({"sub":"42","name":"ada","role":"user","iss":"mesh","iat":1700000000,"exp":1700000900})");
}

TEST_CASE("a token signed elsewhere with the same secret verifies") {
  CHECK(accepted(sign_payload(kPayload)) ==
        Claims{"42", "ada", "user", 1'700'000'000, 1'700'000'900});
}

TEST_CASE("strings with escapes survive the round trip, however long") {
  const std::string username = std::string(4500, 'x') + "\"\\\n\u00e9\U0001F600";
  const std::string token = codec().issue("user/\"7\"", username, "user", kNow);
  const Claims claims = accepted(token);
  CHECK(claims.subject == "user/\"7\"");
  CHECK(claims.username == username);
}

TEST_CASE("escaped member names are the names they spell") {
  const Claims claims = accepted(sign_payload(
      R"({"\u0073ub":"42","n\u0061me":"ada","iss":"mesh","iat":1700000000,"exp":1700000900})"));
  CHECK(claims.subject == "42");
  CHECK(claims.username == "ada");
  CHECK(claims.role.empty());
}

TEST_CASE("unknown header parameters and claims are ignored") {
  CHECK(accepted(sign_header(R"({"typ":"JWT","kid":"k1","alg":"HS256"})")).subject == "42");
  CHECK(accepted(sign_header(R"({"alg":"HS256"})")).subject == "42");
  CHECK(
      accepted(sign_payload(R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,"aud":["a","b"],)"
                            R"("ext":{"sub":7,"exp":"x","deep":[{"iss":null}]},"jti":1.5})"))
          .subject == "42");
}

TEST_CASE("the codec refuses weak secrets and non-positive lifetimes") {
  CHECK_THROWS_AS(JwtCodec(std::string(31, 'k'), kIssuer, 900s), std::invalid_argument);
  CHECK_THROWS_AS(JwtCodec("", kIssuer, 900s), std::invalid_argument);
  CHECK_NOTHROW(JwtCodec(std::string(32, 'k'), kIssuer, 900s));
  CHECK_THROWS_AS(JwtCodec(kSecret, kIssuer, 0s), std::invalid_argument);
  CHECK_THROWS_AS(JwtCodec(kSecret, kIssuer, -1s), std::invalid_argument);
}

TEST_CASE("alg none is refused with or without a signature") {
  const std::string none = sign_header(R"({"alg":"none","typ":"JWT"})");
  CHECK(rejection(none) == JwtError::unsupported_algorithm);
  auto parts = segments(none);
  parts[2].clear();
  CHECK(rejection(join(parts)) == JwtError::unsupported_algorithm);
  CHECK(rejection(sign_header(R"({"alg":"None"})")) == JwtError::unsupported_algorithm);
}

TEST_CASE("other algorithms are refused even with a valid HS256 signature") {
  for (const char* header :
       {R"({"alg":"HS512","typ":"JWT"})", R"({"alg":"RS256","typ":"JWT"})",
        R"({"alg":"hs256","typ":"JWT"})", R"({"alg":"HS256 "})", R"({"alg":"ES256"})"}) {
    INFO(header);
    CHECK(rejection(sign_header(header)) == JwtError::unsupported_algorithm);
  }
}

TEST_CASE("a header must name HS256 as a string, a JWT typ and no crit") {
  for (const char* header :
       {R"({"typ":"JWT"})", R"({})", R"({"alg":null})", R"({"alg":256})", R"({"alg":["HS256"]})",
        R"({"alg":{"name":"HS256"}})", R"({"alg":"HS256","typ":"JWS"})",
        R"({"alg":"HS256","typ":1})", R"({"alg":"HS256","crit":["exp"]})",
        R"({"alg":"HS256","crit":[]})", R"({"alg":"HS256","crit":null})"}) {
    INFO(header);
    CHECK(rejection(sign_header(header)) == JwtError::unsupported_algorithm);
  }
}

TEST_CASE("tampering with any segment breaks the signature") {
  const std::string token = codec().issue("42", "ada", "user", kNow);
  const auto parts = segments(token);

  auto forged_payload = parts;
  forged_payload[1] = base64url_encode(
      R"({"sub":"42","name":"ada","role":"admin","iss":"mesh","iat":1700000000,"exp":1700000900})");
  CHECK(rejection(join(forged_payload)) == JwtError::bad_signature);

  auto forged_header = parts;
  forged_header[0] = base64url_encode(R"({"alg":"HS256","typ":"JWT","kid":"x"})");
  CHECK(rejection(join(forged_header)) == JwtError::bad_signature);

  auto forged_signature = parts;
  forged_signature[2][0] = forged_signature[2][0] == 'A' ? 'B' : 'A';
  CHECK(rejection(join(forged_signature)) == JwtError::bad_signature);

  auto empty_signature = parts;
  empty_signature[2].clear();
  CHECK(rejection(join(empty_signature)) == JwtError::bad_signature);

  auto short_signature = parts;
  short_signature[2].resize(40);
  CHECK(rejection(join(short_signature)) == JwtError::bad_signature);

  auto long_signature = parts;
  long_signature[2] = base64url_encode(std::string(64, 'x'));
  CHECK(rejection(join(long_signature)) == JwtError::bad_signature);
}

TEST_CASE("a token signed with another secret is refused") {
  CHECK(rejection(sign(kHeader, kPayload, "another secret of at least 32 bytes!")) ==
        JwtError::bad_signature);
  const JwtCodec other(std::string(32, 'z'), kIssuer, 900s);
  CHECK(rejection(other.issue("42", "ada", "user", kNow)) == JwtError::bad_signature);
}

TEST_CASE("exp is enforced with no leeway") {
  const std::string token = sign_payload(kPayload);
  const std::chrono::system_clock::time_point exp{1'700'000'900s};
  CHECK(accepted(token, exp - 1s).subject == "42");
  CHECK(accepted(token, exp - 1ms).subject == "42");
  CHECK(rejection(token, exp) == JwtError::expired);
  CHECK(rejection(token, exp + 1ms) == JwtError::expired);
  CHECK(rejection(token, exp + 24h) == JwtError::expired);
  CHECK(rejection(sign_payload(R"({"sub":"42","iss":"mesh","iat":0,"exp":-1})")) ==
        JwtError::expired);
}

TEST_CASE("nbf in the future is refused") {
  const std::string token = sign_payload(
      R"({"sub":"42","iss":"mesh","iat":1700000000,"nbf":1700000060,"exp":1700000900})");
  CHECK(rejection(token) == JwtError::not_yet_valid);
  CHECK(rejection(token, kNow + 59s) == JwtError::not_yet_valid);
  CHECK(accepted(token, kNow + 60s).subject == "42");
}

TEST_CASE("the issuer must be the configured one") {
  CHECK(rejection(sign_payload(R"({"sub":"42","iss":"evil","iat":1,"exp":1700000900})")) ==
        JwtError::wrong_issuer);
  CHECK(rejection(sign_payload(R"({"sub":"42","iss":"Mesh","iat":1,"exp":1700000900})")) ==
        JwtError::wrong_issuer);
  CHECK(rejection(sign_payload(R"({"sub":"42","iss":"","iat":1,"exp":1700000900})")) ==
        JwtError::wrong_issuer);
  CHECK(rejection(sign_payload(R"({"sub":"42","iat":1,"exp":1700000900})")) ==
        JwtError::wrong_issuer);
  const JwtCodec other(kSecret, "other", 900s);
  CHECK(rejection(other.issue("42", "ada", "user", kNow)) == JwtError::wrong_issuer);
}

TEST_CASE("tokens that are not three segments are malformed") {
  const std::string token = codec().issue("42", "ada", "user", kNow);
  const auto parts = segments(token);
  CHECK(rejection("") == JwtError::malformed);
  CHECK(rejection(".") == JwtError::malformed);
  CHECK(rejection("..") == JwtError::malformed);
  CHECK(rejection(parts[0] + "." + parts[1]) == JwtError::malformed);
  CHECK(rejection(token + ".") == JwtError::malformed);
  CHECK(rejection(token + "." + parts[2]) == JwtError::malformed);
  CHECK(rejection("." + token) == JwtError::malformed);
}

TEST_CASE("segments that are not canonical base64url are malformed") {
  const std::string token = codec().issue("42", "ada", "user", kNow);
  for (std::size_t segment = 0; segment < 3; ++segment) {
    for (const char* garbage : {"=", "==", "+", "/", " ", "\n", "*", "\xc3\xa9"}) {
      auto parts = segments(token);
      parts[segment] += garbage;
      INFO("segment " << segment << " + '" << garbage << "'");
      CHECK(rejection(join(parts)) == JwtError::malformed);
    }
  }
  // A 32-byte signature leaves two unused bits in its last character; setting one must not
  // give a second spelling of the same signature.
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto stray_bits = segments(token);
  REQUIRE(stray_bits[2].size() == 43);
  char& last = stray_bits[2].back();
  last = kAlphabet[kAlphabet.find(last) + 1];
  CHECK(rejection(join(stray_bits)) == JwtError::malformed);
}

TEST_CASE("a payload that is not one JSON object is malformed") {
  for (const char* payload : {"", "not json", "[]", R"(["sub","42"])", "42", R"("sub")", "null",
                              "true", R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900)",
                              R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900} {})",
                              R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900}x)",
                              R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,})",
                              R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900 /* c */})",
                              "{\"sub\":\"\xff\",\"iss\":\"mesh\",\"iat\":1,\"exp\":1700000900}"}) {
    INFO(payload);
    CHECK(rejection(sign_payload(payload)) == JwtError::malformed);
  }
  CHECK(
      accepted(sign_payload(" \n{\"sub\":\"42\",\"iss\":\"mesh\",\"iat\":1,\"exp\":1700000900}\t"))
          .subject == "42");
}

TEST_CASE("a header that is not one JSON object is malformed") {
  for (const char* header : {"", "HS256", R"(["alg","HS256"])", R"("HS256")", R"({"alg":"HS256")",
                             R"({"alg":"HS256"}{})"}) {
    INFO(header);
    CHECK(rejection(sign_header(header)) == JwtError::malformed);
  }
}

TEST_CASE("required claims must be present with the right types") {
  for (const char* payload : {
           R"({"iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":42,"iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":null,"iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":["42"],"iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":"42","iss":"mesh","exp":1700000900})",
           R"({"sub":"42","iss":"mesh","iat":1})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":"1700000900"})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900.5})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900.0})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1.7e9})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":99999999999999999999})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":18446744073709551615})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":true})",
           R"({"sub":"42","iss":"mesh","iat":"1","exp":1700000900})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,"nbf":"1"})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,"nbf":1.5})",
           R"({"sub":"42","iss":7,"iat":1,"exp":1700000900})",
           R"({"sub":"42","name":null,"iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":"42","role":["admin"],"iss":"mesh","iat":1,"exp":1700000900})",
       }) {
    INFO(payload);
    CHECK(rejection(sign_payload(payload)) == JwtError::malformed);
  }
}

TEST_CASE("repeated member names are malformed, whichever spelling repeats them") {
  for (const char* payload : {
           R"({"sub":"42","sub":"1","iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":"42","\u0073ub":"1","iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1,"exp":1700000900})",
           R"({"sub":"42","iss":"mesh","iss":"mesh","iat":1,"exp":1700000900})",
           R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,"jti":"a","jti":"a"})",
       }) {
    INFO(payload);
    CHECK(rejection(sign_payload(payload)) == JwtError::malformed);
  }
  CHECK(rejection(sign_header(R"({"alg":"HS256","alg":"none"})")) == JwtError::malformed);
  CHECK(rejection(sign_header(R"({"alg":"none","alg":"HS256"})")) == JwtError::malformed);
  CHECK(rejection(sign_header(R"({"alg":"HS256","kid":"a","kid":"b"})")) == JwtError::malformed);
}

TEST_CASE("tokens longer than max_token_size are malformed, even when signed") {
  const auto padded = [](std::size_t pad) {
    return sign_payload(R"({"sub":"42","iss":"mesh","iat":1,"exp":1700000900,"pad":")" +
                        std::string(pad, 'x') + "\"}");
  };
  std::size_t pad = 5900;
  REQUIRE(padded(pad).size() < JwtCodec::max_token_size);
  while (padded(pad).size() < JwtCodec::max_token_size) ++pad;
  REQUIRE(padded(pad).size() == JwtCodec::max_token_size);
  CHECK(accepted(padded(pad)).subject == "42");
  CHECK(padded(pad + 1).size() > JwtCodec::max_token_size);
  CHECK(rejection(padded(pad + 1)) == JwtError::malformed);
  CHECK(rejection(std::string(1 << 20, 'A')) == JwtError::malformed);
}

TEST_CASE("every JwtError has its own name") {
  CHECK(to_string(JwtError::malformed) == "malformed");
  CHECK(to_string(JwtError::unsupported_algorithm) == "unsupported_algorithm");
  CHECK(to_string(JwtError::bad_signature) == "bad_signature");
  CHECK(to_string(JwtError::expired) == "expired");
  CHECK(to_string(JwtError::not_yet_valid) == "not_yet_valid");
  CHECK(to_string(JwtError::wrong_issuer) == "wrong_issuer");
}
