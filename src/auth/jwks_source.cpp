// The only file of the module that includes Beast and Asio's SSL headers: the JWKS fetcher.
#include "mesh/auth/jwks_source.hpp"

#include <atomic>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <utility>

#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "mesh/config/config.hpp"
#include "mesh/core/log.hpp"
#include "mesh/http/url.hpp"

namespace mesh::auth {
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::string_view kFileScheme = "file://";

bool is_url(std::string_view location) {
  return location.starts_with("http://") || location.starts_with("https://");
}

http::Url parse_url(std::string_view text) {
  try {
    return http::parse_url(text);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("--oidc-jwks: not a valid URL: " + std::string(text));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  std::string document(KeySet::max_document_size + 1, '\0');
  file.read(document.data(), static_cast<std::streamsize>(document.size()));
  if (file.bad()) throw std::runtime_error("cannot read " + path);
  document.resize(static_cast<std::size_t>(file.gcount()));
  return document;  // KeySet::parse refuses it when over the limit
}

std::string describe(std::string_view what, const error_code& ec) {
  return std::string(what) + ": " + ec.message();
}

// GET `url` on an open stream; the stream's expiry bounds every step.
template <class Stream>
Task<std::string> get(Stream& stream, const http::Url& url) {
  bhttp::request<bhttp::empty_body> request(bhttp::verb::get, url.target, 11);
  request.set(bhttp::field::host, url.authority);
  request.set(bhttp::field::user_agent, "mesh");
  request.set(bhttp::field::accept, "application/json");
  request.set(bhttp::field::connection, "close");
  error_code ec;
  co_await bhttp::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) throw std::runtime_error(describe("send", ec));

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(KeySet::max_document_size);
  co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == bhttp::error::body_limit) {
    throw std::runtime_error("response body above " + std::to_string(KeySet::max_document_size) +
                             " bytes");
  }
  if (ec) throw std::runtime_error(describe("receive", ec));
  const auto status = parser.get().result_int();
  if (status != 200) throw std::runtime_error("HTTP status " + std::to_string(status));
  co_return parser.release().body();
}

}  // namespace

struct JwksSource::State {
  State(asio::any_io_executor executor, JwksSourceOptions options, OidcVerifier& verifier,
        prometheus::Registry& registry)
      : strand(asio::make_strand(std::move(executor))),
        options(std::move(options)),
        verifier(verifier),
        refreshes(prometheus::BuildCounter()
                      .Name("mesh_oidc_jwks_refresh_total")
                      .Help("Loads of the OIDC provider's JWKS, by result (ok, error).")
                      .Register(registry)),
        refreshed_ok(refreshes.Add({{"result", "ok"}})),
        refresh_failed(refreshes.Add({{"result", "error"}})),
        keys(prometheus::BuildGauge()
                 .Name("mesh_oidc_jwks_keys")
                 .Help("Signing keys of the OIDC provider in use.")
                 .Register(registry)
                 .Add({})),
        wake(strand),
        finished(strand, asio::steady_timer::time_point::max()),
        logger(log::get("auth")) {}

