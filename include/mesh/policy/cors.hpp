#pragma once
// Cross-origin resource sharing for browsers on other origins. Install it before
// authentication: preflights carry no token, and the headers must reach 401 and 429 answers.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/http/message.hpp"
#include "mesh/http/router.hpp"

namespace mesh::policy {

class Cors {
 public:
  // `origins`: exact origins ("https://app.example.com"), or "*" for any.
  Cors(std::vector<std::string> origins, std::chrono::seconds max_age);

  // Some origin is configured; without one there is no middleware at all.
  bool enabled() const { return any_origin_ || !origins_.empty(); }
  bool allowed(std::string_view origin) const;

  // A preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin
  // gets 204 with the Access-Control-Allow-* headers, from another origin 403 problem+json.
  // Other requests from an allowed origin get Access-Control-Allow-Origin and
  // Access-Control-Expose-Headers on whatever the rest of the chain answers.
  http::Middleware middleware() const;

 private:
  void add_origin_headers(http::Response& response, std::string_view origin) const;

  std::vector<std::string> origins_;
  bool any_origin_ = false;
  std::string max_age_;
};

}  // namespace mesh::policy
