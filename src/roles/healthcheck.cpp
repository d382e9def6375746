#include "mesh/roles/healthcheck.hpp"

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mesh/http/url.hpp"

namespace mesh::roles {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

// One GET on a fresh connection; the stream's expiry bounds every step. Returns the status.
asio::awaitable<unsigned> probe(http::Url target, std::chrono::milliseconds timeout) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);
  const auto endpoints =
      co_await resolver.async_resolve(target.host, target.port, asio::use_awaitable);
  co_await stream.async_connect(endpoints, asio::use_awaitable);
  bhttp::request<bhttp::empty_body> request(bhttp::verb::get, target.target, 11);
  request.set(bhttp::field::host, target.authority);
  request.set(bhttp::field::user_agent, "mesh-healthcheck");
  request.set(bhttp::field::connection, "close");
  co_await bhttp::async_write(stream, request, asio::use_awaitable);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024);
  co_await bhttp::async_read(stream, buffer, parser, asio::use_awaitable);
  co_return parser.get().result_int();
}

}  // namespace

std::string default_probe_url(std::string_view listen) {
  std::string_view port = "8080";
  if (const auto colon = listen.rfind(':'); colon != std::string_view::npos) {
    const auto candidate = listen.substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] =
        std::from_chars(candidate.data(), candidate.data() + candidate.size(), value);
    if (ec == std::errc{} && end == candidate.data() + candidate.size() && value > 0 &&
        value <= 65535) {
      port = candidate;
    }
  }
  return "http://127.0.0.1:" + std::string(port) + "/readyz";
}

int run_healthcheck(const std::vector<std::string>& args) {
  const char* listen = std::getenv("MESH_LISTEN");
  std::string url = default_probe_url(listen != nullptr ? listen : "");
  unsigned timeout_ms = 3000;
  CLI::App app{"mesh healthcheck: exit 0 when URL answers 200 (the container HEALTHCHECK)",
               "mesh healthcheck"};
  app.add_option("url", url, "URL to GET (default: loopback, the port of MESH_LISTEN, /readyz)");
  app.add_option("--timeout-ms", timeout_ms, "Deadline of the whole probe")
      ->check(CLI::Range(1U, 600'000U));
  std::vector<const char*> argv;
  argv.push_back(args.front().c_str());
  for (std::size_t i = 2; i < args.size(); ++i) argv.push_back(args[i].c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  try {
    const auto target = http::parse_url(url);
    if (target.tls) throw std::invalid_argument("not an http:// URL: " + url);
    asio::io_context io;
    const std::chrono::milliseconds timeout(timeout_ms);
    unsigned status = 0;
    bool finished = false;
    std::exception_ptr failure;
    asio::co_spawn(io, probe(target, timeout), [&](std::exception_ptr error, unsigned result) {
      finished = true;
      failure = error;
      status = result;
    });
    // The stream's expiry bounds connect, write and read; this also bounds name resolution.
    io.run_for(timeout);
    if (!finished)
      throw std::runtime_error("no answer within " + std::to_string(timeout_ms) + " ms");
    if (failure) std::rethrow_exception(failure);
    if (status != 200) {
      std::cerr << "healthcheck: " << url << " answered " << status << "\n";
      return 1;
    }
    return 0;
  } catch (const boost::system::system_error& error) {
    // what() carries the source location of the failing Asio call; the reason is enough.
    std::cerr << "healthcheck: " << url << ": " << error.code().message() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "healthcheck: " << url << ": " << error.what() << "\n";
    return 1;
  }
}

}  // namespace mesh::roles
