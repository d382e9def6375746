// The only file of the module that includes Beast's websocket and Asio's SSL headers: they are
// expensive to compile.
#include "mesh/ingest/websocket.hpp"

#include <openssl/ssl.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace mesh::ingest {
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Resets the cancel hook when the connection's objects go away.
class CancelHook {
 public:
  explicit CancelHook(std::function<void()>& slot) : slot_(slot) {}
  ~CancelHook() { slot_ = nullptr; }
  CancelHook(const CancelHook&) = delete;
  CancelHook& operator=(const CancelHook&) = delete;
  void set(std::function<void()> hook) { slot_ = std::move(hook); }

 private:
  std::function<void()>& slot_;
};

// Resolves with a deadline. The timer holds the resolver weakly, so a late expiry after the
// resolve finished touches nothing.
Task<tcp::resolver::results_type> resolve(const FeedUrl& url, std::chrono::milliseconds timeout,
                                          CancelHook& hook, bool& cancelled, error_code& ec) {
  auto executor = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(executor);
  hook.set([resolver, &cancelled] {
    cancelled = true;
    resolver->cancel();
  });
  asio::steady_timer deadline(executor, timeout);
  deadline.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](error_code expired) {
    if (expired) return;
    if (auto r = weak.lock()) r->cancel();
  });
  auto results = co_await resolver->async_resolve(url.host, url.port,
                                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::operation_aborted && !cancelled) ec = asio::error::timed_out;
  co_return results;
}

std::string describe(std::string_view what, const error_code& ec) {
  return std::string(what) + ": " + ec.message();
}

template <class Stream>
Task<ConnectionResult> converse(websocket::stream<Stream>& ws, const FeedUrl& url,
                                const ConnectionOptions& options, CancelHook& hook,
                                const std::function<void()>& on_connected,
                                const std::function<bool(std::string_view)>& on_message) {
  bool cancelled = false;
  error_code ec;
  const auto results = co_await resolve(url, options.resolve_timeout, hook, cancelled, ec);
  if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped"};
  if (ec) co_return ConnectionResult{ConnectionEnd::resolve_failed, describe(url.host, ec)};

  auto& tcp_layer = beast::get_lowest_layer(ws);
  hook.set([&tcp_layer, &cancelled] {
    cancelled = true;
    tcp_layer.close();
  });
  tcp_layer.expires_after(options.connect_timeout);
  co_await tcp_layer.async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped"};
  if (ec) co_return ConnectionResult{ConnectionEnd::connect_failed, describe("connect", ec)};

  // One deadline for everything up to the subscribe request.
  tcp_layer.expires_after(options.handshake_timeout);
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    auto& tls = ws.next_layer();
    // SNI: servers behind shared front ends pick the certificate by it.
    if (SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str()) != 1) {
      co_return ConnectionResult{ConnectionEnd::handshake_failed, "cannot set the TLS SNI name"};
    }
    tls.set_verify_callback(ssl::host_name_verification(url.host), ec);
    if (ec) co_return ConnectionResult{ConnectionEnd::handshake_failed, describe("tls", ec)};
    co_await tls.async_handshake(ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped"};
    if (ec) {
      co_return ConnectionResult{ConnectionEnd::handshake_failed, describe("tls handshake", ec)};
    }
  }
  ws.read_message_max(options.read_message_max);
  ws.set_option(websocket::stream_base::decorator([](websocket::request_type& request) {
    request.set(beast::http::field::user_agent, "mesh-ingester");
  }));
  const bool default_port = url.port == (url.tls ? "443" : "80");
  const std::string host_header = default_port ? url.host : url.host + ":" + url.port;
  co_await ws.async_handshake(host_header, url.target,
                              asio::redirect_error(asio::use_awaitable, ec));
  if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped"};
  if (ec) {
    co_return ConnectionResult{ConnectionEnd::handshake_failed,
                               describe("websocket handshake", ec)};
  }
  ws.text(true);
  co_await ws.async_write(asio::buffer(options.subscribe),
                          asio::redirect_error(asio::use_awaitable, ec));
  if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped"};
  if (ec) co_return ConnectionResult{ConnectionEnd::closed, describe("subscribe", ec), false};
  on_connected();

  beast::flat_buffer buffer;
  while (true) {
    tcp_layer.expires_after(options.silence_timeout);
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled) co_return ConnectionResult{ConnectionEnd::stopped, "stopped", true};
    if (ec == beast::error::timeout) {
      co_return ConnectionResult{ConnectionEnd::silence, "no frame within the silence timeout",
                                 true};
    }
    if (ec == websocket::error::message_too_big) {
      co_return ConnectionResult{
          ConnectionEnd::too_big,
          "frame above " + std::to_string(options.read_message_max) + " bytes", true};
    }
    if (ec) co_return ConnectionResult{ConnectionEnd::closed, describe("read", ec), true};
    const auto data = buffer.cdata();
    const bool keep =
        on_message(std::string_view(static_cast<const char*>(data.data()), data.size()));
    buffer.consume(buffer.size());
    if (!keep) co_return ConnectionResult{ConnectionEnd::refused, "ended by the feed", true};
  }
}

}  // namespace

