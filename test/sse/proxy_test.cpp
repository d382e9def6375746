#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "mesh/metrics/metrics.hpp"
#include "mesh/sse/proxy.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

using namespace mesh;
using namespace mesh::sse;
using namespace mesh::sse::test;

namespace {

// A gateway with only the proxy routes, forwarding to `stream_url`.
struct Gateway {
  explicit Gateway(std::string stream_url, ProxyOptions options = {},
                   std::chrono::milliseconds heartbeat = std::chrono::seconds(15)) {
    config.stream_url = std::move(stream_url);
    config.stream_heartbeat = heartbeat;
    auto router = std::make_shared<http::Router>();
    add_proxy_routes(*router, config, *registry, options);
    http::ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.header_limit = 8 * 1024;
    server =
        std::make_unique<http::Server>(io.io().get_executor(), server_options, router, *registry);
    server->start();
    port = server->local_endpoint().port();
  }
  ~Gateway() {
    asio::co_spawn(io.io(), server->stop(std::chrono::seconds(5)), asio::use_future).get();
    testing::wait_until(
        [this] { return metric(*registry, "mesh_stream_proxy_connections") == 0.0; });
  }

  double requests(const std::string& result) {
    return metric(*registry, "mesh_proxy_requests_total", {{"result", result}}).value_or(-1);
  }

  testing::IoThread io{2};
  std::shared_ptr<prometheus::Registry> registry = metrics::make_registry();
  config::Config config;
  std::unique_ptr<http::Server> server;
  unsigned short port = 0;
};

std::string url(unsigned short port) { return "http://127.0.0.1:" + std::to_string(port); }

// An HTTP server on 127.0.0.1 that reads each request head and answers every one with the same
// bytes, then closes the connection or, with `hold`, keeps it open until destroyed: an upstream
// that misbehaves exactly as a test needs.
class ScriptedUpstream {
 public:
  explicit ScriptedUpstream(std::string reply, bool hold = false, unsigned short port = 0)
      : reply_(std::move(reply)), hold_(hold) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (listener_ < 0) throw std::runtime_error("socket failed");
    const int yes = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      const std::string error = std::strerror(errno);
      ::close(listener_);
      throw std::runtime_error("bind/listen failed: " + error);
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedUpstream() {
    stop_ = true;
    thread_.join();
    for (const int fd : held_) ::close(fd);
    ::close(listener_);
  }
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  unsigned short port() const { return port_; }
  std::vector<std::string> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::size_t connections() const { return connections_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd entry{listener_, POLLIN, 0};
      if (::poll(&entry, 1, 20) <= 0) continue;
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::string head;
      char chunk[4096];
      while (!stop_ && head.find("\r\n\r\n") == std::string::npos) {
        pollfd client{fd, POLLIN, 0};
        if (::poll(&client, 1, 20) <= 0) continue;
        const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) break;
        head.append(chunk, static_cast<std::size_t>(n));
      }
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(head);
      }
      if (!reply_.empty()) ::send(fd, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      if (hold_) {
        held_.push_back(fd);
      } else {
        ::close(fd);
      }
    }
  }

  std::string reply_;
  bool hold_;
  int listener_ = -1;
  unsigned short port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> connections_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::vector<int> held_;  // only touched by the serving thread until it is joined
};

const std::string kStreamHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Connection: close\r\n\r\n";

