#include <catch2/catch.hpp>

#include <atomic>
#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include "mesh/http/server.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/testing/env.hpp"
#include "mesh/testing/http_client.hpp"

using namespace mesh;
using mesh::http::Request;
using mesh::http::Response;

namespace {

struct Fixture {
  explicit Fixture(http::ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    router->add("GET", "/hello/{name}", [](Request& request) -> Task<Response> {
      co_return Response::text(200, "hello " + std::string(request.param("name")));
    });
    router->add("POST", "/echo", [](Request& request) -> Task<Response> {
      co_return Response::text(200, request.body);
    });
    router->add("GET", "/boom", [](Request&) -> Task<Response> {
      throw std::runtime_error("boom");
      co_return Response::empty(200);
    });
    router->add("GET", "/slow", [this](Request&) -> Task<Response> {
      ++slow_started;
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::milliseconds(300));
      co_await timer.async_wait(asio::use_awaitable);
      co_return Response::text(200, "done");
    });
    router->add("GET", "/stream", [this](Request&) -> Task<Response> {
      Response response;
      response.content_type = "text/event-stream";
      response.set_header("Cache-Control", "no-cache");
      response.take_over = [this](asio::ip::tcp::socket socket) {
        ++taken_over;
        live_connections_at_take_over = server->connections();
        error_code ignored;
        asio::write(socket, asio::buffer(std::string_view("data: streamed\n\n")), ignored);
        socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      };
      co_return response;
    });
    router->add("GET", "/trace", [](Request& request) -> Task<Response> {
      co_return Response::text(200, request.traceparent);
    });
    // Two middlewares: the first answers requests carrying X-Block itself, the second tags
    // every answer, so their order and reach (unmatched paths too) can be checked.
    router->use([](Request& request, const http::Next& next) -> Task<Response> {
      if (request.header("x-block")) co_return http::problem(429, "blocked by middleware");
      auto response = co_await next(request);
      response.set_header("X-Order", "first");
      co_return response;
    });
    router->use([](Request& request, const http::Next& next) -> Task<Response> {
      auto response = co_await next(request);
      response.set_header("X-Seen", "yes");
      co_return response;
    });
    server = std::make_unique<http::Server>(io.io().get_executor(), options, router, *registry);
    server->start();
    port = server->local_endpoint().port();
  }
  ~Fixture() {
    // Sessions reference the registry: stop them before the members go away.
    asio::co_spawn(io.io(), server->stop(std::chrono::seconds(5)), asio::use_future).get();
  }

  testing::IoThread io{2};
  std::shared_ptr<prometheus::Registry> registry = metrics::make_registry();
  std::shared_ptr<http::Router> router = std::make_shared<http::Router>();
  std::unique_ptr<http::Server> server;
  unsigned short port = 0;
  std::atomic<int> slow_started{0};
  std::atomic<int> taken_over{0};
  std::atomic<std::size_t> live_connections_at_take_over{99};
};

}  // namespace

TEST_CASE("server routes requests and passes path parameters") {
  Fixture f;
  auto reply = testing::http(f.port, {.target = "/hello/world"});
  CHECK(reply.status == 200);
  CHECK(reply.body == "hello world");
  CHECK(reply.header("x-request-id").has_value());
}

TEST_CASE("server keeps a caller's sane request id and replaces a hostile one") {
  Fixture f;
  auto kept =
      testing::http(f.port, {.target = "/hello/a", .headers = {{"X-Request-Id", "abc-123"}}});
  CHECK(kept.header("x-request-id") == "abc-123");
  auto replaced =
      testing::http(f.port, {.target = "/hello/a", .headers = {{"X-Request-Id", "a\"b<script>"}}});
  CHECK(replaced.header("x-request-id") != "a\"b<script>");
}

TEST_CASE("unknown paths get 404 and wrong methods 405 with Allow, as problem+json") {
  Fixture f;
  auto missing = testing::http(f.port, {.target = "/nope"});
  CHECK(missing.status == 404);
  CHECK(missing.header("content-type") == "application/problem+json");
  CHECK(missing.json().at("status").as_int64() == 404);
  auto wrong = testing::http(f.port, {.method = "DELETE", .target = "/echo"});
  CHECK(wrong.status == 405);
  CHECK(wrong.header("allow") == "POST");
}

TEST_CASE("a throwing handler gives 500 and the server keeps serving") {
  Fixture f;
  CHECK(testing::http(f.port, {.target = "/boom"}).status == 500);
  CHECK(testing::http(f.port, {.target = "/hello/x"}).status == 200);
}

TEST_CASE("bodies over the limit get 413") {
  http::ServerOptions options;
  options.body_limit = 1024;
  Fixture f(options);
  auto small =
      testing::http(f.port, {.method = "POST", .target = "/echo", .body = std::string(1024, 'a')});
  CHECK(small.status == 200);
  auto big =
      testing::http(f.port, {.method = "POST", .target = "/echo", .body = std::string(1025, 'a')});
  CHECK(big.status == 413);
  CHECK(big.header("content-type") == "application/problem+json");
}