std::optional<FeedUrl> parse_feed_url(std::string_view url) {
  FeedUrl out;
  if (url.starts_with("wss://")) {
    out.tls = true;
    url.remove_prefix(6);
  } else if (url.starts_with("ws://")) {
    url.remove_prefix(5);
  } else {
    return std::nullopt;
  }
  const auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  const auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    out.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
    if (out.port.empty() || out.port.size() > 5 ||
        out.port.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
  } else {
    out.port = out.tls ? "443" : "80";
  }
  if (authority.empty() || authority.find_first_of(" @[]") != std::string_view::npos) {
    return std::nullopt;
  }
  out.host = std::string(authority);
  return out;
}

std::string_view to_string(ConnectionEnd end) {
  switch (end) {
    case ConnectionEnd::stopped:
      return "stopped";
    case ConnectionEnd::resolve_failed:
      return "resolve_failed";
    case ConnectionEnd::connect_failed:
      return "connect_failed";
    case ConnectionEnd::handshake_failed:
      return "handshake_failed";
    case ConnectionEnd::silence:
      return "silence";
    case ConnectionEnd::too_big:
      return "too_big";
    case ConnectionEnd::closed:
      return "closed";
    case ConnectionEnd::refused:
      break;
  }
  return "refused";
}

Task<ConnectionResult> run_connection(const FeedUrl& url, const ConnectionOptions& options,
                                      std::function<void()>& cancel,
                                      const std::function<void()>& on_connected,
                                      const std::function<bool(std::string_view)>& on_message) {
  auto executor = co_await asio::this_coro::executor;
  if (!url.tls) {
    websocket::stream<beast::tcp_stream> ws(executor);
    CancelHook hook(cancel);
    auto result = co_await converse(ws, url, options, hook, on_connected, on_message);
    co_return result;
  }
  ssl::context context(ssl::context::tls_client);
  error_code ec;
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1,
                      ec);
  if (!ec) context.set_default_verify_paths(ec);
  if (!ec && !options.ca_file.empty()) context.load_verify_file(options.ca_file, ec);
  if (!ec) context.set_verify_mode(ssl::verify_peer, ec);
  if (ec) {
    co_return ConnectionResult{ConnectionEnd::handshake_failed,
                               describe("tls setup (ca file '" + options.ca_file + "')", ec)};
  }
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(executor, context);
  CancelHook hook(cancel);
  auto result = co_await converse(ws, url, options, hook, on_connected, on_message);
  co_return result;
}

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
    : initial_(initial), max_(max), ceiling_(initial), random_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::next() {
  std::uniform_int_distribution<std::int64_t> uniform(0, ceiling_.count());
  const std::chrono::milliseconds delay(uniform(random_));
  ceiling_ = std::min(ceiling_ * 2, max_);
  return delay;
}

void Backoff::reset() { ceiling_ = initial_; }

}  // namespace mesh::ingest
