// `mesh healthcheck`'s default URL: loopback, the port of --listen, /readyz.
#include <catch2/catch.hpp>

#include "mesh/roles/healthcheck.hpp"

using mesh::roles::default_probe_url;

TEST_CASE("healthcheck: the default URL takes the port of the listen address") {
  CHECK(default_probe_url("0.0.0.0:8080") == "http://127.0.0.1:8080/readyz");
  CHECK(default_probe_url("[::]:9000") == "http://127.0.0.1:9000/readyz");
  CHECK(default_probe_url(":8081") == "http://127.0.0.1:8081/readyz");
  CHECK(default_probe_url("127.0.0.1:65535") == "http://127.0.0.1:65535/readyz");
}

TEST_CASE("healthcheck: an unusable listen value falls back to port 8080") {
  for (const char* listen :
       {"", "0.0.0.0", "host:", "host:0", "host:65536", "host:80x", "host:-1"}) {
    INFO(listen);
    CHECK(default_probe_url(listen) == "http://127.0.0.1:8080/readyz");
  }
}
