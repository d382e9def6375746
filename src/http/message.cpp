#include "mesh/http/message.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/parse_query.hpp>

#include "mesh/core/ids.hpp"

namespace mesh::http {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  auto parsed = boost::urls::parse_query(query);
  if (!parsed) return std::nullopt;
  // application/x-www-form-urlencoded: %XX escapes, and '+' stands for a space.
  const boost::urls::encoding_opts form(true);
  for (const auto& param : *parsed) {
    const auto key = param.key.decode(form);
    if (!std::equal(key.begin(), key.end(), name.begin(), name.end())) continue;
    if (!param.has_value) return std::string();
    const auto value = param.value.decode(form);
    return std::string(value.begin(), value.end());
  }
  return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

void Response::set_header(std::string name, std::string value) {
  for (auto& [key, existing] : headers) {
    if (iequals(key, name)) {
      existing = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

Response Response::json(unsigned status, const boost::json::value& body) {
  return Response{status, {}, "application/json", boost::json::serialize(body)};
}

Response Response::text(unsigned status, std::string body, std::string content_type) {
  return Response{status, {}, std::move(content_type), std::move(body)};
}

Response Response::empty(unsigned status) { return Response{status, {}, {}, {}}; }

Response problem(unsigned status, std::string_view detail, std::string_view title,
                 boost::json::object extra) {
  boost::json::object body = std::move(extra);
  body["type"] = "about:blank";
  body["title"] = title.empty() ? reason(status) : title;
  body["status"] = status;
  body["detail"] = detail;
  return Response{status, {}, "application/problem+json", boost::json::serialize(body)};
}

std::string_view reason(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

namespace {

bool lower_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c == '0'; });
}

}  // namespace

std::string next_traceparent(std::optional<std::string_view> incoming) {
  // 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
  if (incoming && incoming->size() == 55 && incoming->substr(0, 3) == "00-" &&
      (*incoming)[35] == '-' && (*incoming)[52] == '-') {
    const auto trace = incoming->substr(3, 32);
    const auto parent = incoming->substr(36, 16);
    const auto flags = incoming->substr(53, 2);
    if (lower_hex(trace) && lower_hex(parent) && lower_hex(flags) && !all_zero(trace) &&
        !all_zero(parent)) {
      return "00-" + std::string(trace) + "-" + core::random_hex(8) + "-" + std::string(flags);
    }
  }
  return "00-" + core::random_hex(16) + "-" + core::random_hex(8) + "-01";
}

std::string_view trace_id(std::string_view traceparent) {
  if (traceparent.size() != 55 || traceparent.substr(0, 3) != "00-") return {};
  return traceparent.substr(3, 32);
}

}  // namespace mesh::http
