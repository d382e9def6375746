#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/http/server.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/http_client.hpp"
#include "mesh/web/routes.hpp"

using namespace mesh;
using http::Request;
using http::Response;

namespace {

// Routes `method target` through a router holding only the dashboard's routes.
Response call(const std::string& target, http::Headers headers = {},
              const std::string& method = "GET") {
  http::Router router;
  web::add_routes(router);
  Request request;
  request.method = method;
  request.target = target;
  request.path = target;
  request.headers = std::move(headers);
  auto match = router.match(method, target);
  if (match.handler == nullptr) return http::problem(404, "unmatched");
  request.params = match.params;
  asio::io_context io;
  return testing::run(io, (*match.handler)(request));
}

std::optional<std::string> header(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("the embedded assets are the files in web/, byte for byte") {
  const std::filesystem::path web = MESH_WEB_DIR;
  const std::pair<std::string, std::filesystem::path> expected[] = {
      {"index.html", web / "index.html"},
      {"app.js", web / "app.js"},
      {"style.css", web / "style.css"},
      {"lightweight-charts.js",
       web / "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js"},
  };
  REQUIRE(web::assets().size() == std::size(expected));
  std::set<std::string_view> etags;
  for (const auto& [name, path] : expected) {
    const web::Asset* asset = web::find_asset(name);
    REQUIRE(asset != nullptr);
    CHECK(asset->body == read_file(path));
    // A quoted strong tag: 32 hex digits of SHA-256.
    CHECK(asset->etag.size() == 34);
    CHECK(asset->etag.front() == '"');
    CHECK(asset->etag.back() == '"');
    etags.insert(asset->etag);
  }
  CHECK(etags.size() == std::size(expected));
  CHECK(web::find_asset("missing.js") == nullptr);
  CHECK(web::find_asset("") == nullptr);
}

TEST_CASE("content types follow the file extension") {
  CHECK(web::content_type_for("index.html") == "text/html; charset=utf-8");
  CHECK(web::content_type_for("app.js") == "text/javascript; charset=utf-8");
  CHECK(web::content_type_for("style.css") == "text/css; charset=utf-8");
  CHECK(web::content_type_for("data.bin") == "application/octet-stream");
  CHECK(web::content_type_for("js") == "application/octet-stream");
}

TEST_CASE("If-None-Match uses the weak comparison over a list of tags") {
  const std::string_view tag = "\"abc\"";
  CHECK(web::etag_matches("\"abc\"", tag));
  CHECK(web::etag_matches("W/\"abc\"", tag));
  CHECK(web::etag_matches("\"x\", \"abc\"", tag));
  CHECK(web::etag_matches("\"x\",W/\"abc\" ", tag));
  CHECK(web::etag_matches(" * ", tag));
  CHECK_FALSE(web::etag_matches("\"abcd\"", tag));
  CHECK_FALSE(web::etag_matches("abc", tag));
  CHECK_FALSE(web::etag_matches("", tag));
  CHECK_FALSE(web::etag_matches(" , ,", tag));
}

TEST_CASE("GET / serves the page with its entity tag and a content security policy") {
  const auto response = call("/");
  const web::Asset* page = web::find_asset("index.html");
  REQUIRE(page != nullptr);
  CHECK(response.status == 200);
  CHECK(response.content_type == "text/html; charset=utf-8");
  CHECK(response.body == page->body);
  CHECK(header(response, "ETag") == std::string(page->etag));
  CHECK(header(response, "Cache-Control") == "no-cache");
  CHECK(header(response, "X-Content-Type-Options") == "nosniff");
  const auto policy = header(response, "Content-Security-Policy");
  REQUIRE(policy);
  CHECK(policy->find("default-src 'self'") != std::string::npos);
}

TEST_CASE("GET /assets/{name} serves each file with its content type") {
  const auto script = call("/assets/app.js");
  CHECK(script.status == 200);
  CHECK(script.content_type == "text/javascript; charset=utf-8");
  CHECK(script.body == web::find_asset("app.js")->body);
  CHECK_FALSE(header(script, "Content-Security-Policy"));

  const auto style = call("/assets/style.css");
  CHECK(style.status == 200);
  CHECK(style.content_type == "text/css; charset=utf-8");

  const auto library = call("/assets/lightweight-charts.js");
  CHECK(library.status == 200);
  CHECK(library.body.find("Lightweight Charts") != std::string::npos);
  CHECK(header(library, "ETag") == std::string(web::find_asset("lightweight-charts.js")->etag));
}

TEST_CASE("a matching If-None-Match answers 304 without a body") {
  const std::string etag(web::find_asset("app.js")->etag);
  const auto same = call("/assets/app.js", {{"if-none-match", etag}});
  CHECK(same.status == 304);
  CHECK(same.body.empty());
  CHECK(same.content_type.empty());
  CHECK(header(same, "ETag") == etag);
  CHECK(header(same, "Cache-Control") == "no-cache");

  CHECK(call("/assets/app.js", {{"if-none-match", "W/" + etag}}).status == 304);
  CHECK(call("/", {{"if-none-match", "*"}}).status == 304);

  // Another file's tag is not this file's.
  const std::string other(web::find_asset("style.css")->etag);
  const auto changed = call("/assets/app.js", {{"if-none-match", other}});
  CHECK(changed.status == 200);
  CHECK(changed.body == web::find_asset("app.js")->body);
}

TEST_CASE("an unknown asset is a 404 problem") {
  const auto response = call("/assets/secret.txt");
  CHECK(response.status == 404);
  CHECK(response.content_type == "application/problem+json");
  CHECK(response.body.find("no such asset") != std::string::npos);
  // Names are single path segments: nothing outside the table is reachable.
  CHECK(call("/assets/../index.html").status == 404);
  CHECK(call("/assets").status == 404);
}

TEST_CASE("over HTTP: 200, then 304 on revalidation, and HEAD without a body") {
  testing::IoThread io;
  auto registry = metrics::make_registry();
  auto router = std::make_shared<http::Router>();
  web::add_routes(*router);
  http::ServerOptions options;
  options.listen = "127.0.0.1:0";
  http::Server server(io.io().get_executor(), options, router, *registry);
  server.start();
  const auto port = server.local_endpoint().port();

  const auto first = testing::http(port, {.target = "/assets/lightweight-charts.js"});
  CHECK(first.status == 200);
  CHECK(first.header("content-type") == "text/javascript; charset=utf-8");
  CHECK(first.body == web::find_asset("lightweight-charts.js")->body);
  const auto etag = first.header("etag");
  REQUIRE(etag);

  const auto again = testing::http(
      port, {.target = "/assets/lightweight-charts.js", .headers = {{"If-None-Match", *etag}}});
  CHECK(again.status == 304);
  CHECK(again.body.empty());
  CHECK(again.header("etag") == *etag);

  const auto head = testing::http(port, {.method = "HEAD", .target = "/"});
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.header("content-length") ==
        std::to_string(web::find_asset("index.html")->body.size()));

  const auto missing = testing::http(port, {.target = "/assets/nope.js"});
  CHECK(missing.status == 404);
  CHECK(missing.header("content-type") == "application/problem+json");

  asio::co_spawn(io.io(), server.stop(std::chrono::seconds(5)), asio::use_future).get();
}