  // The document at the location, or an exception with the reason.
  Task<std::string> fetch() {
    if (!is_url(options.location)) {
      const std::string_view location = options.location;
      co_return read_file(std::string(
          location.starts_with(kFileScheme) ? location.substr(kFileScheme.size()) : location));
    }
    const http::Url url = parse_url(options.location);
    const auto deadline = std::chrono::steady_clock::now() + options.fetch_timeout;
    bool cancelled = false;
    error_code ec;

    auto resolver = std::make_shared<tcp::resolver>(strand);
    cancel_fetch = [resolver, &cancelled] {
      cancelled = true;
      resolver->cancel();
    };
    asio::steady_timer resolve_deadline(strand, deadline);
    resolve_deadline.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](error_code e) {
      if (e) return;
      if (auto r = weak.lock()) r->cancel();
    });
    const auto endpoints = co_await resolver->async_resolve(
        url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
    resolve_deadline.cancel();
    cancel_fetch = nullptr;
    if (cancelled) throw std::runtime_error("stopped");
    if (ec == asio::error::operation_aborted) ec = asio::error::timed_out;
    if (ec) throw std::runtime_error(describe("resolve " + url.host, ec));

    if (!url.tls) {
      beast::tcp_stream stream(strand);
      co_return co_await converse(stream, stream, url, endpoints, deadline, cancelled);
    }
    ssl::context context(ssl::context::tls_client);
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                            ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                            ssl::context::no_tlsv1_1,
                        ec);
    if (!ec) context.set_default_verify_paths(ec);
    if (!ec && !options.ca_file.empty()) context.load_verify_file(options.ca_file, ec);
    if (!ec) context.set_verify_mode(ssl::verify_peer, ec);
    if (ec) throw std::runtime_error(describe("tls setup (ca file '" + options.ca_file + "')", ec));
    beast::ssl_stream<beast::tcp_stream> stream(strand, context);
    // SNI names a host, never an address (RFC 6066).
    error_code not_an_address;
    asio::ip::make_address(url.host, not_an_address);
    if (not_an_address && SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()) != 1) {
      throw std::runtime_error("cannot set the TLS SNI name");
    }
    stream.set_verify_callback(ssl::host_name_verification(url.host), ec);
    if (ec) throw std::runtime_error(describe("tls", ec));
    co_return co_await converse(stream, beast::get_lowest_layer(stream), url, endpoints, deadline,
                                cancelled);
  }

  template <class Stream>
  Task<std::string> converse(Stream& stream, beast::tcp_stream& tcp_layer, const http::Url& url,
                             const tcp::resolver::results_type& endpoints,
                             std::chrono::steady_clock::time_point deadline, bool& cancelled) {
    cancel_fetch = [&tcp_layer, &cancelled] {
      cancelled = true;
      tcp_layer.close();
    };
    tcp_layer.expires_at(deadline);
    error_code ec;
    co_await tcp_layer.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !cancelled) {
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        co_await stream.async_handshake(ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    std::string document;
    std::string failure;
    if (ec) {
      failure = describe(url.tls ? "connect or tls handshake" : "connect", ec);
    } else if (!cancelled) {
      try {
        document = co_await get(stream, url);
      } catch (const std::exception& error) {
        failure = error.what();
      }
    }
    cancel_fetch = nullptr;
    if (cancelled) throw std::runtime_error("stopped");
    if (!failure.empty()) throw std::runtime_error(failure);
    co_return document;
  }

  // One fetch and parse; the verifier gets the keys only when both worked. Returns the reason
  // of a failure, empty on success.
  Task<std::string> refresh() {
    last_fetch.store(std::chrono::steady_clock::now().time_since_epoch().count());
    std::string failure;
    std::shared_ptr<const KeySet> set;
    try {
      const std::string document = co_await fetch();
      set = KeySet::parse(document);
    } catch (const std::exception& error) {
      failure = error.what();
    }
    if (stopping) co_return "stopped";
    if (!failure.empty()) {
      refresh_failed.Increment();
      log::event(*logger, spdlog::level::warn, "JWKS load failed; the keys in use stay",
                 {{"location", options.location}, {"reason", failure}});
      co_return failure;
    }
    for (const auto& skipped : set->skipped()) {
      log::event(*logger, spdlog::level::warn, "JWKS entry skipped",
                 {{"location", options.location}, {"reason", skipped}});
    }
    keys.Set(static_cast<double>(set->keys().size()));
    verifier.set_keys(std::move(set));
    refreshed_ok.Increment();
    co_return std::string();
  }

  static Task<void> run(std::shared_ptr<State> self) {
    while (!self->stopping) {
      if (!self->early_refresh) {
        self->wake.expires_after(self->options.refresh_interval);
        error_code ec;
        co_await self->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (self->stopping) break;
      self->early_refresh = false;
      co_await self->refresh();
    }
  }

  static bool request_refresh(std::shared_ptr<State> self) {
    if (!self->started || self->stopping) return false;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = self->last_fetch.load();
    const auto gap = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         self->options.min_early_refresh_gap)
                         .count();
    // The exchange lets one of many concurrent callers through.
    if (now - last < gap || !self->last_fetch.compare_exchange_strong(last, now)) return false;
    auto strand = self->strand;
    asio::post(strand, [self = std::move(self)] {
      if (self->stopping) return;
      self->early_refresh = true;
      self->wake.cancel();
    });
    return true;
  }

  static Task<void> halt(std::shared_ptr<State> self) {
    self->stopping = true;
    self->wake.cancel();
    if (self->cancel_fetch) self->cancel_fetch();
    if (self->loop_running) {
      error_code ec;
      co_await self->finished.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  asio::strand<asio::any_io_executor> strand;
  const JwksSourceOptions options;
  OidcVerifier& verifier;
  prometheus::Family<prometheus::Counter>& refreshes;
  prometheus::Counter& refreshed_ok;
  prometheus::Counter& refresh_failed;
  prometheus::Gauge& keys;
  asio::steady_timer wake;      // the refresh interval; cancelled for an early refresh or stop
  asio::steady_timer finished;  // cancelled when the refresh loop has ended
  log::Logger logger;

  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  // steady_clock ticks of the last fetch's start, or of the last accepted early request.
  std::atomic<std::chrono::steady_clock::rep> last_fetch{0};
  // Touched only on the strand:
  bool early_refresh = false;
  bool loop_running = false;
  std::function<void()> cancel_fetch;
};

namespace {

JwksSourceOptions options_from(const config::Config& config) {
  JwksSourceOptions options;
  options.location = config.oidc_jwks;
  options.refresh_interval = config.oidc_jwks_refresh;
  return options;
}

}  // namespace

JwksSource::JwksSource(asio::any_io_executor executor, const config::Config& config,
                       OidcVerifier& verifier, prometheus::Registry& registry)
    : JwksSource(std::move(executor), options_from(config), verifier, registry) {}

JwksSource::JwksSource(asio::any_io_executor executor, JwksSourceOptions options,
                       OidcVerifier& verifier, prometheus::Registry& registry)
    : verifier_(verifier) {
  if (options.location.empty()) throw std::invalid_argument("--oidc-jwks is empty");
  if (is_url(options.location))
    parse_url(options.location);
  else if (options.location.find("://") != std::string::npos &&
           !std::string_view(options.location).starts_with(kFileScheme)) {
    throw std::invalid_argument("--oidc-jwks: use a path, file://, http:// or https://, not " +
                                options.location);
  }
  if (options.refresh_interval <= std::chrono::milliseconds::zero() ||
      options.fetch_timeout <= std::chrono::milliseconds::zero()) {
    throw std::invalid_argument("JWKS refresh interval and fetch timeout must be positive");
  }
  state_ = std::make_shared<State>(std::move(executor), std::move(options), verifier, registry);
}

JwksSource::~JwksSource() {
  verifier_.on_unknown_key({});
  state_->stopping = true;
  asio::post(state_->strand, [state = state_] {
    state->wake.cancel();
    if (state->cancel_fetch) state->cancel_fetch();
  });
}

Task<void> JwksSource::start() {
  auto state = state_;
  const std::string failure =
      co_await asio::co_spawn(state->strand, state->refresh(), asio::use_awaitable);
  if (!failure.empty()) {
    throw std::runtime_error("OIDC keys from '" + state->options.location + "': " + failure);
  }
  log::event(*state->logger, spdlog::level::info, "OIDC keys loaded",
             {{"location", state->options.location},
              {"keys", static_cast<std::uint64_t>(verifier_.keys()->keys().size())}});
  verifier_.on_unknown_key([weak = std::weak_ptr<State>(state_)] {
    if (auto locked = weak.lock()) State::request_refresh(std::move(locked));
  });
  state->started = true;
  state->loop_running = true;
  asio::co_spawn(state->strand, State::run(state), [state](std::exception_ptr error) {
    state->loop_running = false;
    state->finished.cancel();
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        log::event(*state->logger, spdlog::level::err, "JWKS refresh loop failed",
                   {{"reason", e.what()}});
      }
    }
  });
}

Task<void> JwksSource::stop() {
  verifier_.on_unknown_key({});
  co_await asio::co_spawn(state_->strand, State::halt(state_), asio::use_awaitable);
}

bool JwksSource::request_refresh() { return State::request_refresh(state_); }

}  // namespace mesh::auth