TEST_CASE("oversized headers get 431 and garbage gets 400") {
  http::ServerOptions options;
  options.header_limit = 2048;
  Fixture f(options);
  auto big =
      testing::http(f.port, {.target = "/hello/x", .headers = {{"X-Big", std::string(4096, 'h')}}});
  CHECK(big.status == 431);
  auto garbage = testing::raw_exchange(f.port, "\x16\x03\x01 not http at all\r\n\r\n");
  CHECK(garbage.bytes.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(testing::http(f.port, {.target = "/hello/x"}).status == 200);
}

TEST_CASE("a client that sends too slowly is disconnected at the read deadline") {
  http::ServerOptions options;
  options.read_timeout = std::chrono::milliseconds(200);
  Fixture f(options);
  // Half a request line that never completes: the server must close rather than wait forever.
  auto reply = testing::raw_exchange(f.port, "GET /hello/x HTT", std::chrono::seconds(5));
  CHECK_FALSE(reply.timed_out);
  CHECK(reply.bytes.empty());
}

TEST_CASE("keep-alive serves several requests on one connection") {
  Fixture f;
  const std::string two =
      "GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/b HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n";
  auto reply = testing::raw_exchange(f.port, two);
  CHECK(reply.bytes.find("hello a") != std::string::npos);
  CHECK(reply.bytes.find("hello b") != std::string::npos);
}

TEST_CASE("metrics count requests by route and status") {
  Fixture f;
  testing::http(f.port, {.target = "/hello/x"});
  testing::http(f.port, {.target = "/nope"});
  const auto text = metrics::render(*f.registry);
  CHECK(text.find(
            "mesh_http_requests_total{method=\"GET\",route=\"/hello/{name}\",status=\"200\"} 1") !=
        std::string::npos);
  CHECK(text.find("route=\"unmatched\",status=\"404\"} 1") != std::string::npos);
  CHECK(text.find("process_resident_memory_bytes") != std::string::npos);
}

TEST_CASE("stop lets an in-flight request finish and then refuses connections") {
  Fixture f;
  auto pending =
      std::async(std::launch::async, [&] { return testing::http(f.port, {.target = "/slow"}); });
  REQUIRE(testing::wait_until([&] { return f.slow_started.load() == 1; }));
  auto stopped =
      asio::co_spawn(f.io.io(), f.server->stop(std::chrono::seconds(5)), asio::use_future);
  CHECK(pending.get().body == "done");
  stopped.get();
  CHECK(f.server->connections() == 0);
  CHECK_THROWS(testing::http(f.port, {.target = "/hello/x"}));
}

TEST_CASE("a streaming handler gets the socket after the head and the session ends") {
  Fixture f;
  auto reply = testing::raw_exchange(f.port, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_FALSE(reply.timed_out);
  const auto head_end = reply.bytes.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  const auto head = reply.bytes.substr(0, head_end + 4);
  CHECK(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(head.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  CHECK(head.find("Cache-Control: no-cache\r\n") != std::string::npos);
  CHECK(head.find("Connection: close\r\n") != std::string::npos);
  CHECK(head.find("X-Request-Id: ") != std::string::npos);
  CHECK(head.find("Content-Length") == std::string::npos);
  CHECK(reply.bytes.substr(head_end + 4) == "data: streamed\n\n");
  CHECK(f.taken_over == 1);
  // The session let go of the connection before handing it over.
  CHECK(f.live_connections_at_take_over == 0);
  CHECK(f.server->connections() == 0);
  const auto text = metrics::render(*f.registry);
  CHECK(text.find("route=\"/stream\",status=\"200\"} 1") != std::string::npos);
}

TEST_CASE("HEAD on a streaming route gets the head only; the handler is not called") {
  Fixture f;
  auto reply = testing::http(f.port, {.method = "HEAD", .target = "/stream"});
  CHECK(reply.status == 200);
  CHECK(reply.header("content-type") == "text/event-stream");
  CHECK(f.taken_over == 0);
}

TEST_CASE("middlewares run in order around routing, for unmatched paths too, and can answer") {
  Fixture f;
  auto routed = testing::http(f.port, {.target = "/hello/mesh"});
  CHECK(routed.status == 200);
  CHECK(routed.header("x-order") == "first");
  CHECK(routed.header("x-seen") == "yes");
  auto unmatched = testing::http(f.port, {.target = "/nowhere"});
  CHECK(unmatched.status == 404);
  CHECK(unmatched.header("x-seen") == "yes");
  auto blocked = testing::http(f.port, {.target = "/hello/mesh", .headers = {{"X-Block", "1"}}});
  CHECK(blocked.status == 429);
  CHECK(blocked.header("content-type") == "application/problem+json");
  CHECK_FALSE(blocked.header("x-seen"));
}

TEST_CASE("a request continues the caller's W3C trace or starts a new one") {
  Fixture f;
  const std::string incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  auto continued =
      testing::http(f.port, {.target = "/trace", .headers = {{"traceparent", incoming}}});
  REQUIRE(continued.status == 200);
  CHECK(continued.body.size() == 55);
  CHECK(continued.body.substr(0, 36) == incoming.substr(0, 36));
  CHECK(continued.body.substr(36, 16) != "b7ad6b7169203331");
  CHECK(continued.body.substr(52) == "-01");
  auto fresh = testing::http(f.port, {.target = "/trace", .headers = {{"traceparent", "garbage"}}});
  CHECK(fresh.body.size() == 55);
  CHECK(fresh.body.substr(0, 36) != incoming.substr(0, 36));
  CHECK(http::trace_id(fresh.body).size() == 32);
}
