#include "mesh/testing/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

#include <array>
#include <functional>

namespace mesh::testing {
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

std::optional<std::string> HttpReply::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

boost::json::value HttpReply::json() const { return boost::json::parse(body); }

HttpReply http(unsigned short port, const HttpCall& call) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(call.timeout);
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  bhttp::request<bhttp::string_body> request{bhttp::string_to_verb(call.method), call.target, 11};
  if (request.method() == bhttp::verb::unknown) request.method_string(call.method);
  request.set(bhttp::field::host, "127.0.0.1");
  for (const auto& [name, value] : call.headers) request.set(name, value);
  request.body() = call.body;
  request.prepare_payload();
  bhttp::write(stream, request);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  if (call.method == "HEAD") parser.skip(true);
  bhttp::read(stream, buffer, parser);
  auto response = parser.release();
  HttpReply reply;
  reply.status = response.result_int();
  for (const auto& field : response) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    reply.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  reply.body = std::move(response.body());
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return reply;
}

HttpReply http_json(unsigned short port, std::string method, std::string target,
                    const std::string& body, const std::string& token,
                    std::vector<std::pair<std::string, std::string>> headers) {
  HttpCall call;
  call.method = std::move(method);
  call.target = std::move(target);
  call.body = body;
  call.headers = std::move(headers);
  if (!body.empty()) call.headers.emplace_back("Content-Type", "application/json");
  if (!token.empty()) call.headers.emplace_back("Authorization", "Bearer " + token);
  return http(port, call);
}

RawReply raw_exchange(unsigned short port, const std::string& bytes,
                      std::chrono::milliseconds timeout, bool close_send) {
  boost::asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  RawReply reply;
  boost::asio::async_write(socket, boost::asio::buffer(bytes),
                           [&socket, close_send](boost::system::error_code, std::size_t) {
                             boost::system::error_code ignored;
                             if (close_send) socket.shutdown(tcp::socket::shutdown_send, ignored);
                           });
  std::array<char, 4096> chunk{};
  std::function<void()> read_more = [&] {
    socket.async_read_some(boost::asio::buffer(chunk),
                           [&](boost::system::error_code ec, std::size_t n) {
                             reply.bytes.append(chunk.data(), n);
                             if (!ec) read_more();
                           });
  };
  read_more();
  io.run_for(timeout);
  reply.timed_out = !io.stopped();
  return reply;
}

IoThread::IoThread(unsigned threads) : guard_(io_.get_executor()) {
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
}

IoThread::~IoThread() {
  guard_.reset();
  io_.stop();
  for (auto& thread : threads_) thread.join();
}

}  // namespace mesh::testing
