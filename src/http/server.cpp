#include "mesh/http/server.hpp"

#include <atomic>
#include <charconv>
#include <mutex>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/decode_view.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/metrics/metrics.hpp"

namespace mesh::http {
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

asio::ip::tcp::endpoint parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw std::invalid_argument("listen address '" + std::string(text) + "' needs host:port");
  }
  std::string host(text.substr(0, colon));
  const auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    throw std::invalid_argument("listen address '" + std::string(text) + "' has a bad port");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  error_code error;
  const auto address = asio::ip::make_address(host, error);
  if (error) {
    throw std::invalid_argument("listen address '" + std::string(text) + "': '" + host +
                                "' is not an IP address");
  }
  return {address, static_cast<unsigned short>(port)};
}

namespace {

struct HttpMetrics {
  explicit HttpMetrics(prometheus::Registry& registry)
      : requests(prometheus::BuildCounter()
                     .Name("mesh_http_requests_total")
                     .Help("HTTP requests answered, by route, method and status.")
                     .Register(registry)),
        duration(prometheus::BuildHistogram()
                     .Name("mesh_http_request_duration_seconds")
                     .Help("Time from a request read to its response ready to write.")
                     .Register(registry)),
        connections(prometheus::BuildGauge()
                        .Name("mesh_http_connections")
                        .Help("Open HTTP connections.")
                        .Register(registry)
                        .Add({})),
        rejected(prometheus::BuildCounter()
                     .Name("mesh_http_rejected_requests_total")
                     .Help("Requests refused before routing, by reason.")
                     .Register(registry)) {}

  // Family::Add takes a lock and hashes labels; cache the children by their label key.
  prometheus::Counter& request_counter(std::string_view route, std::string_view method,
                                       unsigned status) {
    std::string key;
    key.reserve(route.size() + method.size() + 8);
    key.append(route).append(" ").append(method).append(" ").append(std::to_string(status));
    std::lock_guard lock(mutex);
    auto it = counters.find(key);
    if (it == counters.end()) {
      auto& counter = requests.Add({{"route", std::string(route)},
                                    {"method", std::string(method)},
                                    {"status", std::to_string(status)}});
      it = counters.emplace(std::move(key), &counter).first;
    }
    return *it->second;
  }

  prometheus::Histogram& route_histogram(std::string_view route) {
    std::lock_guard lock(mutex);
    auto it = histograms.find(std::string(route));
    if (it == histograms.end()) {
      auto& histogram = duration.Add({{"route", std::string(route)}}, metrics::latency_buckets());
      it = histograms.emplace(std::string(route), &histogram).first;
    }
    return *it->second;
  }

  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Gauge& connections;
  prometheus::Family<prometheus::Counter>& rejected;
  std::mutex mutex;
  std::unordered_map<std::string, prometheus::Counter*> counters;
  std::unordered_map<std::string, prometheus::Histogram*> histograms;
};

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

struct Server::State : std::enable_shared_from_this<Server::State> {
  State(asio::any_io_executor executor, ServerOptions options, std::shared_ptr<Router> router,
        prometheus::Registry& registry)
      : executor(executor),
        options(std::move(options)),
        router(std::move(router)),
        acceptor(executor),
        metrics(registry),
        logger(log::get("http")) {}

  // Lives in its session's coroutine frame; `live` points at it until the session ends.
  struct Connection {
    beast::tcp_stream* stream = nullptr;
    asio::any_io_executor executor;
    std::atomic<bool> busy{false};
  };

  asio::any_io_executor executor;
  ServerOptions options;
  std::shared_ptr<Router> router;
  tcp::acceptor acceptor;
  HttpMetrics metrics;
  log::Logger logger;
  std::atomic<bool> draining{false};
  mutable std::mutex mutex;
  std::uint64_t next_connection_id = 0;
  std::unordered_map<std::uint64_t, Connection*> live;

  Task<void> accept_loop();
  Task<void> session(tcp::socket socket);
  // Runs middleware `index` onwards, then routing.
  Task<Response> run_chain(Request& request, std::size_t index, std::string_view& route);
  Task<Response> dispatch(Request& request, std::string_view& route);

  // Closes a connection's socket on its own strand, if the connection still lives there: the
  // session erases itself on that strand before its stream goes away.
  void close_on_strand(std::uint64_t id, const Connection* connection) {
    asio::post(connection->executor, [self = shared_from_this(), id] {
      std::lock_guard lock(self->mutex);
      const auto it = self->live.find(id);
      if (it == self->live.end()) return;
      error_code ignored;
      it->second->stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      it->second->stream->socket().close(ignored);
    });
  }
};

Server::Server(asio::any_io_executor executor, ServerOptions options,
               std::shared_ptr<Router> router, prometheus::Registry& registry)
    : state_(std::make_shared<State>(executor, std::move(options), std::move(router), registry)) {}

Server::~Server() {
  asio::post(state_->acceptor.get_executor(), [state = state_] {
    error_code ignored;
    state->acceptor.close(ignored);
  });
}

void Server::start() {
  const auto endpoint = parse_endpoint(state_->options.listen);
  auto& acceptor = state_->acceptor;
  try {
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + state_->options.listen + ": " +
                             e.code().message());
  }
  asio::co_spawn(state_->executor, state_->accept_loop(), asio::detached);
  state_->logger->info("listening on {}", local_endpoint().address().to_string() + ":" +
                                              std::to_string(local_endpoint().port()));
}

