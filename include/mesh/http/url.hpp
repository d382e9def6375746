#pragma once
// An absolute http:// or https:// URL, split into what a client needs to connect and to send
// its request (the JWKS fetcher, `mesh healthcheck`).
#include <string>
#include <string_view>

namespace mesh::http {

struct Url {
  bool tls = false;       // https
  std::string host;       // without brackets for IPv6
  std::string port;       // "443" / "80" by default
  std::string authority;  // the Host header
  std::string target;     // path and query; "/" at least
};

// Throws std::invalid_argument when `text` is not an http:// or https:// URL with a host.
Url parse_url(std::string_view text);

}  // namespace mesh::http
