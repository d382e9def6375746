// The stream fan-out benchmark's clients: opens --clients SSE connections to 127.0.0.1:--port
// (the first --slow of them with a 2 KiB receive buffer and never read: slow clients), reads the
// others with one epoll loop and counts the frames ("\n\n") each receives, until the server
// closes them or --timeout seconds pass. Prints one JSON line. Loopback only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Client {
  int fd = -1;
  bool slow = false;
  bool head_done = false;
  bool open = true;
  char last = 0;  // the last byte seen, for a "\n\n" split across reads
  std::string head;
  long long frames = 0;
};

int connect_client(unsigned short port, bool slow) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (slow) {
    const int size = 2048;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0)
      throw std::runtime_error("SO_RCVBUF failed");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  const std::string request =
      "GET /v1/stream/markets/BTC-USD HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
      "text/event-stream\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size()))
    throw std::runtime_error("send failed");
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
    throw std::runtime_error("O_NONBLOCK failed");
  return fd;
}

void consume(Client& client, const char* data, std::size_t size) {
  std::size_t start = 0;
  if (!client.head_done) {
    client.head.append(data, size);
    const auto end = client.head.find("\r\n\r\n");
    if (end == std::string::npos) return;
    client.head_done = true;
    const std::string rest = client.head.substr(end + 4);
    client.head.resize(end);
    consume(client, rest.data(), rest.size());
    return;
  }
  for (std::size_t i = start; i < size; ++i) {
    if (data[i] == '\n' && client.last == '\n') ++client.frames;
    client.last = data[i];
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::size_t clients = 10'000;
  std::size_t slow = 0;
  double timeout = 120;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (key == "--port") {
      port = static_cast<unsigned short>(std::stoul(value));
    } else if (key == "--clients") {
      clients = std::stoul(value);
    } else if (key == "--slow") {
      slow = std::stoul(value);
    } else if (key == "--timeout") {
      timeout = std::stod(value);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  const int epoll = ::epoll_create1(0);
  if (epoll < 0) {
    std::perror("epoll_create1");
    return 1;
  }
  std::vector<Client> all(clients);
  try {
    for (std::size_t i = 0; i < clients; ++i) {
      all[i].slow = i < slow;
      all[i].fd = connect_client(port, all[i].slow);
      if (all[i].slow) continue;
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.u64 = i;
      if (::epoll_ctl(epoll, EPOLL_CTL_ADD, all[i].fd, &event) != 0)
        throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sse_load: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "sse_load: %zu clients connected (%zu slow)\n", clients, slow);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  std::size_t open_fast = clients - slow;
  std::vector<epoll_event> events(1024);
  std::vector<char> buffer(256 * 1024);
  while (open_fast > 0 && std::chrono::steady_clock::now() < deadline) {
    const int ready = ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      std::perror("epoll_wait");
      return 1;
    }
    for (int e = 0; e < ready; ++e) {
      auto& client = all[events[e].data.u64];
      while (true) {
        const ssize_t n = ::read(client.fd, buffer.data(), buffer.size());
        if (n > 0) {
          consume(client, buffer.data(), static_cast<std::size_t>(n));
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        client.open = false;
        ::close(client.fd);
        --open_fast;
        break;
      }
    }
  }
  long long total = 0;
  long long fast_min = -1;
  long long fast_max = 0;
  long long bad_heads = 0;
  for (const auto& client : all) {
    if (client.slow) continue;
    total += client.frames;
    fast_min = fast_min < 0 ? client.frames : std::min(fast_min, client.frames);
    fast_max = std::max(fast_max, client.frames);
    if (client.head.rfind("HTTP/1.1 200", 0) != 0) ++bad_heads;
  }
  std::printf(
      "{\"clients\":%zu,\"slow\":%zu,\"fast_frames_total\":%lld,\"fast_frames_min\":%lld,"
      "\"fast_frames_max\":%lld,\"bad_heads\":%lld,\"open_at_end\":%zu}\n",
      clients, slow, total, fast_min, fast_max, bad_heads, open_fast);
  return 0;
}
