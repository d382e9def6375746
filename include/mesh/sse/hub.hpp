#pragma once
// Server-Sent Events fan-out: channels by product, each event serialized once into a shared
// immutable frame and queued by reference for every subscriber.
//
// Each client has a bounded queue: when it is full the oldest event is dropped (counted in
// mesh_stream_dropped_events_total), so a slow client never stalls the others and never grows
// memory without bound. A client's writer gathers up to kMaxGather queued frames per write.
// One hub timer does the per-client chores: a comment heartbeat to every idle client each
// `heartbeat`, and closing clients whose write has been pending longer than `write_timeout`.
//
// A client may listen to several channels (a session stream: its profile's tasks and tickers),
// start with an event of its own, be told when it ends, and be ended from outside.
//
// Threads: publish(), attach(), close_channel() and stop() may be called from any thread. The hub's
// mutex guards the channel lists; each client's mutex guards its queue and flags; socket operations
// run only on the client's strand (the socket's executor). Lock order: hub, then client.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/ip/tcp.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/http/message.hpp"

namespace mesh::sse {

// A serialized event, shared by every client it is queued for.
using Frame = std::shared_ptr<const std::string>;

// "event: NAME\nid: ID\ndata: LINE\n...\n\n"; a data line per line of `data`, so a newline in
// it cannot end the event early.
std::string format_event(std::string_view event, std::int64_t id, std::string_view data);

inline constexpr std::string_view kHeartbeatFrame = ": heartbeat\n\n";

struct HubOptions {
  std::size_t client_queue = 256;  // frames queued per client beyond the one being written
  std::chrono::milliseconds heartbeat{15'000};
  std::chrono::milliseconds write_timeout{30'000};  // a write pending longer closes the client
  std::size_t max_clients = 10'000;                 // beyond: 503
  // SO_SNDBUF of each client socket. Bounded on purpose: Linux otherwise grows a loopback or
  // fast-path socket's send buffer to megabytes, kernel memory a client that stops reading
  // would pin. 0 keeps the kernel's autotuning.
  int send_buffer = 64 * 1024;
};

// What one client listens to, for Hub::subscribe.
struct Subscription {
  std::vector<std::string> channels;
  // A frame (format_event) written before anything published later; may be empty.
  std::string first_frame;
  // Called once when the client is gone: closed by either side, by close_channel() or stop(),
  // or never attached (the answer was dropped, its head could not be written). Runs on the
  // client's strand or the thread dropping the answer, never under a hub lock.
  std::function<void()> on_end;
};

class Hub {
 public:
  // `executor` runs the hub timer. Metrics are registered in `registry`, which must outlive
  // the hub and its clients.
  Hub(asio::any_io_executor executor, HubOptions options, prometheus::Registry& registry);
  // Stops (closing every client) if stop() was not called.
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Starts the heartbeat and write-deadline timer.
  void start();
  // Closes every client and refuses new ones. Idempotent.
  void stop();

  // The answer to a subscription to `product`: 200 text/event-stream whose take_over attaches
  // the connection as a client, or 503 problem+json when stopped or max_clients are connected (a
  // slot is reserved until the connection is attached or the answer dropped).
  http::Response subscribe(std::string product);

  // The same for a client of several channels, with a first frame and an end callback. On 503
  // the callback has run before this returns.
  http::Response subscribe(Subscription subscription);

  // Ends every client of `channel`: `final_frame` (if not empty) is queued after what is
  // already queued, then the connection closes once it is written (or at the write deadline).
  void close_channel(std::string_view channel, std::string final_frame = {});

  // Attaches a connection whose response head was written. The socket's executor must be a
  // strand (the HTTP server's are) or a single-threaded io_context. Does not check the cap.
  void attach(std::string product, asio::ip::tcp::socket socket);

  // Serializes the event once and queues it for every client of `product`.
  void publish(std::string_view product, std::string_view event, std::int64_t id,
               std::string_view data);

  // True once stopped and every client and the timer let go of the hub's state: from then
  // on nothing of the hub runs on the executor (orderly teardown, tests).
  bool quiescent() const;

  std::size_t clients() const;
  // The longest any client queue has been (never above HubOptions::client_queue).
  std::size_t max_queue_length() const;
  // Events dropped from full client queues, and events written to clients, since the start.
  std::uint64_t dropped() const;
  std::uint64_t delivered() const;

  // Frames gathered into one write at most.
  static constexpr std::size_t kMaxGather = 64;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace mesh::sse
