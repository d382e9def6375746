#include "support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include "mesh/metrics/metrics.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::sse::test {

SseClient::SseClient(unsigned short port, const std::string& target, int receive_buffer,
                     bool read) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (receive_buffer > 0 &&
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)) != 0) {
    throw std::runtime_error(std::string("SO_RCVBUF: ") + std::strerror(errno));
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error("connect: " + error);
  }
  const std::string request =
      "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
  if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd_);
    throw std::runtime_error("send failed");
  }
  if (read) start_reading();
}

SseClient::~SseClient() { close(); }

void SseClient::start_reading() {
  if (!reader_.joinable()) reader_ = std::thread([this] { read_loop(); });
}

void SseClient::close() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void SseClient::read_loop() {
  std::vector<char> buffer(64 * 1024);
  while (!stop_) {
    pollfd entry{fd_, POLLIN, 0};
    const int ready = ::poll(&entry, 1, 20);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    std::lock_guard lock(mutex_);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      closed_ = true;
      changed_.notify_all();
      return;
    }
    pending_.append(buffer.data(), static_cast<std::size_t>(n));
    parse();
    changed_.notify_all();
  }
}

void SseClient::parse() {
  if (!head_done_) {
    const auto end = pending_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    head_ = pending_.substr(0, end + 4);
    pending_.erase(0, end + 4);
    head_done_ = true;
  }
  if (head_.find("text/event-stream") == std::string::npos) {
    body_ += pending_;
    pending_.clear();
    return;
  }
  std::size_t start = 0;
  while (true) {
    const auto end = pending_.find("\n\n", start);
    if (end == std::string::npos) break;
    const std::string_view frame(pending_.data() + start, end - start + 1);
    start = end + 2;
    if (frame.starts_with(":")) {
      ++heartbeats_;
      continue;
    }
    Event event;
    std::size_t line_start = 0;
    while (line_start < frame.size()) {
      const auto line_end = frame.find('\n', line_start);
      const auto line = frame.substr(line_start, line_end - line_start);
      line_start = line_end + 1;
      if (line.starts_with("event: ")) {
        event.name = line.substr(7);
      } else if (line.starts_with("id: ")) {
        event.id = line.substr(4);
      } else if (line.starts_with("data: ")) {
        if (!event.data.empty()) event.data += '\n';
        event.data += line.substr(6);
      }
    }
    events_.push_back(std::move(event));
  }
  pending_.erase(0, start);
}

bool SseClient::wait_head(std::chrono::milliseconds timeout) {
  return wait([](const SseClient& client) { return !client.head_.empty() || client.closed_; },
              timeout) &&
         !head().empty();
}

bool SseClient::wait(const std::function<bool(const SseClient&)>& done,
                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return done(*this); });
}

unsigned SseClient::status() const {
  std::lock_guard lock(mutex_);
  if (head_.size() < 12) return 0;
  return static_cast<unsigned>(std::stoul(head_.substr(9, 3)));
}

std::string SseClient::head() const {
  std::lock_guard lock(mutex_);
  return head_;
}

std::vector<Event> SseClient::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::size_t SseClient::event_count() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}

std::size_t SseClient::heartbeats() const {
  std::lock_guard lock(mutex_);
  return heartbeats_;
}

bool SseClient::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

HubServer::HubServer(HubOptions options) : registry_(metrics::make_registry()) {
  hub_ = std::make_unique<Hub>(io_.io().get_executor(), options, *registry_);
  hub_->start();
  auto router = std::make_shared<http::Router>();
  router->add("GET", "/v1/stream/markets/{product}",
              [this](http::Request& request) -> Task<http::Response> {
                const std::string product(request.param("product"));
                if (product == "NOPE-USD") co_return http::problem(404, "no such product");
                co_return hub_->subscribe(product);
              });
  http::ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_ =
      std::make_unique<http::Server>(io_.io().get_executor(), server_options, router, *registry_);
  server_->start();
  port_ = server_->local_endpoint().port();
}

HubServer::~HubServer() {
  hub_->stop();
  asio::co_spawn(io_.io(), server_->stop(std::chrono::seconds(5)), asio::use_future).get();
  testing::wait_until([this] { return hub_->quiescent(); });
}

unsigned short closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace mesh::sse::test