std::string problem_reply(unsigned status, const std::string& reason, const std::string& detail,
                          const std::string& extra_headers = {}) {
  const std::string body = R"({"type":"about:blank","title":")" + reason + R"(","status":)" +
                           std::to_string(status) + R"(,"detail":")" + detail + R"("})";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/problem+json\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

TEST_CASE("UpstreamPool rotates over the addresses that are up") {
  using namespace std::chrono_literals;
  const UpstreamPool::Endpoint a(asio::ip::make_address("10.0.0.1"), 80);
  const UpstreamPool::Endpoint b(asio::ip::make_address("10.0.0.2"), 80);
  const UpstreamPool::Endpoint c(asio::ip::make_address("10.0.0.3"), 80);
  UpstreamPool pool(5s, 30s);
  const auto now = UpstreamPool::Clock::now();
  CHECK(pool.plan(3, now).empty());
  pool.update({a, b, c, a});
  CHECK(pool.endpoints() == std::vector{a, b, c});
  CHECK(pool.plan(3, now) == std::vector{a, b, c});
  CHECK(pool.plan(3, now) == std::vector{b, c, a});
  CHECK(pool.plan(2, now) == std::vector{c, a});
  CHECK(pool.plan(1, now) == std::vector{a});

  SECTION("a failed address is tried last until its cool-down ends, which doubles up to 30 s") {
    pool.failed(b, now);
    CHECK(pool.down(now) == 1);
    CHECK(pool.plan(3, now) == std::vector{c, a, b});  // start at b: b is down
    CHECK(pool.plan(2, now) == std::vector{c, a});
    CHECK(pool.plan(3, now + 5s) == std::vector{a, b, c});  // its 5 s are over
    pool.failed(b, now + 5s);
    CHECK(pool.down(now + 14s) == 1);
    CHECK(pool.down(now + 15s) == 0);  // 10 s the second time
    pool.failed(b, now + 15s);         // 20 s
    pool.failed(b, now + 35s);         // 30 s, not 40
    CHECK(pool.down(now + 64s) == 1);
    CHECK(pool.down(now + 65s) == 0);
    pool.succeeded(b);
    pool.failed(b, now + 70s);  // 5 s again
    CHECK(pool.down(now + 75s) == 0);
  }
  SECTION("when every address is down they are all tried, the least recently failed first") {
    pool.failed(c, now);
    pool.failed(a, now + 1s);
    pool.failed(b, now + 2s);
    CHECK(pool.down(now + 2s) == 3);
    CHECK(pool.plan(3, now + 2s) == std::vector{c, a, b});
    CHECK(pool.plan(1, now + 2s) == std::vector{c});
  }
  SECTION("a new resolution keeps the health of the addresses it keeps") {
    pool.failed(b, now);
    pool.failed(c, now);
    const UpstreamPool::Endpoint d(asio::ip::make_address("10.0.0.4"), 80);
    pool.update({b, d});
    CHECK(pool.down(now) == 1);
    CHECK(pool.plan(2, now) == std::vector{d, b});
  }
}

TEST_CASE("complete_events finds the end of the last whole event") {
  CHECK(complete_events("") == 0);
  CHECK(complete_events("\n") == 0);
  CHECK(complete_events("id: 1\ndata: x") == 0);
  CHECK(complete_events("id: 1\ndata: x\n") == 0);
  CHECK(complete_events("id: 1\ndata: x\n\n") == 15);
  CHECK(complete_events("id: 1\n\nid: 2\ndata: half") == 7);
  CHECK(complete_events(": heartbeat\n\n: heartbeat\n\n") == 26);
  CHECK(complete_events("id: 1\r\n\r\nid: 2\r\n") == 9);
}

TEST_CASE("the gateway relays a stream from the stream role and relays its errors") {
  HubServer upstream;
  Gateway gateway(url(upstream.port()));
  const std::string target = "/v1/stream/markets/BTC-USD";
  SseClient client(gateway.port, target);
  REQUIRE(client.wait_head());
  CHECK(client.status() == 200);
  CHECK(client.head().find("Content-Type: text/event-stream\r\n") != std::string::npos);
  REQUIRE(testing::wait_until([&] { return upstream.hub().clients() == 1; }));
  // The relay starts once the head is written, so the client may see the head first.
  CHECK(testing::wait_until(
      [&] { return metric(*gateway.registry, "mesh_stream_proxy_connections") == 1.0; }));

  constexpr int kEvents = 200;
  for (int id = 1; id <= kEvents; ++id) {
    upstream.hub().publish("BTC-USD", "trade", id, R"({"n":)" + std::to_string(id) + "}");
    if (id % 50 == 0)
      REQUIRE(client.wait([&](const SseClient& c) {
        return c.events_unlocked().size() >= static_cast<std::size_t>(id);
      }));
  }
  const auto events = client.events();
  REQUIRE(events.size() == kEvents);
  for (int i = 0; i < kEvents; ++i) {
    CHECK(events[i].name == "trade");
    CHECK(events[i].id == std::to_string(i + 1));
    CHECK(events[i].data == R"({"n":)" + std::to_string(i + 1) + "}");
  }

  const auto missing = testing::http(gateway.port, {.target = "/v1/stream/markets/NOPE-USD"});
  CHECK(missing.status == 404);
  CHECK(missing.header("content-type") == "application/problem+json");

  // A client leaving closes its upstream connection too.
  client.close();
  CHECK(testing::wait_until([&] { return upstream.hub().clients() == 0; }));
  CHECK(testing::wait_until(
      [&] { return metric(*gateway.registry, "mesh_stream_proxy_connections") == 0.0; }));
  CHECK(gateway.requests("ok") == 2.0);
  CHECK(gateway.requests("retried") == 0.0);
}

TEST_CASE("the gateway answers 502 when the stream role is down") {
  Gateway gateway(url(closed_port()));
  const auto reply = testing::http(gateway.port, {.target = "/v1/stream/markets/BTC-USD"});
  CHECK(reply.status == 502);
  CHECK(reply.header("content-type") == "application/problem+json");
  CHECK(metric(*gateway.registry, "mesh_stream_proxy_failures_total", {{"stage", "connect"}}) ==
        1.0);
  CHECK(gateway.requests("failed") == 1.0);
}

TEST_CASE("the proxy refuses a malformed stream url") {
  http::Router router;
  auto registry = metrics::make_registry();
  for (const std::string bad : {"", "127.0.0.1:80", "http://host", "http://host:0",
                                "http://host:99999", "http://host:80/path", "https://h:1",
                                "http://a:1,", "http://a:1,,http://b:2", "http://a:1,b:2"}) {
    config::Config config;
    config.stream_url = bad;
    CHECK_THROWS_AS(add_proxy_routes(router, config, *registry), std::invalid_argument);
  }
}

TEST_CASE("streams go round robin over the stream replicas") {
  HubServer first;
  HubServer second;
  Gateway gateway(url(first.port()) + "," + url(second.port()));
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<SseClient>(gateway.port, "/v1/stream/markets/BTC-USD"));
    REQUIRE(clients.back()->wait_head());
    CHECK(clients.back()->status() == 200);
  }
  CHECK(testing::wait_until(
      [&] { return first.hub().clients() == 2 && second.hub().clients() == 2; }));
  first.hub().publish("BTC-USD", "trade", 1, R"({"from":"first"})");
  second.hub().publish("BTC-USD", "trade", 1, R"({"from":"second"})");
  for (auto& client : clients)
    CHECK(client->wait([](const SseClient& c) { return c.events_unlocked().size() == 1; }));
  CHECK(gateway.requests("ok") == 4.0);
  CHECK(metric(*gateway.registry, "mesh_proxy_upstream_down") == 0.0);
}

