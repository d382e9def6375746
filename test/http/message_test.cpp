#include <catch2/catch.hpp>

#include "mesh/http/message.hpp"

using mesh::http::Request;

TEST_CASE("query parameters are percent-decoded, '+' is a space, absent is nullopt") {
  Request request;
  request.query = "from=2026-11-30T14%3A00%3A00%2B01%3A00&to=a+b&empty=&flag&n%61me=v%20w";
  CHECK(request.query_param("from") == "2026-11-30T14:00:00+01:00");
  CHECK(request.query_param("to") == "a b");
  CHECK(request.query_param("empty") == "");
  CHECK(request.query_param("flag") == "");
  CHECK(request.query_param("name") == "v w");
  CHECK_FALSE(request.query_param("missing"));
  request.query = "limit=5&limit=6";
  CHECK(request.query_param("limit") == "5");  // the first one
  request.query = "bad=%zz";
  CHECK_FALSE(request.query_param("bad"));  // not a valid query string at all
}