asio::ip::tcp::endpoint Server::local_endpoint() const { return state_->acceptor.local_endpoint(); }

std::size_t Server::connections() const {
  std::lock_guard lock(state_->mutex);
  return state_->live.size();
}

Task<void> Server::stop(std::chrono::milliseconds deadline) {
  auto state = state_;
  state->draining = true;
  asio::post(state->acceptor.get_executor(), [state] {
    error_code ignored;
    state->acceptor.close(ignored);
  });
  {
    std::lock_guard lock(state->mutex);
    for (const auto& [id, connection] : state->live) {
      if (!connection->busy) state->close_on_strand(id, connection);
    }
  }
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (connections() > 0 && std::chrono::steady_clock::now() < until) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(asio::use_awaitable);
  }
  std::lock_guard lock(state->mutex);
  for (const auto& [id, connection] : state->live) state->close_on_strand(id, connection);
}

Task<void> Server::State::accept_loop() {
  auto self = shared_from_this();
  while (acceptor.is_open()) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(
        asio::make_strand(executor), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      logger->warn("accept failed: {}", ec.message());
      continue;
    }
    if (draining) break;
    bool full = false;
    {
      std::lock_guard lock(mutex);
      full = live.size() >= options.max_connections;
    }
    if (full) {
      metrics.rejected.Add({{"reason", "max_connections"}}).Increment();
      continue;  // the socket closes as it goes out of scope
    }
    auto socket_executor = socket.get_executor();
    asio::co_spawn(socket_executor, session(std::move(socket)), asio::detached);
  }
}

Task<Response> Server::State::run_chain(Request& request, std::size_t index,
                                        std::string_view& route) {
  const auto& chain = router->middlewares();
  if (index == chain.size()) co_return co_await dispatch(request, route);
  const Next next = [this, index, &route](Request& r) { return run_chain(r, index + 1, route); };
  co_return co_await chain[index](request, next);
}

Task<Response> Server::State::dispatch(Request& request, std::string_view& route) {
  auto match = router->match(request.method, request.path);
  if (match.handler == nullptr) {
    if (!match.allow.empty()) {
      route = "unmatched";
      auto response =
          problem(405, "method " + request.method + " is not allowed on " + request.path);
      response.set_header("Allow", match.allow);
      co_return response;
    }
    route = "unmatched";
    co_return problem(404, "no route for " + request.path);
  }
  route = match.pattern;
  request.params = std::move(match.params);
  co_return co_await (*match.handler)(request);
}

namespace {

unsigned status_for_read_error(const error_code& ec) {
  if (ec == bhttp::error::body_limit) return 413;
  if (ec == bhttp::error::header_limit) return 431;
  return 400;
}

bool is_disconnect(const error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == beast::error::timeout ||
         ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
         ec == bhttp::error::partial_message;
}

Request to_request(bhttp::request<bhttp::string_body>&& message, std::string remote) {
  Request request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  const auto question = request.target.find('?');
  const std::string_view raw_path = std::string_view(request.target).substr(0, question);
  if (question != std::string::npos) request.query = request.target.substr(question + 1);
  auto decoded = boost::urls::make_pct_string_view(raw_path);
  request.path = decoded ? std::string(decoded->decode()) : std::string(raw_path);
  request.headers.reserve(static_cast<std::size_t>(std::distance(message.begin(), message.end())));
  for (const auto& field : message) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    request.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  request.body = std::move(message.body());
  request.remote_address = std::move(remote);
  return request;
}

}  // namespace

