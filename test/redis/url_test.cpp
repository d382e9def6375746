#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include "mesh/redis/client.hpp"

using mesh::redis::parse_url;

TEST_CASE("parse_url accepts redis://[[user]:password@]host[:port][/db]", "[redis][url]") {
  struct Case {
    const char* url;
    const char* host;
    int port;
    int db;
    const char* username;
    const char* password;
  };
  const Case cases[] = {
      {"redis://127.0.0.1:6379", "127.0.0.1", 6379, 0, "", ""},
      {"redis://localhost", "localhost", 6379, 0, "", ""},
      {"redis://redis.example:7000/2", "redis.example", 7000, 2, "", ""},
      {"redis://h:6379/", "h", 6379, 0, "", ""},
      {"redis://h:1/0", "h", 1, 0, "", ""},
      {"redis://h:65535/15", "h", 65535, 15, "", ""},
      {"redis://:secret@h:6380", "h", 6380, 0, "", "secret"},
      {"redis://:p%40ss%3Aw%2Fd@h", "h", 6379, 0, "", "p@ss:w/d"},
      {"redis://alice:pw@h:6380/3", "h", 6380, 3, "alice", "pw"},
      {"redis://[::1]:6390/1", "::1", 6390, 1, "", ""},
      {"redis://[::1]", "::1", 6379, 0, "", ""},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    const auto options = parse_url(c.url);
    CHECK(options.host == c.host);
    CHECK(options.port == c.port);
    CHECK(options.db == c.db);
    CHECK(options.username == c.username);
    CHECK(options.password == c.password);
  }
}

TEST_CASE("parse_url rejects malformed URLs with a clear message", "[redis][url]") {
  struct Case {
    const char* url;
    const char* message;
  };
  const Case cases[] = {
      {"http://h:6379", "scheme"},
      {"rediss://h:6379", "TLS"},
      {"h:6379", "scheme"},
      {"redis://", "host is empty"},
      {"redis://:6379", "host is empty"},
      {"redis://h:", "port is empty"},
      {"redis://h:0", "port must be"},
      {"redis://h:65536", "port must be"},
      {"redis://h:abc", "port must be"},
      {"redis://h:-1", "port must be"},
      {"redis://h:63 79", "port must be"},
      {"redis://h:6379/-1", "database must be"},
      {"redis://h:6379/abc", "database must be"},
      {"redis://h:6379/1/2", "database must be"},
      {"redis://h:6379/99999999999", "database must be"},
      {"redis://h:6379/1?timeout=1", "query"},
      {"redis://secret@h", "credentials"},
      {"redis://:@h", "password is empty"},
      {"redis://:bad%4@h", "percent-encoding"},
      {"redis://[::1", "IPv6"},
      {"redis://[::1]x", "IPv6"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    CHECK_THROWS_AS(parse_url(c.url), std::invalid_argument);
    CHECK_THROWS_WITH(parse_url(c.url), Catch::Contains(c.message));
  }
}

TEST_CASE("parse_url never echoes the password", "[redis][url]") {
  try {
    parse_url("redis://:hunter2@h:notaport");
    FAIL("expected std::invalid_argument");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
  }
}
