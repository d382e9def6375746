#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include "mesh/metrics/metrics.hpp"
#include "mesh/sse/hub.hpp"
#include "mesh/testing/env.hpp"
#include "support.hpp"

using namespace mesh;
using namespace mesh::sse;
using namespace mesh::sse::test;

namespace {

const std::string kTarget = "/v1/stream/markets/BTC-USD";

std::string payload(std::int64_t id, std::size_t padding = 0) {
  return R"({"product":"BTC-USD","sequence":)" + std::to_string(id) + R"(,"pad":")" +
         std::string(padding, 'x') + "\"}";
}

bool has_events(const SseClient& client, std::size_t count) {
  return client.events_unlocked().size() >= count;
}

}  // namespace

TEST_CASE("format_event writes one data line per line of data") {
  CHECK(format_event("trade", 42, R"({"a":1})") == "event: trade\nid: 42\ndata: {\"a\":1}\n\n");
  CHECK(format_event("x", 1, "one\ntwo\r\nthree\rfour") ==
        "event: x\nid: 1\ndata: one\ndata: two\ndata: three\ndata: four\n\n");
  CHECK(format_event("x", 7, "") == "event: x\nid: 7\ndata: \n\n");
}

TEST_CASE("clients receive every published event once, framed, in order") {
  HubServer server;
  SseClient first(server.port(), kTarget);
  SseClient second(server.port(), kTarget);
  SseClient other(server.port(), "/v1/stream/markets/ETH-USD");
  REQUIRE(first.wait_head());
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 3; }));

  const auto head = first.head();
  CHECK(first.status() == 200);
  CHECK(head.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  CHECK(head.find("Cache-Control: no-cache\r\n") != std::string::npos);
  CHECK(head.find("X-Accel-Buffering: no\r\n") != std::string::npos);
  CHECK(head.find("Content-Length") == std::string::npos);
  CHECK(metric(server.registry(), "mesh_stream_connections") == 3.0);

  constexpr int kEvents = 500;
  for (int id = 1; id <= kEvents; ++id) {
    server.hub().publish("BTC-USD", "trade", id, payload(id));
    // Paced below the queue bound, so nothing may be dropped.
    if (id % 50 == 0) {
      REQUIRE(first.wait([&](const SseClient& c) { return has_events(c, id); }));
      REQUIRE(second.wait([&](const SseClient& c) { return has_events(c, id); }));
    }
  }
  for (auto* client : {&first, &second}) {
    const auto events = client->events();
    REQUIRE(events.size() == kEvents);
    for (int i = 0; i < kEvents; ++i) {
      CHECK(events[i].name == "trade");
      CHECK(events[i].id == std::to_string(i + 1));
      CHECK(events[i].data == payload(i + 1));
    }
  }
  CHECK(other.event_count() == 0);
  CHECK(server.hub().dropped() == 0);
  CHECK(server.hub().delivered() == 2 * kEvents);
  CHECK(metric(server.registry(), "mesh_stream_delivered_events_total") == 2.0 * kEvents);
}

TEST_CASE("idle clients get comment heartbeats") {
  HubOptions options;
  options.heartbeat = std::chrono::milliseconds(50);
  HubServer server(options);
  SseClient client(server.port(), kTarget);
  REQUIRE(client.wait_head());
  CHECK(client.wait([](const SseClient& c) { return c.heartbeats_unlocked() >= 3; }));
  CHECK(client.event_count() == 0);
}

TEST_CASE("a slow client loses its oldest events while a fast one gets everything") {
  HubOptions options;
  options.client_queue = 16;
  options.write_timeout = std::chrono::minutes(10);
  HubServer server(options);
  SseClient fast(server.port(), kTarget);
  SseClient slow(server.port(), kTarget, 4096, false);
  REQUIRE(fast.wait_head());
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 2; }));

  // Publish in batches the fast client takes in before the next, until the slow client's
  // socket buffers are full and its queue overflows.
  std::int64_t published = 0;
  while (server.hub().dropped() < 100 && published < 200'000) {
    for (int i = 0; i < 8; ++i) {
      ++published;
      server.hub().publish("BTC-USD", "trade", published, payload(published, 1000));
    }
    REQUIRE(fast.wait([&](const SseClient& c) { return has_events(c, published); }));
  }
  REQUIRE(server.hub().dropped() >= 100);
  CHECK(server.hub().max_queue_length() <= options.client_queue);
  CHECK(metric(server.registry(), "mesh_stream_dropped_events_total") ==
        static_cast<double>(server.hub().dropped()));

  const auto fast_events = fast.events();
  REQUIRE(fast_events.size() == static_cast<std::size_t>(published));
  for (std::int64_t i = 0; i < published; ++i) CHECK(fast_events[i].id == std::to_string(i + 1));

  // Once the slow client reads, it gets what was not dropped: the newest events, in order.
  const auto dropped = server.hub().dropped();
  slow.start_reading();
  REQUIRE(slow.wait([&](const SseClient& c) {
    return !c.events_unlocked().empty() &&
           c.events_unlocked().back().id == std::to_string(published);
  }));
  const auto slow_events = slow.events();
  CHECK(slow_events.size() + dropped == static_cast<std::size_t>(published));
  for (std::size_t i = 1; i < slow_events.size(); ++i)
    CHECK(std::stoll(slow_events[i].id) > std::stoll(slow_events[i - 1].id));
  CHECK(server.hub().clients() == 2);
}