Task<void> Server::State::session(tcp::socket socket) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(socket));
  std::string remote;
  {
    error_code ec;
    const auto endpoint = stream.socket().remote_endpoint(ec);
    if (!ec) remote = endpoint.address().to_string();
  }
  Connection connection;
  connection.stream = &stream;
  connection.executor = stream.get_executor();
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex);
    id = next_connection_id++;
    live.emplace(id, &connection);
  }
  metrics.connections.Increment();
  // The metric children of the last answer: a keep-alive connection mostly repeats a route.
  struct {
    std::string_view route;
    std::string method;
    unsigned status = 0;
    prometheus::Counter* counter = nullptr;
    prometheus::Histogram* histogram = nullptr;
  } last;

  // Set when a streaming handler takes the connection over.
  std::optional<tcp::socket> handed_over;
  std::function<void(tcp::socket)> take_over;

  beast::flat_buffer buffer;
  bool first = true;
  while (!draining) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(options.body_limit);
    parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
    // Waiting for the next request on a keep-alive connection may take the idle timeout; once
    // bytes arrive, the whole request must come within the read timeout.
    stream.expires_after(first ? options.read_timeout : options.idle_timeout);
    error_code ec;
    co_await bhttp::async_read_header(stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      stream.expires_after(options.read_timeout);
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    first = false;
    if (ec) {
      if (is_disconnect(ec)) break;
      // Malformed or oversized input: answer once, then close, since the stream position is
      // unknown.
      const unsigned status = status_for_read_error(ec);
      metrics.rejected.Add({{"reason", std::to_string(status)}}).Increment();
      auto response = problem(status, "cannot read request: " + ec.message());
      bhttp::response<bhttp::string_body> message{static_cast<bhttp::status>(status), 11};
      message.set(bhttp::field::content_type, response.content_type);
      message.set(bhttp::field::connection, "close");
      message.body() = std::move(response.body);
      message.prepare_payload();
      stream.expires_after(options.write_timeout);
      co_await bhttp::async_write(stream, message, asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    connection.busy = true;
    const auto started = std::chrono::steady_clock::now();
    auto message = parser.release();
    const bool keep_alive = message.keep_alive();
    const unsigned version = message.version();
    Request request = to_request(std::move(message), remote);
    const auto incoming_id = request.header("x-request-id");
    request.request_id = incoming_id && valid_request_id(*incoming_id) ? std::string(*incoming_id)
                                                                       : core::random_hex(8);
    request.traceparent = next_traceparent(request.header("traceparent"));
    std::string_view route = "unmatched";
    Response response;
    try {
      response = co_await run_chain(request, 0, route);
    } catch (const std::exception& e) {
      log::event(*logger, spdlog::level::err, "handler failed",
                 {{"request_id", request.request_id},
                  {"trace_id", trace_id(request.traceparent)},
                  {"route", route},
                  {"error", e.what()}});
      response = problem(500, "internal error; request id " + request.request_id);
    }

    const bool streaming = static_cast<bool>(response.take_over);
    bhttp::response<bhttp::string_body> reply{static_cast<bhttp::status>(response.status), version};
    if (!response.content_type.empty())
      reply.set(bhttp::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) reply.set(name, value);
    reply.set("X-Request-Id", request.request_id);
    const bool close = !keep_alive || draining || streaming;
    reply.keep_alive(!close);
    if (!streaming) {
      if (request.method != "HEAD") reply.body() = std::move(response.body);
      reply.prepare_payload();
      if (request.method == "HEAD") reply.content_length(response.body.size());
    }
    // Counted before the write, so a client that has its answer also sees it in /metrics.
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
    if (last.counter == nullptr || last.route != route || last.method != request.method ||
        last.status != response.status) {
      last.route = route;
      last.method = request.method;
      last.status = response.status;
      last.counter = &metrics.request_counter(route, request.method, response.status);
      last.histogram = &metrics.route_histogram(route);
    }
    last.counter->Increment();
    last.histogram->Observe(elapsed.count());
    stream.expires_after(options.write_timeout);
    if (streaming) {
      // The head only: no Content-Length, the body runs until the connection closes.
      bhttp::response_serializer<bhttp::string_body> serializer(reply);
      co_await bhttp::async_write_header(stream, serializer,
                                         asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && request.method != "HEAD") {
        stream.expires_never();
        handed_over.emplace(stream.release_socket());
        take_over = std::move(response.take_over);
      }
    } else {
      co_await bhttp::async_write(stream, reply, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (logger->should_log(spdlog::level::info)) {
      log::event(*logger, spdlog::level::info, "request",
                 {{"request_id", request.request_id},
                  {"trace_id", trace_id(request.traceparent)},
                  {"method", request.method},
                  {"route", route},
                  {"path", request.path},
                  {"status", response.status},
                  {"duration_ms", elapsed.count() * 1000.0},
                  {"remote", request.remote_address}});
    }
    connection.busy = false;
    if (ec || close) break;
  }
  if (!handed_over) {
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }
  {
    std::lock_guard lock(mutex);
    live.erase(id);
  }
  metrics.connections.Decrement();
  if (!handed_over) co_return;
  // The session's parser and buffers go with this frame; the streaming handler keeps only what
  // it needs. It runs on this connection's strand.
  try {
    take_over(std::move(*handed_over));
  } catch (const std::exception& e) {
    logger->error("streaming handler failed to take over: {}", e.what());
  }
}

}  // namespace mesh::http
