#include "mesh/policy/cors.hpp"

#include <algorithm>

namespace mesh::policy {
namespace {

constexpr std::string_view kAllowMethods = "GET, POST, DELETE, OPTIONS, HEAD";
constexpr std::string_view kAllowHeaders =
    "Authorization, Content-Type, Idempotency-Key, X-Request-Id, traceparent, Last-Event-ID, "
    "If-None-Match";
constexpr std::string_view kExposeHeaders =
    "Location, X-Request-Id, Retry-After, ETag, RateLimit-Limit, RateLimit-Remaining, "
    "RateLimit-Reset, Idempotent-Replayed";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Adds `token` to a comma-separated header such as Vary, keeping what the handler set (the
// server keeps only one field per name).
void append_token(http::Response& response, std::string_view name, std::string_view token) {
  for (auto& [key, value] : response.headers) {
    if (!iequals(key, name)) continue;
    if (value.find(token) == std::string::npos) value += ", " + std::string(token);
    return;
  }
  response.headers.emplace_back(std::string(name), std::string(token));
}

}  // namespace

Cors::Cors(std::vector<std::string> origins, std::chrono::seconds max_age)
    : max_age_(std::to_string(max_age.count())) {
  for (auto& origin : origins) {
    if (origin == "*") {
      any_origin_ = true;
    } else if (!origin.empty()) {
      // An origin has no path: "https://a.example/" in the configuration means the origin.
      while (origin.ends_with('/')) origin.pop_back();
      origins_.push_back(std::move(origin));
    }
  }
}

bool Cors::allowed(std::string_view origin) const {
  if (any_origin_) return true;
  // Scheme and host are case-insensitive; browsers send them in lower case anyway.
  return std::any_of(origins_.begin(), origins_.end(),
                     [&](const std::string& allowed) { return iequals(allowed, origin); });
}

void Cors::add_origin_headers(http::Response& response, std::string_view origin) const {
  // "*" only when any origin is allowed: mesh authenticates with bearer tokens, never with
  // cookies, so it never sends Access-Control-Allow-Credentials and "*" is safe. Otherwise the
  // configured spelling is echoed, never the request's bytes.
  if (any_origin_) {
    response.set_header("Access-Control-Allow-Origin", "*");
  } else {
    const auto match =
        std::find_if(origins_.begin(), origins_.end(),
                     [&](const std::string& allowed) { return iequals(allowed, origin); });
    response.set_header("Access-Control-Allow-Origin", *match);
  }
}

http::Middleware Cors::middleware() const {
  return [this](http::Request& request, const http::Next& next) -> Task<http::Response> {
    const auto origin = request.header("origin");
    const bool preflight = request.method == "OPTIONS" && origin.has_value() &&
                           request.header("access-control-request-method").has_value();
    if (preflight) {
      http::Response response;
      if (!allowed(*origin)) {
        response = http::problem(403, "origin not allowed by the CORS policy");
      } else {
        response = http::Response::empty(204);
        add_origin_headers(response, *origin);
        response.set_header("Access-Control-Allow-Methods", std::string(kAllowMethods));
        response.set_header("Access-Control-Allow-Headers", std::string(kAllowHeaders));
        response.set_header("Access-Control-Max-Age", max_age_);
      }
      append_token(response, "Vary", "Origin");
      co_return response;
    }

    // Copied: later steps may change the request's headers.
    const std::optional<std::string> sent_origin(origin);
    auto response = co_await next(request);
    // Caches must not hand one origin's answer to another.
    append_token(response, "Vary", "Origin");
    if (sent_origin && allowed(*sent_origin)) {
      add_origin_headers(response, *sent_origin);
      response.set_header("Access-Control-Expose-Headers", std::string(kExposeHeaders));
    }
    co_return response;
  };
}

}  // namespace mesh::policy
