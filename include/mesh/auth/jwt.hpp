#pragma once
// HS256 JSON Web Tokens (RFC 7519) for sessions. The algorithm is pinned: a token is accepted
// only if its header asks for HS256, so a forged header can never choose "none" or another key.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mesh::auth {

struct Claims {
  std::string subject;          // "sub": the user id
  std::string username;         // "name"
  std::string role;             // "role": "user" or "admin"
  std::int64_t issued_at = 0;   // "iat", unix seconds
  std::int64_t expires_at = 0;  // "exp", unix seconds

  bool operator==(const Claims&) const = default;
};

// Why verify() rejected a token, in the order the checks run.
enum class JwtError {
  // Not three canonical base64url segments of at most JwtCodec::max_token_size bytes in all;
  // header or payload not one JSON object; a repeated member name; a claim of the wrong type
  // ("sub" not a string, "iat"/"exp"/"nbf" not integers, ...); "sub", "iat" or "exp" missing.
  malformed,
  // The header asks for anything but a plain HS256 JWT: "alg" missing or not "HS256", "typ"
  // present but not "JWT", or "crit" present. Checked before the signature.
  unsupported_algorithm,
  bad_signature,
  // "exp" <= now, with no leeway.
  expired,
  // "nbf" > now.
  not_yet_valid,
  // "iss" missing or not the configured issuer.
  wrong_issuer,
};

// The enumerator's name, for logs and metric labels.
std::string_view to_string(JwtError error);

class JwtCodec {
 public:
  static constexpr std::size_t max_token_size = 8 * 1024;

  // Throws std::invalid_argument if `secret` is shorter than 32 bytes (HMAC-SHA256 is only as
  // strong as a 256-bit key) or `ttl` is not positive.
  JwtCodec(std::string secret, std::string issuer, std::chrono::seconds ttl);

  // A signed token with "iat" = now and "exp" = now + ttl, both truncated to whole seconds.
  std::string issue(std::string_view subject, std::string_view username, std::string_view role,
                    std::chrono::system_clock::time_point now) const;

  struct Verified {
    std::optional<Claims> claims;          // set if and only if the token is valid
    JwtError error = JwtError::malformed;  // meaningful only when `claims` is empty
  };

  // Runs on every request, so it is kept cheap: it never throws for a bad token, decodes into
  // a stack buffer and computes at most one HMAC.
  Verified verify(std::string_view token, std::chrono::system_clock::time_point now) const;

  std::chrono::seconds ttl() const { return ttl_; }

 private:
  std::string secret_;
  std::string issuer_;
  std::chrono::seconds ttl_;
};

}  // namespace mesh::auth
