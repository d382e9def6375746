// http::parse_url: what the JWKS fetcher and `mesh healthcheck` connect to and ask for.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "mesh/http/url.hpp"

using mesh::http::parse_url;

TEST_CASE("url: scheme, host, default and explicit ports, Host header, target") {
  const auto https = parse_url("https://issuer.test/keys?v=2");
  CHECK(https.tls);
  CHECK(https.host == "issuer.test");
  CHECK(https.port == "443");
  CHECK(https.authority == "issuer.test");
  CHECK(https.target == "/keys?v=2");

  const auto http = parse_url("http://127.0.0.1:8080");
  CHECK_FALSE(http.tls);
  CHECK(http.host == "127.0.0.1");
  CHECK(http.port == "8080");
  CHECK(http.authority == "127.0.0.1:8080");
  CHECK(http.target == "/");

  const auto v6 = parse_url("http://[::1]:9000/readyz");
  CHECK(v6.host == "::1");  // without brackets, as the resolver wants it
  CHECK(v6.authority == "[::1]:9000");
  CHECK(v6.target == "/readyz");
}

TEST_CASE("url: anything but an absolute http(s) URL with a host is refused") {
  for (const char* text : {"", "127.0.0.1:8080", "/readyz", "ftp://host/file", "file:///etc/keys",
                           "http://", "http:///path", "wss://feed.test/"}) {
    INFO(text);
    CHECK_THROWS_AS(parse_url(text), std::invalid_argument);
  }
}
