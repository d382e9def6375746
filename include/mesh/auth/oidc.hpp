#pragma once
// Tokens of an external OpenID Connect provider (Auth0, Keycloak, Google, ...): RS256 or ES256
// JWTs signed by a key of the provider's JWKS, for one issuer and one audience. The algorithm
// is pinned to those two and to the key's type, so neither "none", nor HS256 keyed with a
// public key, nor any other algorithm named by a forged header is ever run.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/auth/jwks.hpp"
#include "mesh/http/message.hpp"

namespace mesh::auth {

struct OidcOptions {
  std::string issuer;    // "iss" must equal it exactly
  std::string audience;  // "aud" must be it, or an array containing it
  // Clock skew tolerated between the provider and this host, for "exp", "nbf" and "iat".
  std::chrono::seconds leeway{60};
};

struct OidcClaims {
  std::string subject;       // "sub"
  std::string display_name;  // "preferred_username", else "email", else "sub"
  std::int64_t expires_at = 0;
};

// Why verify() rejected a token, in the order the checks run.
enum class OidcError {
  // Over max_token_size, not three canonical base64url segments, a segment not one JSON object,
  // a repeated member name, a claim of the wrong type, "sub" (non-empty) or "exp" missing.
  malformed,
  // "alg" not RS256 or ES256, "typ" not JWT / at+jwt, or "crit" present.
  unsupported_algorithm,
  // No key of the token's "kid" (or, without a kid, not exactly one key of its algorithm).
  unknown_key,
  // The "kid" names a key of the other algorithm.
  key_mismatch,
  bad_signature,
  wrong_issuer,
  wrong_audience,
  // "exp" <= now - leeway.
  expired,
  // "nbf" or "iat" > now + leeway.
  not_yet_valid,
};

std::string_view to_string(OidcError error);

// The user id of an external subject: SHA-256(issuer + "\n" + subject), first 16 bytes, as a
// UUID with version nibble 8 (RFC 9562 custom) and the RFC 4122 variant, in lowercase 8-4-4-4-12
// form. Deterministic, so a user keeps one id across logins; scoped by issuer, so two providers'
// subjects never collide.
std::string external_user_id(std::string_view issuer, std::string_view subject);

class OidcVerifier {
 public:
  static constexpr std::size_t max_token_size = 8 * 1024;

  // Throws std::invalid_argument if the issuer or audience is empty or the leeway negative.
  explicit OidcVerifier(OidcOptions options);

  // Replaces the key set; verify() calls on other threads see the old or the new set whole.
  void set_keys(std::shared_ptr<const KeySet> keys);
  std::shared_ptr<const KeySet> keys() const;

  // Called (on the verifying thread, so it must be quick) when a token names a key the set
  // lacks: the key source refreshes early. Set it before tokens arrive; empty to clear.
  void on_unknown_key(std::function<void()> hook);

  struct Verified {
    std::optional<OidcClaims> claims;        // set if and only if the token is valid
    OidcError error = OidcError::malformed;  // meaningful only when `claims` is empty
  };

  // Never throws for a bad token. Before the first set_keys() every token is unknown_key.
  Verified verify(std::string_view token, std::chrono::system_clock::time_point now) const;

  // user_id = external_user_id(issuer, sub), username = display name, role = "user".
  http::Principal principal(const OidcClaims& claims) const;

  // The shape of policy::ExternalVerifier: the principal, or nullopt with `error` set to
  // to_string(reason). It refers to this verifier, which must outlive it.
  std::function<std::optional<http::Principal>(std::string_view,
                                               std::chrono::system_clock::time_point, std::string&)>
  as_external_verifier() const;

  const OidcOptions& options() const { return options_; }

 private:
  OidcOptions options_;
  std::atomic<std::shared_ptr<const KeySet>> keys_;
  std::atomic<std::shared_ptr<const std::function<void()>>> unknown_key_hook_;
};

}  // namespace mesh::auth
