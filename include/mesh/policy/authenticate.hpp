#pragma once
// Authentication as a middleware: a request carrying `Authorization: Bearer <token>` gets its
// principal set when the token verifies, and a 401 problem+json answer when it does not. A
// request without the header passes unauthenticated; handlers that need a caller answer
// unauthorized() when request.principal is empty.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/auth/jwt.hpp"
#include "mesh/http/message.hpp"
#include "mesh/http/router.hpp"

namespace mesh::policy {

// A verifier of tokens from another issuer (OIDC): the principal, or nullopt with `error` set
// to a short reason ("bad_signature", "expired", ...).
using ExternalVerifier = std::function<std::optional<http::Principal>(
    std::string_view token, std::chrono::system_clock::time_point now, std::string& error)>;

class Authenticator {
 public:
  // `own` verifies mesh's HS256 tokens; a token it rejects as unsupported_algorithm goes to
  // `external` when one is set.
  explicit Authenticator(const auth::JwtCodec& own, ExternalVerifier external = {});

  // The principal of a bearer token, or nullopt with the reason in `error`.
  std::optional<http::Principal> verify(std::string_view token,
                                        std::chrono::system_clock::time_point now,
                                        std::string& error) const;

  http::Middleware middleware() const;

 private:
  const auth::JwtCodec& own_;
  ExternalVerifier external_;
};

// 401 problem+json with WWW-Authenticate: Bearer.
http::Response unauthorized(std::string_view detail = "missing Authorization: Bearer token");

// A handler that answers unauthorized() unless the request has a principal.
http::Handler require_user(http::Handler handler);

}  // namespace mesh::policy
