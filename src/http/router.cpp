#include "mesh/http/router.hpp"

#include <stdexcept>

namespace mesh::http {
namespace {

bool is_parameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  std::size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
      continue;
    }
    const auto end = path.find('/', start);
    const auto stop = end == std::string_view::npos ? path.size() : end;
    segments.push_back(path.substr(start, stop - start));
    start = stop;
  }
  return segments;
}

void Router::use(Middleware middleware) { middlewares_.push_back(std::move(middleware)); }

void Router::add(std::string method, std::string pattern, Handler handler) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern must start with '/': " + pattern);
  }
  Route route{std::move(method), std::move(pattern), {}, std::move(handler)};
  for (auto segment : split_path(route.pattern)) {
    if (segment.find_first_of("{}") != std::string_view::npos && !is_parameter(segment)) {
      throw std::invalid_argument("malformed route segment '" + std::string(segment) + "'");
    }
    route.segments.emplace_back(segment);
  }
  const auto same_shape = [](const Route& a, const Route& b) {
    if (a.segments.size() != b.segments.size()) return false;
    for (std::size_t i = 0; i < a.segments.size(); ++i) {
      const bool a_param = is_parameter(a.segments[i]);
      if (a_param != is_parameter(b.segments[i])) return false;
      if (!a_param && a.segments[i] != b.segments[i]) return false;
    }
    return true;
  };
  for (const auto& existing : routes_) {
    if (existing.method == route.method && same_shape(existing, route)) {
      throw std::invalid_argument("duplicate route " + route.method + " " + route.pattern);
    }
  }
  routes_.push_back(std::move(route));
}

bool Router::matches(const Route& route, const std::vector<std::string_view>& segments,
                     std::vector<std::pair<std::string, std::string>>* params) {
  if (route.segments.size() != segments.size()) return false;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& expected = route.segments[i];
    if (is_parameter(expected)) continue;
    if (expected != segments[i]) return false;
  }
  if (params != nullptr) {
    params->clear();
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const auto& expected = route.segments[i];
      if (is_parameter(expected)) {
        params->emplace_back(expected.substr(1, expected.size() - 2), std::string(segments[i]));
      }
    }
  }
  return true;
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match result;
  const auto segments = split_path(path);
  const Route* get_fallback = nullptr;
  for (const auto& route : routes_) {
    if (!matches(route, segments, nullptr)) continue;
    if (route.method == method) {
      matches(route, segments, &result.params);
      result.handler = &route.handler;
      result.pattern = route.pattern;
      result.allow.clear();
      return result;
    }
    if (method == "HEAD" && route.method == "GET") get_fallback = &route;
    if (result.allow.find(route.method) == std::string::npos) {
      if (!result.allow.empty()) result.allow += ", ";
      result.allow += route.method;
    }
  }
  if (get_fallback != nullptr) {
    matches(*get_fallback, segments, &result.params);
    result.handler = &get_fallback->handler;
    result.pattern = get_fallback->pattern;
    result.allow.clear();
  }
  return result;
}

std::vector<std::pair<std::string, std::string>> Router::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& route : routes_) out.emplace_back(route.method, route.pattern);
  return out;
}

}  // namespace mesh::http
