#include "mesh/sse/proxy.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>

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

UpstreamPool::UpstreamPool(std::chrono::milliseconds down_initial,
                           std::chrono::milliseconds down_max)
    : down_initial_(down_initial), down_max_(std::max(down_max, down_initial)) {}

UpstreamPool::State* UpstreamPool::find(const Endpoint& endpoint) {
  const auto it = std::find_if(states_.begin(), states_.end(),
                               [&](const State& state) { return state.endpoint == endpoint; });
  return it == states_.end() ? nullptr : &*it;
}

void UpstreamPool::update(std::vector<Endpoint> endpoints) {
  std::lock_guard lock(mutex_);
  std::vector<State> states;
  for (auto& endpoint : endpoints) {
    const bool repeated = std::any_of(states.begin(), states.end(), [&](const State& state) {
      return state.endpoint == endpoint;
    });
    if (repeated) continue;
    const State* known = find(endpoint);
    states.push_back(known ? *known : State{std::move(endpoint)});
  }
  states_ = std::move(states);
}

std::vector<UpstreamPool::Endpoint> UpstreamPool::endpoints() const {
  std::lock_guard lock(mutex_);
  std::vector<Endpoint> out;
  for (const auto& state : states_) out.push_back(state.endpoint);
  return out;
}

std::vector<UpstreamPool::Endpoint> UpstreamPool::plan(std::size_t limit, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<Endpoint> out;
  if (states_.empty()) return out;
  const std::size_t start = next_++ % states_.size();
  std::vector<const State*> down;
  for (std::size_t i = 0; i < states_.size(); ++i) {
    const State& state = states_[(start + i) % states_.size()];
    if (state.down_until > now) {
      down.push_back(&state);
    } else {
      out.push_back(state.endpoint);
    }
  }
  std::stable_sort(down.begin(), down.end(),
                   [](const State* a, const State* b) { return a->failed_at < b->failed_at; });
  for (const State* state : down) out.push_back(state->endpoint);
  if (out.size() > limit) out.resize(limit);
  return out;
}

void UpstreamPool::failed(const Endpoint& endpoint, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  State* state = find(endpoint);
  if (state == nullptr) return;
  state->cool_down =
      state->cool_down.count() == 0 ? down_initial_ : std::min(state->cool_down * 2, down_max_);
  state->failed_at = now;
  state->down_until = now + state->cool_down;
}

void UpstreamPool::succeeded(const Endpoint& endpoint) {
  std::lock_guard lock(mutex_);
  if (State* state = find(endpoint)) {
    state->cool_down = std::chrono::milliseconds(0);
    state->down_until = {};
  }
}

std::size_t UpstreamPool::down(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(
      states_.begin(), states_.end(), [&](const State& state) { return state.down_until > now; }));
}