TEST_CASE("a dead replica is skipped after its first failure and the request retried") {
  HubServer alive;
  Gateway gateway(url(closed_port()) + "," + url(alive.port()));
  for (int i = 0; i < 4; ++i) {
    SseClient client(gateway.port, "/v1/stream/markets/BTC-USD");
    REQUIRE(client.wait_head());
    CHECK(client.status() == 200);
  }
  // Only the first request met the dead address; then it was down and tried by nobody.
  CHECK(gateway.requests("retried") == 1.0);
  CHECK(gateway.requests("ok") == 3.0);
  CHECK(metric(*gateway.registry, "mesh_proxy_upstream_down") == 1.0);
}

TEST_CASE("every replica dead: 502, and the next request still tries them") {
  const auto first_port = closed_port();
  const auto second_port = closed_port();
  Gateway gateway(url(first_port) + "," + url(second_port));
  const auto reply = testing::http(gateway.port, {.target = "/v1/stream/markets/BTC-USD"});
  CHECK(reply.status == 502);
  CHECK(reply.header("content-type") == "application/problem+json");
  CHECK(reply.json().at("status").as_int64() == 502);
  CHECK(gateway.requests("failed") == 1.0);
  CHECK(metric(*gateway.registry, "mesh_proxy_upstream_down") == 2.0);

  // Both are in their cool-down, yet one coming back is found at once.
  ScriptedUpstream back(kStreamHead + "id: 7\ndata: {}\n\n", false, first_port);
  const auto again = testing::raw_exchange(
      gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(again.bytes.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(again.bytes.ends_with("id: 7\ndata: {}\n\n"));
  CHECK(back.connections() == 1);
}

TEST_CASE("an upstream that dies mid-stream ends the client's stream after its last whole event") {
  ScriptedUpstream dying(kStreamHead + "event: trade\nid: 1\ndata: {\"n\":1}\n\n" +
                         ": heartbeat\n\nevent: trade\nid: 2\ndata: {\"half");
  Gateway gateway(url(dying.port()));
  const auto reply = testing::raw_exchange(
      gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_FALSE(reply.timed_out);
  CHECK(reply.bytes.rfind("HTTP/1.1 200", 0) == 0);
  const auto body = reply.bytes.substr(reply.bytes.find("\r\n\r\n") + 4);
  CHECK(body == "event: trade\nid: 1\ndata: {\"n\":1}\n\n: heartbeat\n\n");
  // Not retried: the client had its first bytes.
  CHECK(dying.connections() == 1);

  // The gateway keeps serving.
  const auto next = testing::raw_exchange(
      gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(next.bytes.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(dying.connections() == 2);
  CHECK(testing::wait_until(
      [&] { return metric(*gateway.registry, "mesh_stream_proxy_connections") == 0.0; }));
}

TEST_CASE("no retry once the stream started") {
  const std::string reply = kStreamHead + "id: 1\ndata: {}\n\n";
  ScriptedUpstream first(reply);
  ScriptedUpstream second(reply);
  Gateway gateway(url(first.port()) + "," + url(second.port()));
  const auto exchange = testing::raw_exchange(
      gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(exchange.bytes.ends_with("\r\n\r\nid: 1\ndata: {}\n\n"));
  CHECK(first.connections() + second.connections() == 1);
  CHECK(gateway.requests("ok") == 1.0);
}

TEST_CASE("a reset before the head or a 503 is retried on the next replica") {
  ScriptedUpstream resets("");
  ScriptedUpstream busy(problem_reply(503, "Service Unavailable", "full", "Retry-After: 5\r\n"));
  ScriptedUpstream good(kStreamHead + "id: 1\ndata: {}\n\n");
  Gateway gateway(url(resets.port()) + "," + url(busy.port()) + "," + url(good.port()));
  const auto exchange = testing::raw_exchange(
      gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(exchange.bytes.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(resets.connections() == 1);
  CHECK(busy.connections() == 1);
  CHECK(good.connections() == 1);
  CHECK(gateway.requests("retried") == 1.0);
  // The one that reset is down; the busy one answered, so it is not.
  CHECK(metric(*gateway.registry, "mesh_proxy_upstream_down") == 1.0);

  SECTION("when every replica is busy, the last 503 is relayed as it is") {
    ScriptedUpstream busy_too(
        problem_reply(503, "Service Unavailable", "full", "Retry-After: 5\r\n"));
    Gateway busy_gateway(url(busy.port()) + "," + url(busy_too.port()));
    const auto answer = testing::http(busy_gateway.port, {.target = "/v1/stream/markets/BTC-USD"});
    CHECK(answer.status == 503);
    CHECK(answer.header("retry-after") == "5");
    CHECK(answer.header("content-type") == "application/problem+json");
    CHECK(answer.json().at("detail").as_string() == "full");
    CHECK(busy_gateway.requests("failed") == 1.0);
  }
}

TEST_CASE("session streams carry the caller's headers, and refusals are relayed as they are") {
  for (const auto& [status, reason] : std::vector<std::pair<unsigned, std::string>>{
           {401, "Unauthorized"}, {403, "Forbidden"}, {409, "Conflict"}}) {
    const std::string extra = status == 401 ? "WWW-Authenticate: Bearer\r\n" : "";
    ScriptedUpstream refusing(problem_reply(status, reason, "no " + reason, extra));
    Gateway gateway(url(refusing.port()));
    const auto answer = testing::http(
        gateway.port,
        {.target = "/v1/stream/sessions/42",
         .headers = {{"Authorization", "Bearer abc.def.ghi"},
                     {"Last-Event-ID", "17"},
                     {"X-Request-Id", "req-proxy-1"},
                     {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}});
    CHECK(answer.status == status);
    CHECK(answer.header("content-type") == "application/problem+json");
    CHECK(answer.json().at("detail").as_string() == "no " + reason);
    if (status == 401) CHECK(answer.header("www-authenticate") == "Bearer");
    CHECK(gateway.requests("ok") == 1.0);
    CHECK(refusing.connections() == 1);  // a refusal is final

    const auto requests = refusing.requests();
    REQUIRE(requests.size() == 1);
    const auto seen = lower(requests[0]);
    CHECK(requests[0].rfind("GET /v1/stream/sessions/42 HTTP/1.1\r\n", 0) == 0);
    CHECK(seen.find("\r\nauthorization: bearer abc.def.ghi\r\n") != std::string::npos);
    CHECK(seen.find("\r\nlast-event-id: 17\r\n") != std::string::npos);
    CHECK(seen.find("\r\nx-request-id: req-proxy-1\r\n") != std::string::npos);
    // This hop's span: the caller's trace id with a new span id.
    CHECK(seen.find("\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-") != std::string::npos);
    CHECK(seen.find("b7ad6b7169203331") == std::string::npos);
  }
}

TEST_CASE("HEAD is forwarded as HEAD and answered with the head only") {
  ScriptedUpstream upstream(kStreamHead);
  Gateway gateway(url(upstream.port()));
  const auto reply =
      testing::raw_exchange(gateway.port, "HEAD /v1/stream/sessions/7 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(reply.bytes.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(reply.bytes.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  CHECK(reply.bytes.ends_with("\r\n\r\n"));
  REQUIRE(upstream.requests().size() == 1);
  CHECK(upstream.requests()[0].rfind("HEAD /v1/stream/sessions/7 ", 0) == 0);
}

TEST_CASE("hostile requests never reach the stream role") {
  ScriptedUpstream upstream(kStreamHead);
  Gateway gateway(url(upstream.port()));
  const auto long_id =
      testing::http(gateway.port, {.target = "/v1/stream/markets/BTC-USD",
                                   .headers = {{"Last-Event-ID", std::string(300, '9')}}});
  CHECK(long_id.status == 400);
  CHECK(long_id.header("content-type") == "application/problem+json");

  const auto control = testing::raw_exchange(
      gateway.port,
      "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\x01\x7f\r\n\r\n");
  CHECK(control.bytes.rfind("HTTP/1.1 400", 0) == 0);

  const auto huge = testing::raw_exchange(
      gateway.port, "GET /v1/stream/sessions/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                        std::string(20'000, 'a') + "\r\n\r\n");
  CHECK(huge.bytes.rfind("HTTP/1.1 431", 0) == 0);

  const auto post =
      testing::http(gateway.port, {.method = "POST", .target = "/v1/stream/markets/BTC-USD"});
  CHECK(post.status == 405);
  const auto unknown = testing::http(gateway.port, {.target = "/v1/stream/other/1"});
  CHECK(unknown.status == 404);
  CHECK(upstream.connections() == 0);
}

TEST_CASE("host names are resolved; one that does not resolve leaves the others") {
  ScriptedUpstream upstream(kStreamHead + "id: 1\ndata: {}\n\n");
  {
    Gateway gateway("http://localhost:" + std::to_string(upstream.port()));
    const auto reply = testing::raw_exchange(
        gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(reply.bytes.rfind("HTTP/1.1 200", 0) == 0);
  }
  {
    Gateway gateway("http://no-such-host.invalid:80," + url(upstream.port()));
    const auto reply = testing::raw_exchange(
        gateway.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(reply.bytes.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(gateway.requests("ok") == 1.0);
  }
  {
    Gateway gateway("http://no-such-host.invalid:80");
    const auto reply = testing::http(gateway.port, {.target = "/v1/stream/markets/BTC-USD"});
    CHECK(reply.status == 502);
    CHECK(reply.header("content-type") == "application/problem+json");
    CHECK(metric(*gateway.registry, "mesh_stream_proxy_failures_total", {{"stage", "resolve"}}) ==
          1.0);
  }
  CHECK(upstream.connections() == 2);
}

TEST_CASE("upstream deadlines: a silent head is a 502, a silent stream is closed") {
  ScriptedUpstream mute("", true);
  ProxyOptions options;
  options.head_timeout = std::chrono::milliseconds(200);
  Gateway gateway(url(mute.port()), options, std::chrono::milliseconds(1));
  const auto head = testing::http(gateway.port, {.target = "/v1/stream/markets/BTC-USD"});
  CHECK(head.status == 502);
  CHECK(metric(*gateway.registry, "mesh_stream_proxy_failures_total",
               {{"stage", "response head"}}) == 1.0);

  // No heartbeat within twice the heartbeat plus 5 s: the relay gives up on the upstream.
  ScriptedUpstream silent(kStreamHead, true);
  Gateway relaying(url(silent.port()), {}, std::chrono::milliseconds(1));
  const auto stream = testing::raw_exchange(
      relaying.port, "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n",
      std::chrono::seconds(30));
  CHECK_FALSE(stream.timed_out);
  CHECK(stream.bytes.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(stream.bytes.ends_with("\r\n\r\n"));
}
