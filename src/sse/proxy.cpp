#include "mesh/sse/proxy.hpp"

#include <array>
#include <charconv>
#include <memory>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mesh/core/log.hpp"

namespace mesh::sse {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr std::chrono::milliseconds kConnectTimeout{2000};
constexpr std::chrono::milliseconds kHeadTimeout{5000};
constexpr std::chrono::milliseconds kClientWriteTimeout{30'000};
constexpr std::size_t kDownBuffer = 16 * 1024;
constexpr std::size_t kUpBuffer = 1024;
constexpr std::size_t kErrorBodyLimit = 64 * 1024;

struct Upstream {
  std::string host;
  std::string port;
};

Upstream parse_stream_url(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  std::string_view rest(url);
  if (!rest.starts_with(scheme))
    throw std::invalid_argument("stream url '" + url + "' must be http://host:port");
  rest.remove_prefix(scheme.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || rest.find('/') != std::string_view::npos)
    throw std::invalid_argument("stream url '" + url + "' must be http://host:port");
  const auto port = rest.substr(colon + 1);
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc() || end != port.data() + port.size() || number == 0 || number > 65535)
    throw std::invalid_argument("stream url '" + url + "' has a bad port");
  std::string host(rest.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {host, std::string(port)};
}

struct ProxyMetrics {
  explicit ProxyMetrics(prometheus::Registry& registry)
      : failures(prometheus::BuildCounter()
                     .Name("mesh_stream_proxy_failures_total")
                     .Help("Stream requests the gateway could not forward (502), by stage.")
                     .Register(registry)),
        relays(prometheus::BuildGauge()
                   .Name("mesh_stream_proxy_connections")
                   .Help("Streams the gateway is relaying from the stream role.")
                   .Register(registry)
                   .Add({})) {}
  prometheus::Family<prometheus::Counter>& failures;
  prometheus::Gauge& relays;
};

struct Proxy {
  Upstream upstream;
  std::chrono::milliseconds idle_timeout;
  ProxyMetrics metrics;
  log::Logger logger = log::get("sse");
};

// Both sides of one relayed stream, on the client connection's strand.
struct Relay {
  Relay(tcp::socket client, beast::tcp_stream upstream, std::string pending,
        std::shared_ptr<Proxy> proxy)
      : client(std::move(client)),
        upstream(std::move(upstream)),
        pending(std::move(pending)),
        proxy(std::move(proxy)) {
    this->proxy->metrics.relays.Increment();
  }
  ~Relay() { proxy->metrics.relays.Decrement(); }

  void close() {
    error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.socket().close(ignored);
    upstream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    upstream.socket().close(ignored);
  }

  beast::tcp_stream client;
  beast::tcp_stream upstream;
  std::string pending;  // stream bytes read with the response head
  std::shared_ptr<Proxy> proxy;
};

// Upstream to client. The upstream's deadlines use its stream timer; the client's write too.
Task<void> relay_down(std::shared_ptr<Relay> relay) {
  error_code ec;
  if (!relay->pending.empty()) {
    relay->client.expires_after(kClientWriteTimeout);
    co_await asio::async_write(relay->client, asio::buffer(relay->pending),
                               asio::redirect_error(asio::use_awaitable, ec));
    relay->pending = {};
  }
  std::array<char, kDownBuffer> buffer;
  while (!ec) {
    relay->upstream.expires_after(relay->proxy->idle_timeout);
    const std::size_t n = co_await relay->upstream.async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    relay->client.expires_after(kClientWriteTimeout);
    co_await asio::async_write(relay->client, asio::buffer(buffer.data(), n),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  relay->close();
}

// Client to upstream. No deadlines of its own (a stream client rarely sends anything): the
// downstream deadlines close both sides. It uses the raw sockets so as not to touch the stream
// timers the other direction set.
Task<void> relay_up(std::shared_ptr<Relay> relay) {
  std::array<char, kUpBuffer> buffer;
  error_code ec;
  while (!ec) {
    const std::size_t n = co_await relay->client.socket().async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(relay->upstream.socket(), asio::buffer(buffer.data(), n),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  relay->close();
}

http::Response bad_gateway(Proxy& proxy, std::string_view stage, const error_code& ec) {
  proxy.metrics.failures.Add({{"stage", std::string(stage)}}).Increment();
  proxy.logger->warn("stream upstream {}:{} failed at {}: {}", proxy.upstream.host,
                     proxy.upstream.port, stage, ec.message());
  return http::problem(502, "the stream service is unavailable (" + std::string(stage) + ")");
}

Task<std::optional<tcp::resolver::results_type>> resolve(const Upstream& upstream, error_code& ec) {
  auto executor = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(executor);
  // The resolver has no deadline of its own: a timer cancels it.
  asio::steady_timer timer(executor);
  timer.expires_after(kConnectTimeout);
  auto on_timeout = [resolver](const error_code& timer_ec) {
    if (!timer_ec) resolver->cancel();
  };
  timer.async_wait(std::move(on_timeout));
  auto results = co_await resolver->async_resolve(upstream.host, upstream.port,
                                                  asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  if (ec) co_return std::nullopt;
  co_return results;
}

Task<http::Response> forward(std::shared_ptr<Proxy> proxy, http::Request& request) {
  error_code ec;
  const auto endpoints = co_await resolve(proxy->upstream, ec);
  if (!endpoints) co_return bad_gateway(*proxy, "resolve", ec);

  auto executor = co_await asio::this_coro::executor;
  beast::tcp_stream upstream(executor);
  upstream.expires_after(kConnectTimeout);
  co_await upstream.async_connect(*endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return bad_gateway(*proxy, "connect", ec);

  bhttp::request<bhttp::empty_body> outgoing{bhttp::verb::get, request.target, 11};
  outgoing.set(bhttp::field::host, proxy->upstream.host + ":" + proxy->upstream.port);
  outgoing.set(bhttp::field::accept, "text/event-stream");
  outgoing.set("X-Request-Id", request.request_id);
  if (const auto last_id = request.header("last-event-id"))
    outgoing.set("Last-Event-ID", std::string(*last_id));
  outgoing.keep_alive(false);
  upstream.expires_after(kHeadTimeout);
  co_await bhttp::async_write(upstream, outgoing, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return bad_gateway(*proxy, "send", ec);

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kErrorBodyLimit);
  upstream.expires_after(kHeadTimeout);
  co_await bhttp::async_read_header(upstream, buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return bad_gateway(*proxy, "response head", ec);

  const auto content_type = std::string(parser.get()[bhttp::field::content_type]);
  if (parser.get().result_int() != 200 || !content_type.starts_with("text/event-stream")) {
    // An answer such as 404 or 503: relay it whole.
    co_await bhttp::async_read(upstream, buffer, parser,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return bad_gateway(*proxy, "response body", ec);
    auto message = parser.release();
    http::Response response;
    response.status = message.result_int();
    response.content_type = content_type;
    response.body = std::move(message.body());
    if (const auto retry = message[bhttp::field::retry_after]; !retry.empty())
      response.set_header("Retry-After", std::string(retry));
    co_return response;
  }

  http::Response response;
  response.status = 200;
  response.content_type = "text/event-stream";
  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");
  const auto bytes = buffer.data();
  auto pending =
      std::make_shared<std::string>(static_cast<const char*>(bytes.data()), bytes.size());
  auto held = std::make_shared<beast::tcp_stream>(std::move(upstream));
  response.take_over = [proxy, held, pending](tcp::socket client) {
    auto executor = client.get_executor();
    auto relay =
        std::make_shared<Relay>(std::move(client), std::move(*held), std::move(*pending), proxy);
    asio::co_spawn(executor, relay_down(relay), asio::detached);
    asio::co_spawn(executor, relay_up(relay), asio::detached);
  };
  co_return response;
}

}  // namespace

void add_proxy_routes(http::Router& router, const config::Config& config,
                      prometheus::Registry& registry) {
  auto proxy = std::make_shared<Proxy>(
      Proxy{parse_stream_url(config.stream_url),
            config.stream_heartbeat * 2 + std::chrono::milliseconds(5000), ProxyMetrics(registry)});
  router.add("GET", "/v1/stream/markets/{product}",
             [proxy](http::Request& request) { return forward(proxy, request); });
}

}  // namespace mesh::sse
