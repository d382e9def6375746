#pragma once
// One websocket connection to the exchange feed (ws:// or wss://), and the reconnect backoff.
// The Beast and OpenSSL code stays in websocket.cpp; nothing here needs their headers.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "mesh/core/asio.hpp"

namespace mesh::ingest {

struct FeedUrl {
  bool tls = false;
  std::string host;
  std::string port;    // "443" / "80" by default
  std::string target;  // "/" by default
};

// Parses ws://host[:port][/path] and wss://...; nullopt for anything else.
std::optional<FeedUrl> parse_feed_url(std::string_view url);

struct ConnectionOptions {
  std::string subscribe;  // sent right after the handshake
  std::string ca_file;    // extra trusted CA certificates (PEM), besides the system store
  std::chrono::milliseconds resolve_timeout{5000};
  std::chrono::milliseconds connect_timeout{5000};
  // From the TCP connection to the subscribe request written: TLS and websocket handshakes.
  std::chrono::milliseconds handshake_timeout{5000};
  // No frame for this long: the connection is closed.
  std::chrono::milliseconds silence_timeout{30'000};
  std::size_t read_message_max = 1024 * 1024;
};

enum class ConnectionEnd {
  stopped,         // the cancel hook was called
  resolve_failed,  // including a timeout
  connect_failed,
  handshake_failed,  // TLS (certificate, host name) or websocket
  silence,           // no frame within silence_timeout
  too_big,           // a frame above read_message_max
  closed,            // the server closed or the connection broke
  refused,           // on_message asked to reconnect
};
std::string_view to_string(ConnectionEnd end);

struct ConnectionResult {
  ConnectionEnd end;
  std::string detail;
  bool connected = false;  // the subscribe request was sent
};

// Connects, subscribes and hands every frame to `on_message` until the connection ends, which
// is never an exception. on_message returns false to end the connection (an exchange error).
// `on_connected` is called once the subscribe request is written. While it runs, `cancel`
// holds a function that aborts it (call it on the executor of the awaiting coroutine); it is
// reset before returning.
Task<ConnectionResult> run_connection(const FeedUrl& url, const ConnectionOptions& options,
                                      std::function<void()>& cancel,
                                      const std::function<void()>& on_connected,
                                      const std::function<bool(std::string_view)>& on_message);

// Jittered exponential backoff ("full jitter"): each delay is uniform in [0, ceiling], the
// ceiling doubling from `initial` up to `max`; reset() after a connection delivered data.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max);
  std::chrono::milliseconds next();
  void reset();
  std::chrono::milliseconds ceiling() const { return ceiling_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds ceiling_;
  std::mt19937_64 random_;
};

}  // namespace mesh::ingest
