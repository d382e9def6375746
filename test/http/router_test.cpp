#include <catch2/catch.hpp>

#include "mesh/http/router.hpp"

using mesh::http::Request;
using mesh::http::Response;
using mesh::http::Router;

namespace {
mesh::Task<Response> ok(Request&) { co_return Response::empty(204); }
}  // namespace

TEST_CASE("router matches literal and parameter segments") {
  Router router;
  router.add("GET", "/v1/tasks", ok);
  router.add("POST", "/v1/tasks", ok);
  router.add("GET", "/v1/tasks/{id}", ok);

  auto list = router.match("GET", "/v1/tasks");
  REQUIRE(list.handler != nullptr);
  CHECK(list.pattern == "/v1/tasks");
  CHECK(list.params.empty());

  auto one = router.match("GET", "/v1/tasks/abc");
  REQUIRE(one.handler != nullptr);
  CHECK(one.pattern == "/v1/tasks/{id}");
  REQUIRE(one.params.size() == 1);
  CHECK(one.params[0].first == "id");
  CHECK(one.params[0].second == "abc");

  CHECK(router.match("GET", "/v1/tasks/abc/extra").handler == nullptr);
  CHECK(router.match("GET", "/v1").handler == nullptr);
  CHECK(router.match("GET", "/nothing").allow.empty());
}

TEST_CASE("router reports allowed methods for a known path") {
  Router router;
  router.add("GET", "/v1/tasks", ok);
  router.add("POST", "/v1/tasks", ok);
  auto match = router.match("DELETE", "/v1/tasks");
  CHECK(match.handler == nullptr);
  CHECK(match.allow == "GET, POST");
}

TEST_CASE("router serves HEAD from GET routes") {
  Router router;
  router.add("GET", "/healthz", ok);
  auto match = router.match("HEAD", "/healthz");
  CHECK(match.handler != nullptr);
}

TEST_CASE("router rejects malformed and duplicate routes") {
  Router router;
  CHECK_THROWS_AS(router.add("GET", "v1/tasks", ok), std::invalid_argument);
  CHECK_THROWS_AS(router.add("GET", "/v1/{id", ok), std::invalid_argument);
  router.add("GET", "/v1/{id}", ok);
  CHECK_THROWS_AS(router.add("GET", "/v1/{other}", ok), std::invalid_argument);
}

TEST_CASE("split_path ignores repeated and trailing slashes") {
  auto segments = mesh::http::split_path("//a/b//c/");
  REQUIRE(segments.size() == 3);
  CHECK(segments[0] == "a");
  CHECK(segments[2] == "c");
  CHECK(mesh::http::split_path("/").empty());
}