TEST_CASE("a client whose writes stay pending past the deadline is closed") {
  HubOptions options;
  options.client_queue = 8;
  options.write_timeout = std::chrono::milliseconds(200);
  HubServer server(options);
  SseClient stuck(server.port(), kTarget, 4096, false);
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 1; }));
  std::int64_t id = 0;
  const bool closed = testing::wait_until([&] {
    for (int i = 0; i < 16; ++i) {
      ++id;
      server.hub().publish("BTC-USD", "trade", id, payload(id, 4000));
    }
    return server.hub().clients() == 0;
  });
  CHECK(closed);
  CHECK(metric(server.registry(), "mesh_stream_write_timeouts_total") >= 1.0);
  CHECK(metric(server.registry(), "mesh_stream_connections") == 0.0);
}

TEST_CASE("clients disconnecting at random are cleaned up") {
  HubServer server;
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < 40; ++i)
    clients.push_back(std::make_unique<SseClient>(server.port(), kTarget));
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 40; }));
  std::mt19937 random(12345);
  std::shuffle(clients.begin(), clients.end(), random);
  std::int64_t id = 0;
  while (!clients.empty()) {
    ++id;
    server.hub().publish("BTC-USD", "trade", id, payload(id));
    clients.pop_back();  // closes the connection
  }
  CHECK(testing::wait_until([&] { return server.hub().clients() == 0; }));
  CHECK(metric(server.registry(), "mesh_stream_connections") == 0.0);
  // A publish to a product nobody follows is a no-op.
  server.hub().publish("BTC-USD", "trade", id + 1, payload(id + 1));
}

TEST_CASE("stop closes every client and refuses new ones") {
  HubServer server;
  SseClient a(server.port(), kTarget);
  SseClient b(server.port(), "/v1/stream/markets/ETH-USD");
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 2; }));
  server.hub().stop();
  CHECK(a.wait([](const SseClient& c) { return c.closed_unlocked(); }));
  CHECK(b.wait([](const SseClient& c) { return c.closed_unlocked(); }));
  CHECK(server.hub().clients() == 0);
  CHECK(metric(server.registry(), "mesh_stream_connections") == 0.0);
  SseClient late(server.port(), kTarget);
  REQUIRE(late.wait_head());
  CHECK(late.status() == 503);
  CHECK(server.hub().clients() == 0);
}

TEST_CASE("the client cap answers 503 and frees slots as clients leave") {
  HubOptions options;
  options.max_clients = 2;
  HubServer server(options);
  auto a = std::make_unique<SseClient>(server.port(), kTarget);
  SseClient b(server.port(), kTarget);
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 2; }));
  const auto refused = testing::http(server.port(), {.target = kTarget});
  CHECK(refused.status == 503);
  CHECK(refused.header("content-type") == "application/problem+json");
  CHECK(refused.header("retry-after") == "5");
  CHECK(metric(server.registry(), "mesh_stream_rejected_connections_total") == 1.0);
  a.reset();
  REQUIRE(testing::wait_until([&] { return server.hub().clients() == 1; }));
  SseClient c(server.port(), kTarget);
  REQUIRE(c.wait_head());
  CHECK(c.status() == 200);
}

TEST_CASE("a HEAD request gets the stream head and no stream") {
  HubServer server;
  const auto reply = testing::http(server.port(), {.method = "HEAD", .target = kTarget});
  CHECK(reply.status == 200);
  CHECK(reply.header("content-type") == "text/event-stream");
  CHECK(server.hub().clients() == 0);
}

TEST_CASE("a subscription of several channels: first frame, close_channel and the end callback") {
  testing::IoThread io(2);
  auto registry = metrics::make_registry();
  Hub hub(io.io().get_executor(), {}, *registry);
  hub.start();
  asio::ip::tcp::acceptor acceptor(io.io(), {asio::ip::make_address("127.0.0.1"), 0});
  std::atomic<int> ends{0};
  auto subscription = [&] {
    Subscription s;
    s.channels = {"a", "b", "a"};
    s.first_frame = format_event("hello", 0, "first");
    s.on_end = [&ends] { ++ends; };
    return s;
  };

  auto response = hub.subscribe(subscription());
  REQUIRE(response.status == 200);
  SseClient client(acceptor.local_endpoint().port(), "/");
  asio::ip::tcp::socket socket(asio::make_strand(io.io()));
  acceptor.accept(socket);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
  asio::write(socket, asio::buffer(head));
  response.take_over(std::move(socket));
  response.take_over = nullptr;  // it holds the hub's state
  REQUIRE(client.wait([](const SseClient& c) { return has_events(c, 1); }));
  REQUIRE(testing::wait_until([&] { return hub.clients() == 1; }));

  hub.publish("c", "other", 1, "not for this client");
  hub.publish("a", "x", 2, "on a");
  hub.publish("b", "y", 3, "on b");
  REQUIRE(client.wait([](const SseClient& c) { return has_events(c, 3); }));
  hub.close_channel("b", format_event("end", 0, "bye"));
  hub.publish("a", "late", 4, "after the end");
  REQUIRE(client.wait([](const SseClient& c) { return c.closed_unlocked(); }));
  const auto events = client.events();
  std::vector<std::string> names;
  for (const auto& event : events) names.push_back(event.name);
  CHECK(names == std::vector<std::string>{"hello", "x", "y", "end"});
  CHECK(events.front().data == "first");
  REQUIRE(testing::wait_until([&] { return ends == 1 && hub.clients() == 0; }));
  CHECK(metric(*registry, "mesh_stream_connections") == 0.0);

  // An answer dropped before its connection was attached ends too, and frees its slot.
  { auto dropped = hub.subscribe(subscription()); }
  CHECK(ends == 2);
  hub.stop();
  CHECK(hub.subscribe(subscription()).status == 503);
  CHECK(ends == 3);
  REQUIRE(testing::wait_until([&] { return hub.quiescent(); }));
}
