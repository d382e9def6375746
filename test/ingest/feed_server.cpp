#include "feed_server.hpp"

#include <cstdlib>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace mesh::ingest::test {
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

Certificate make_certificate(const std::filesystem::path& directory, const std::string& host) {
  std::filesystem::create_directories(directory);
  Certificate out{directory / (host + ".crt"), directory / (host + ".key")};
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -keyout "
      "'" +
      out.key.string() + "' -out '" + out.certificate.string() + "' -subj '/CN=" + host +
      "' -addext 'subjectAltName=DNS:" + host + "' 2>/dev/null";
  if (std::system(command.c_str()) != 0) {
    throw std::runtime_error("openssl could not make a certificate: " + command);
  }
  return out;
}

struct FeedConnection::Impl {
  virtual ~Impl() = default;
  virtual Task<std::optional<std::string>> read() = 0;
  virtual Task<bool> send(std::string message, bool text) = 0;
  virtual void drop() = 0;
};

namespace {

template <class Stream>
struct Connection : FeedConnection::Impl {
  template <class... Args>
  explicit Connection(Args&&... args) : ws(std::forward<Args>(args)...) {}

  Task<std::optional<std::string>> read() override {
    beast::flat_buffer buffer;
    error_code ec;
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return std::nullopt;
    co_return beast::buffers_to_string(buffer.cdata());
  }

  Task<bool> send(std::string message, bool text) override {
    ws.text(text);
    error_code ec;
    co_await ws.async_write(asio::buffer(message), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  void drop() override {
    error_code ignored;
    beast::get_lowest_layer(ws).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws).close();
  }

  websocket::stream<Stream> ws;
};

}  // namespace

FeedConnection::FeedConnection(std::unique_ptr<Impl> impl, std::size_t index)
    : impl_(std::move(impl)), index_(index) {}
FeedConnection::~FeedConnection() = default;

Task<std::optional<std::string>> FeedConnection::read() {
  auto message = co_await impl_->read();
  co_return message;
}
Task<bool> FeedConnection::send(std::string message) {
  const bool sent = co_await impl_->send(std::move(message), true);
  co_return sent;
}
Task<bool> FeedConnection::send_binary(std::string message) {
  const bool sent = co_await impl_->send(std::move(message), false);
  co_return sent;
}
void FeedConnection::drop() { impl_->drop(); }
Task<void> FeedConnection::wait_closed() {
  while (true) {
    auto message = co_await impl_->read();
    if (!message) break;
  }
}

struct FeedServer::State {
  State(asio::io_context& io, Script script) : acceptor(io), script(std::move(script)) {}
  tcp::acceptor acceptor;
  Script script;
  std::optional<ssl::context> tls;
  std::string scheme = "ws";
  unsigned short port = 0;
  std::size_t connections = 0;
  std::vector<std::string> subscribes;
  std::vector<std::weak_ptr<FeedConnection>> live;
  bool stopped = false;
};

namespace {

template <class Stream>
Task<void> serve(std::shared_ptr<FeedServer::State> state,
                 std::unique_ptr<Connection<Stream>> connection, std::size_t index) {
  auto& ws = connection->ws;
  error_code ec;
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    co_await ws.next_layer().async_handshake(ssl::stream_base::server,
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
  co_await ws.async_accept(asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  auto feed = std::make_shared<FeedConnection>(std::move(connection), index);
  state->live.push_back(feed);
  auto subscribe = co_await feed->read();
  if (!subscribe) co_return;
  state->subscribes.push_back(*subscribe);
  if (state->stopped) co_return;
  co_await state->script(*feed);
  feed->drop();
}

Task<void> accept_loop(std::shared_ptr<FeedServer::State> state) {
  while (true) {
    error_code ec;
    auto socket =
        co_await state->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || state->stopped) co_return;
    const std::size_t index = state->connections++;
    auto executor = state->acceptor.get_executor();
    if (state->tls) {
      using Stream = beast::ssl_stream<beast::tcp_stream>;
      auto connection = std::make_unique<Connection<Stream>>(std::move(socket), *state->tls);
      asio::co_spawn(executor, serve<Stream>(state, std::move(connection), index), asio::detached);
    } else {
      using Stream = beast::tcp_stream;
      auto connection = std::make_unique<Connection<Stream>>(std::move(socket));
      asio::co_spawn(executor, serve<Stream>(state, std::move(connection), index), asio::detached);
    }
  }
}

}  // namespace

FeedServer::FeedServer(asio::io_context& io, Script script, std::optional<Certificate> tls)
    : state_(std::make_shared<State>(io, std::move(script))) {
  if (tls) {
    state_->tls.emplace(ssl::context::tls_server);
    state_->tls->use_certificate_chain_file(tls->certificate.string());
    state_->tls->use_private_key_file(tls->key.string(), ssl::context::pem);
    state_->scheme = "wss";
  }
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  state_->acceptor.open(endpoint.protocol());
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  state_->acceptor.bind(endpoint);
  state_->acceptor.listen();
  state_->port = state_->acceptor.local_endpoint().port();
  asio::co_spawn(io, accept_loop(state_), asio::detached);
}

FeedServer::~FeedServer() { stop(); }

std::string FeedServer::url() const {
  return state_->scheme + "://localhost:" + std::to_string(state_->port);
}

std::size_t FeedServer::connections() const { return state_->connections; }
std::vector<std::string> FeedServer::subscribes() const { return state_->subscribes; }

void FeedServer::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  error_code ignored;
  state_->acceptor.close(ignored);
  for (auto& weak : state_->live) {
    if (auto connection = weak.lock()) connection->drop();
  }
}

}  // namespace mesh::ingest::test
