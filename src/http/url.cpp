#include "mesh/http/url.hpp"

#include <stdexcept>

#include <boost/url/parse.hpp>

namespace mesh::http {

Url parse_url(std::string_view text) {
  const auto parsed = boost::urls::parse_uri(text);
  if (!parsed || !parsed->has_authority() || parsed->host().empty() ||
      (parsed->scheme_id() != boost::urls::scheme::http &&
       parsed->scheme_id() != boost::urls::scheme::https)) {
    throw std::invalid_argument("not an http:// or https:// URL: " + std::string(text));
  }
  const auto& uri = *parsed;
  Url url;
  url.tls = uri.scheme_id() == boost::urls::scheme::https;
  url.host = uri.host_address();
  url.port = uri.has_port() ? std::string(uri.port()) : (url.tls ? "443" : "80");
  url.authority = uri.encoded_host_and_port();
  url.target = uri.encoded_target();
  if (url.target.empty()) url.target = "/";
  return url;
}

}  // namespace mesh::http
