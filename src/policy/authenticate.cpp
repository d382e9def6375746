#include "mesh/policy/authenticate.hpp"

#include <algorithm>
#include <cctype>

namespace mesh::policy {
namespace {

bool starts_with_bearer(std::string_view header) {
  constexpr std::string_view kScheme = "Bearer ";
  return header.size() > kScheme.size() &&
         std::equal(kScheme.begin(), kScheme.end(), header.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

}  // namespace

Authenticator::Authenticator(const auth::JwtCodec& own, ExternalVerifier external)
    : own_(own), external_(std::move(external)) {}

std::optional<http::Principal> Authenticator::verify(std::string_view token,
                                                     std::chrono::system_clock::time_point now,
                                                     std::string& error) const {
  const auto verified = own_.verify(token, now);
  if (verified.claims) {
    return http::Principal{verified.claims->subject, verified.claims->username,
                           verified.claims->role};
  }
  if (verified.error == auth::JwtError::unsupported_algorithm && external_) {
    return external_(token, now, error);
  }
  error = auth::to_string(verified.error);
  return std::nullopt;
}

http::Middleware Authenticator::middleware() const {
  return [this](http::Request& request, const http::Next& next) -> Task<http::Response> {
    const auto header = request.header("authorization");
    if (!header) co_return co_await next(request);
    if (!starts_with_bearer(*header)) {
      co_return unauthorized("the Authorization header must use the Bearer scheme");
    }
    std::string error;
    auto principal = verify(header->substr(std::string_view("Bearer ").size()),
                            std::chrono::system_clock::now(), error);
    if (!principal) {
      auto response = unauthorized("invalid token: " + error);
      response.set_header("WWW-Authenticate", "Bearer realm=\"mesh\", error=\"invalid_token\"");
      co_return response;
    }
    request.principal = std::move(*principal);
    co_return co_await next(request);
  };
}

http::Response unauthorized(std::string_view detail) {
  auto response = http::problem(401, detail);
  response.set_header("WWW-Authenticate", "Bearer realm=\"mesh\"");
  return response;
}

http::Handler require_user(http::Handler handler) {
  return [handler = std::move(handler)](http::Request& request) -> Task<http::Response> {
    if (!request.principal) co_return unauthorized();
    co_return co_await handler(request);
  };
}

}  // namespace mesh::policy
