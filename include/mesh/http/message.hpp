#pragma once
// HTTP request and response as handlers see them: plain structs, no Beast types, so handlers
// and their tests compile fast and run without a socket.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/json/value.hpp>

namespace mesh::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The caller a verified bearer token names; set by the authentication middleware.
struct Principal {
  std::string user_id;
  std::string username;
  std::string role;
};

struct Request {
  std::string method;  // upper case, as sent: "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string path;    // percent-decoded path, without the query
  std::string query;   // raw query string, without '?'
  Headers headers;     // names lower case
  std::string body;
  std::string request_id;
  // W3C trace context for this hop: "00-<trace id>-<span id>-<flags>", continuing the caller's
  // trace when it sent a valid traceparent. Forwarded in Kafka record headers and upstream.
  std::string traceparent;
  std::string remote_address;
  std::vector<std::pair<std::string, std::string>> params;  // path parameters of the route
  std::optional<Principal> principal;

  // Case-insensitive header lookup (the first one when repeated).
  std::optional<std::string_view> header(std::string_view name) const;
  // A percent-decoded query parameter; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
  // A path parameter of the matched route; empty when absent.
  std::string_view param(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  Headers headers;
  std::string content_type;
  std::string body;
  // A streaming answer (Server-Sent Events, a relayed stream): when set, the server writes the
  // status line and headers only (no Content-Length, Connection: close), then hands the socket
  // over and ends its session, freeing the parser and buffers. The body is ignored. The socket's
  // executor is the connection's strand. Not called when the head could not be written, or for
  // HEAD requests (the head is the whole answer).
  std::function<void(boost::asio::ip::tcp::socket)> take_over{};

  void set_header(std::string name, std::string value);

  static Response json(unsigned status, const boost::json::value& body);
  static Response text(unsigned status, std::string body,
                       std::string content_type = "text/plain; charset=utf-8");
  static Response empty(unsigned status);
};

// An RFC 9457 application/problem+json answer. `type` defaults to about:blank; `title` to the
// status's reason phrase.
Response problem(unsigned status, std::string_view detail, std::string_view title = {},
                 boost::json::object extra = {});

// The traceparent of a request: a valid incoming one (W3C Trace Context, version 00) keeps its
// trace id and flags with a new span id; otherwise a new trace starts (flags 01).
std::string next_traceparent(std::optional<std::string_view> incoming);
// The 32-hex-digit trace id of a traceparent made by next_traceparent; empty if malformed.
std::string_view trace_id(std::string_view traceparent);

// The reason phrase of a status code ("Not Found").
std::string_view reason(unsigned status);

}  // namespace mesh::http