std::size_t complete_events(std::string_view bytes) {
  for (std::size_t i = bytes.size(); i-- > 1;) {
    if (bytes[i] != '\n') continue;
    if (bytes[i - 1] == '\n' || (bytes[i - 1] == '\r' && i >= 3 && bytes[i - 2] == '\n'))
      return i + 1;
  }
  return 0;
}

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kClientWriteTimeout{30'000};
// The largest event relayed: the stream role's events are well under 1 KiB.
constexpr std::size_t kDownBuffer = 32 * 1024;
constexpr std::size_t kUpBuffer = 1024;
constexpr std::size_t kErrorBodyLimit = 64 * 1024;
// Event ids are sequence numbers; anything longer is not one of ours.
constexpr std::size_t kLastEventIdLimit = 256;

struct Upstream {
  std::string host;
  std::string port;
};

Upstream parse_stream_url(std::string_view url) {
  const auto malformed = [&](std::string_view why) {
    return std::invalid_argument("stream url '" + std::string(url) + "' " + std::string(why));
  };
  constexpr std::string_view scheme = "http://";
  std::string_view rest(url);
  if (!rest.starts_with(scheme)) throw malformed("must be http://host:port");
  rest.remove_prefix(scheme.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || rest.find('/') != std::string_view::npos)
    throw malformed("must be http://host:port");
  const auto port = rest.substr(colon + 1);
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc() || end != port.data() + port.size() || number == 0 || number > 65535)
    throw malformed("has a bad port");
  std::string host(rest.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {host, std::string(port)};
}

std::vector<Upstream> parse_stream_urls(const std::string& urls) {
  std::vector<Upstream> out;
  std::string_view rest(urls);
  while (true) {
    const auto comma = rest.find(',');
    out.push_back(parse_stream_url(rest.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

// A header value that can go upstream as it is: no control characters but tab.
bool forwardable(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && byte != '\t') || byte == 0x7f;
  });
}

struct ProxyMetrics {
  explicit ProxyMetrics(prometheus::Registry& registry)
      : failures(prometheus::BuildCounter()
                     .Name("mesh_stream_proxy_failures_total")
                     .Help("Stream requests the gateway could not forward (502), by the stage "
                           "of the last attempt.")
                     .Register(registry)),
        relays(prometheus::BuildGauge()
                   .Name("mesh_stream_proxy_connections")
                   .Help("Streams the gateway is relaying from the stream role.")
                   .Register(registry)
                   .Add({})),
        requests(prometheus::BuildCounter()
                     .Name("mesh_proxy_requests_total")
                     .Help("Requests forwarded to the stream role: answered by the first "
                           "upstream tried (ok), by a later one (retried), or not (failed).")
                     .Register(registry)),
        ok(requests.Add({{"result", "ok"}})),
        retried(requests.Add({{"result", "retried"}})),
        failed(requests.Add({{"result", "failed"}})),
        upstream_down(prometheus::BuildGauge()
                          .Name("mesh_proxy_upstream_down")
                          .Help("Stream role addresses in their cool-down after a failure.")
                          .Register(registry)
                          .Add({})) {}
  prometheus::Family<prometheus::Counter>& failures;
  prometheus::Gauge& relays;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Counter& ok;
  prometheus::Counter& retried;
  prometheus::Counter& failed;
  prometheus::Gauge& upstream_down;
};

struct Proxy {
  Proxy(std::vector<Upstream> upstreams, ProxyOptions options,
        std::chrono::milliseconds idle_timeout, prometheus::Registry& registry)
      : upstreams(std::move(upstreams)),
        options(options),
        idle_timeout(idle_timeout),
        metrics(registry),
        pool(options.down_initial, options.down_max) {}

  void update_down_gauge() {
    metrics.upstream_down.Set(static_cast<double>(pool.down(Clock::now())));
  }

  const std::vector<Upstream> upstreams;
  const ProxyOptions options;
  const std::chrono::milliseconds idle_timeout;
  ProxyMetrics metrics;
  UpstreamPool pool;
  log::Logger logger = log::get("sse");

  std::mutex mutex;  // guards the two below
  Clock::time_point resolved_at{};
  bool resolving = false;
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

// Upstream to client, complete events only: when the upstream ends mid-event, the client sees
// the connection close after the last whole event, never a torn one. The upstream's deadlines
// use its stream timer; the client's write too.
Task<void> relay_down(std::shared_ptr<Relay> relay) {
  auto buffer = std::make_unique<std::array<char, kDownBuffer>>();
  std::size_t used = std::min(relay->pending.size(), buffer->size());
  std::memcpy(buffer->data(), relay->pending.data(), used);
  relay->pending = {};
  error_code ec;
  while (true) {
    const std::size_t whole = complete_events(std::string_view(buffer->data(), used));
    if (whole > 0) {
      relay->client.expires_after(kClientWriteTimeout);
      co_await asio::async_write(relay->client, asio::buffer(buffer->data(), whole),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      std::memmove(buffer->data(), buffer->data() + whole, used - whole);
      used -= whole;
    }
    if (used == buffer->size()) {
      relay->proxy->logger->warn("stream upstream sent an event over {} bytes; closing",
                                 kDownBuffer);
      break;
    }
    relay->upstream.expires_after(relay->proxy->idle_timeout);
    const std::size_t n = co_await relay->upstream.async_read_some(
        asio::buffer(buffer->data() + used, buffer->size() - used),
        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    used += n;
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

Task<std::vector<tcp::endpoint>> resolve(const Upstream& upstream,
                                         std::chrono::milliseconds timeout, error_code& ec) {
  auto executor = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(executor);
  // The resolver has no deadline of its own: a timer cancels it.
  asio::steady_timer timer(executor);
  timer.expires_after(timeout);
  auto on_timeout = [resolver](const error_code& timer_ec) {
    if (!timer_ec) resolver->cancel();
  };
  timer.async_wait(std::move(on_timeout));
  auto results = co_await resolver->async_resolve(upstream.host, upstream.port,
                                                  asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  std::vector<tcp::endpoint> out;
  if (!ec) {
    for (const auto& entry : results) out.push_back(entry.endpoint());
  }
  co_return out;
}

// Resolves every upstream host into the pool. A host that does not resolve keeps nothing of its
// own, but a resolution that finds nothing at all keeps the previous addresses.
Task<void> refresh(std::shared_ptr<Proxy> proxy) {
  std::vector<tcp::endpoint> endpoints;
  for (const auto& upstream : proxy->upstreams) {
    error_code ec;
    auto found = co_await resolve(upstream, proxy->options.connect_timeout, ec);
    if (ec) {
      proxy->logger->warn("cannot resolve stream upstream {}:{}: {}", upstream.host, upstream.port,
                          ec.message());
    }
    endpoints.insert(endpoints.end(), found.begin(), found.end());
  }
  if (!endpoints.empty()) proxy->pool.update(std::move(endpoints));
  proxy->update_down_gauge();
  std::lock_guard lock(proxy->mutex);
  proxy->resolved_at = Clock::now();
  proxy->resolving = false;
}

// The addresses are resolved inline only the first time (or while none resolved); after that a
// stale resolution is refreshed in the background while requests use the addresses known.
Task<void> ensure_resolved(std::shared_ptr<Proxy> proxy) {
  bool known = false;
  bool stale = false;
  {
    std::lock_guard lock(proxy->mutex);
    known = !proxy->pool.endpoints().empty();
    stale =
        !proxy->resolving && Clock::now() - proxy->resolved_at >= proxy->options.resolve_interval;
    if (known && stale) proxy->resolving = true;
  }
  if (!known) {
    co_await refresh(proxy);
  } else if (stale) {
    auto executor = co_await asio::this_coro::executor;
    asio::co_spawn(executor, refresh(proxy), asio::detached);
  }
}

void resolve_again_soon(Proxy& proxy) {
  std::lock_guard lock(proxy.mutex);
  proxy.resolved_at = {};
}

// One try against one address.
struct Attempt {
  enum class Outcome {
    answered,  // the response is final: relay it
    retry,     // nothing usable: the next address may do better
  };
  Outcome outcome = Outcome::retry;
  std::string_view stage;                  // where a transport failure happened
  std::optional<http::Response> response;  // an upstream answer (also a 502/503 to retry)
};

Task<Attempt> try_upstream(std::shared_ptr<Proxy> proxy, const http::Request& request,
                           const tcp::endpoint& endpoint) {
  Attempt attempt;
  auto& logger = proxy->logger;
  const auto transport_failure = [&](std::string_view stage, const error_code& ec) {
    proxy->pool.failed(endpoint, Clock::now());
    logger->warn("stream upstream {} failed at {}: {}", endpoint.address().to_string(), stage,
                 ec.message());
    attempt.stage = stage;
    return attempt;
  };
  auto executor = co_await asio::this_coro::executor;
  error_code ec;
  beast::tcp_stream upstream(executor);
  upstream.expires_after(proxy->options.connect_timeout);
  co_await upstream.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return transport_failure("connect", ec);

  const bool head = request.method == "HEAD";
  bhttp::request<bhttp::empty_body> outgoing{head ? bhttp::verb::head : bhttp::verb::get,
                                             request.target, 11};
  outgoing.set(bhttp::field::host,
               endpoint.address().to_string() + ":" + std::to_string(endpoint.port()));
  outgoing.set(bhttp::field::accept, "text/event-stream");
  outgoing.set("X-Request-Id", request.request_id);
  if (!request.traceparent.empty()) outgoing.set("traceparent", request.traceparent);
  if (const auto authorization = request.header("authorization"))
    outgoing.set(bhttp::field::authorization, std::string(*authorization));
  if (const auto last_id = request.header("last-event-id"))
    outgoing.set("Last-Event-ID", std::string(*last_id));
  outgoing.keep_alive(false);
  upstream.expires_after(proxy->options.head_timeout);
  co_await bhttp::async_write(upstream, outgoing, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return transport_failure("send", ec);

  beast::flat_buffer buffer(kDownBuffer);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kErrorBodyLimit);
  parser.skip(head);
  co_await bhttp::async_read_header(upstream, buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return transport_failure("response head", ec);
  proxy->pool.succeeded(endpoint);

  const unsigned status = parser.get().result_int();
  const auto content_type = std::string(parser.get()[bhttp::field::content_type]);
  const bool stream = status == 200 && content_type.starts_with("text/event-stream");
  http::Response response;
  response.status = status;
  response.content_type = content_type;
  if (!stream) {
    for (const auto field :
         {bhttp::field::retry_after, bhttp::field::www_authenticate, bhttp::field::cache_control}) {
      if (const auto value = parser.get()[field]; !value.empty())
        response.set_header(std::string(bhttp::to_string(field)), std::string(value));
    }
    // An answer such as 403, 404, 409 or 503: relay it whole.
    if (!head) {
      co_await bhttp::async_read(upstream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return transport_failure("response body", ec);
      response.body = std::move(parser.get().body());
    }
    attempt.outcome =
        status == 502 || status == 503 ? Attempt::Outcome::retry : Attempt::Outcome::answered;
    attempt.stage = "response status";
    attempt.response = std::move(response);
    co_return attempt;
  }

  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");
  if (head) {
    // The server writes a streaming head (no Content-Length) and never calls this for HEAD.
    response.take_over = [](tcp::socket) {};
  } else {
    const auto bytes = buffer.data();
    auto pending =
        std::make_shared<std::string>(static_cast<const char*>(bytes.data()), bytes.size());
    auto held = std::make_shared<beast::tcp_stream>(std::move(upstream));
    response.take_over = [proxy, held, pending](tcp::socket client) {
      auto client_executor = client.get_executor();
      auto relay =
          std::make_shared<Relay>(std::move(client), std::move(*held), std::move(*pending), proxy);
      asio::co_spawn(client_executor, relay_down(relay), asio::detached);
      asio::co_spawn(client_executor, relay_up(relay), asio::detached);
    };
  }
  attempt.outcome = Attempt::Outcome::answered;
  attempt.response = std::move(response);
  co_return attempt;
}

// Retries go to the next address only before anything reached the client: the whole exchange
// up to the response head happens here, and the stream is handed over only once it succeeded.
Task<http::Response> forward(std::shared_ptr<Proxy> proxy, http::Request& request) {
  if (const auto last_id = request.header("last-event-id");
      last_id && (last_id->size() > kLastEventIdLimit || !forwardable(*last_id))) {
    co_return http::problem(400, "Last-Event-ID must be at most 256 printable characters");
  }
  if (const auto authorization = request.header("authorization");
      authorization && !forwardable(*authorization)) {
    co_return http::problem(400, "the Authorization header has control characters");
  }
  co_await ensure_resolved(proxy);
  const auto now = Clock::now();
  const auto addresses = proxy->pool.plan(proxy->options.max_attempts, now);
  Attempt last;
  last.stage = "resolve";
  std::size_t tried = 0;
  for (const auto& endpoint : addresses) {
    ++tried;
    last = co_await try_upstream(proxy, request, endpoint);
    if (last.outcome == Attempt::Outcome::answered) break;
  }
  proxy->update_down_gauge();
  if (last.outcome == Attempt::Outcome::answered) {
    (tried == 1 ? proxy->metrics.ok : proxy->metrics.retried).Increment();
    co_return std::move(*last.response);
  }
  proxy->metrics.failed.Increment();
  if (last.response) co_return std::move(*last.response);  // every upstream was unavailable
  resolve_again_soon(*proxy);
  proxy->metrics.failures.Add({{"stage", std::string(last.stage)}}).Increment();
  co_return http::problem(502,
                          "the stream service is unavailable (" + std::string(last.stage) + ")");
}

}  // namespace

void add_proxy_routes(http::Router& router, const config::Config& config,
                      prometheus::Registry& registry, ProxyOptions options) {
  options.max_attempts = std::max<std::size_t>(options.max_attempts, 1);
  auto proxy = std::make_shared<Proxy>(
      parse_stream_urls(config.stream_url), options,
      config.stream_heartbeat * 2 + std::chrono::milliseconds(5000), registry);
  auto handler = [proxy](http::Request& request) { return forward(proxy, request); };
  router.add("GET", "/v1/stream/markets/{product}", handler);
  router.add("GET", "/v1/stream/sessions/{profile_id}", handler);
}

}  // namespace mesh::sse
