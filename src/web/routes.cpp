#include "mesh/web/routes.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <utility>

namespace mesh::web {
namespace {

// The names are not versioned, so a browser must ask before reusing its copy; the entity tag
// turns that question into an empty 304 while the binary is unchanged.
constexpr std::string_view kCacheControl = "no-cache";

// The page runs only its own scripts and talks only to its own origin. Inline styles are
// allowed: the charting library adds a <style> element for its attribution logo.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

std::string_view without_weak_prefix(std::string_view tag) {
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  return tag;
}

}  // namespace

const Asset* find_asset(std::string_view name) {
  for (const Asset& asset : assets()) {
    if (asset.name == name) return &asset;
  }
  return nullptr;
}

std::string_view content_type_for(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kTypes{{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
  }};
  for (const auto& [extension, type] : kTypes) {
    if (name.ends_with(extension)) return type;
  }
  return "application/octet-stream";
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  if (trim(if_none_match) == "*") return true;
  const std::string_view wanted = without_weak_prefix(etag);
  while (!if_none_match.empty()) {
    const auto comma = if_none_match.find(',');
    const std::string_view tag = trim(if_none_match.substr(0, comma));
    if (!tag.empty() && without_weak_prefix(tag) == wanted) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

http::Response serve(const Asset& asset, const http::Request& request) {
  http::Response response;
  const auto if_none_match = request.header("if-none-match");
  if (if_none_match && etag_matches(*if_none_match, asset.etag)) {
    response.status = 304;
  } else {
    response.status = 200;
    response.content_type = std::string(content_type_for(asset.name));
    response.body = std::string(asset.body);
  }
  response.set_header("ETag", std::string(asset.etag));
  response.set_header("Cache-Control", std::string(kCacheControl));
  response.set_header("X-Content-Type-Options", "nosniff");
  if (asset.name.ends_with(".html")) {
    response.set_header("Content-Security-Policy", std::string(kContentSecurityPolicy));
  }
  return response;
}

void add_routes(http::Router& router) {
  router.add("GET", "/", [](http::Request& request) -> Task<http::Response> {
    const Asset* page = find_asset("index.html");
    if (page == nullptr) co_return http::problem(404, "the dashboard page is not in this build");
    co_return serve(*page, request);
  });
  router.add("GET", "/assets/{name}", [](http::Request& request) -> Task<http::Response> {
    const Asset* asset = find_asset(request.param("name"));
    if (asset == nullptr) co_return http::problem(404, "no such asset");
    co_return serve(*asset, request);
  });
}

}  // namespace mesh::web
