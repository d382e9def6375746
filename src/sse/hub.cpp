#include "mesh/sse/hub.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include "mesh/core/log.hpp"

namespace mesh::sse {
namespace {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

void append_line_fields(std::string& out, std::string_view data) {
  // Any of CR LF, LF or CR ends a line in an event stream.
  while (true) {
    const auto end = data.find_first_of("\r\n");
    out += "data: ";
    out += data.substr(0, end);
    out += '\n';
    if (end == std::string_view::npos) return;
    const bool crlf = data[end] == '\r' && end + 1 < data.size() && data[end + 1] == '\n';
    data.remove_prefix(end + (crlf ? 2 : 1));
  }
}

struct HubMetrics {
  explicit HubMetrics(prometheus::Registry& registry)
      : connections(prometheus::BuildGauge()
                        .Name("mesh_stream_connections")
                        .Help("Open Server-Sent Events connections.")
                        .Register(registry)
                        .Add({})),
        dropped(prometheus::BuildCounter()
                    .Name("mesh_stream_dropped_events_total")
                    .Help("Events dropped from the full queue of a slow client (oldest first).")
                    .Register(registry)
                    .Add({})),
        delivered(prometheus::BuildCounter()
                      .Name("mesh_stream_delivered_events_total")
                      .Help("Events written to clients (heartbeats not counted).")
                      .Register(registry)
                      .Add({})),
        rejected(prometheus::BuildCounter()
                     .Name("mesh_stream_rejected_connections_total")
                     .Help("Subscriptions refused with 503 because the client cap was reached.")
                     .Register(registry)
                     .Add({})),
        write_timeouts(prometheus::BuildCounter()
                           .Name("mesh_stream_write_timeouts_total")
                           .Help("Clients closed because a write stayed pending too long.")
                           .Register(registry)
                           .Add({})) {}

  prometheus::Gauge& connections;
  prometheus::Counter& dropped;
  prometheus::Counter& delivered;
  prometheus::Counter& rejected;
  prometheus::Counter& write_timeouts;
};

}  // namespace

std::string format_event(std::string_view event, std::int64_t id, std::string_view data) {
  std::string out;
  out.reserve(event.size() + data.size() + 40);
  out += "event: ";
  out += event;
  out += "\nid: ";
  out += std::to_string(id);
  out += '\n';
  append_line_fields(out, data);
  out += '\n';
  return out;
}

struct Hub::State : std::enable_shared_from_this<Hub::State> {
  struct Client;

  // A cap slot held by a subscription until its connection is attached or the answer dropped.
  struct Slot {
    explicit Slot(std::shared_ptr<State> state) : state(std::move(state)) {}
    ~Slot() {
      if (!attached) --state->slots;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    const std::shared_ptr<State> state;
    bool attached = false;
  };

  State(asio::any_io_executor executor, HubOptions options, prometheus::Registry& registry)
      : options(options),
        timer(asio::make_strand(executor)),
        metrics(registry),
        heartbeat(std::make_shared<const std::string>(kHeartbeatFrame)),
        logger(log::get("sse")) {}

  void add(std::shared_ptr<Client> client);
  void remove(Client& client);
  void tick();
  void schedule_tick();
  void note_queue_length(std::size_t length) {
    auto seen = max_queue_length.load(std::memory_order_relaxed);
    while (length > seen && !max_queue_length.compare_exchange_weak(seen, length)) {
    }
  }

  const HubOptions options;
  asio::steady_timer timer;
  HubMetrics metrics;
  const Frame heartbeat;
  log::Logger logger;
  // Clients attached plus subscriptions answered but not attached yet: the cap applies to both.
  std::atomic<std::size_t> slots{0};
  std::atomic<std::size_t> max_queue_length{0};

  mutable std::mutex mutex;
  bool stopped = false;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Client>>> channels;
  std::size_t attached = 0;
  Clock::time_point next_heartbeat{};
};

struct Hub::State::Client : std::enable_shared_from_this<Client> {
  Client(std::shared_ptr<State> hub, std::string product, tcp::socket socket)
      : hub(std::move(hub)), product(std::move(product)), socket(std::move(socket)) {}

  // Queues `frame`, dropping the oldest when full. Under the hub mutex. True when the caller
  // must post write_next() (no write was scheduled).
  bool enqueue(const Frame& frame, std::size_t& dropped_events) {
    std::lock_guard lock(mutex);
    if (closed) return false;
    if (queue.size() >= hub->options.client_queue) {
      if (queue.front() != hub->heartbeat) ++dropped_events;
      queue.pop_front();
    }
    queue.push_back(frame);
    hub->note_queue_length(queue.size());
    return start_writing();
  }

  // Under `mutex`.
  bool start_writing() {
    if (writing) return false;
    writing = true;
    write_started = Clock::now();
    return true;
  }

  void post_write() {
    asio::post(socket.get_executor(), [self = shared_from_this()] { self->write_next(); });
  }

  void post_close() {
    asio::post(socket.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  // On the strand.
  void write_next() {
    {
      std::lock_guard lock(mutex);
      if (closed || queue.empty()) {
        writing = false;
        return;
      }
      batch_size = std::min(queue.size(), kMaxGather);
      for (std::size_t i = 0; i < batch_size; ++i) {
        batch[i] = std::move(queue.front());
        queue.pop_front();
      }
      write_started = Clock::now();
    }
    for (std::size_t i = 0; i < batch_size; ++i) buffers[i] = asio::buffer(*batch[i]);
    asio::async_write(
        socket, std::span<const asio::const_buffer>(buffers.data(), batch_size),
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_written(ec); });
  }

  void on_written(const error_code& ec) {
    std::size_t events = 0;
    for (std::size_t i = 0; i < batch_size; ++i) {
      if (batch[i] != hub->heartbeat) ++events;
      batch[i].reset();
    }
    batch_size = 0;
    if (ec) {
      close();
      return;
    }
    if (events > 0) hub->metrics.delivered.Increment(static_cast<double>(events));
    write_next();
  }

  // The client never sends anything after its request; reading notices a disconnect at once
  // instead of at the next write.
  void read_next() {
    socket.async_read_some(asio::buffer(discard),
                           [self = shared_from_this()](const error_code& ec, std::size_t) {
                             if (ec) {
                               self->close();
                             } else {
                               self->read_next();
                             }
                           });
  }

  // On the strand.
  void close() {
    {
      std::lock_guard lock(mutex);
      if (closed) return;
      closed = true;
      queue.clear();
    }
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    hub->remove(*this);
  }

  const std::shared_ptr<State> hub;
  const std::string product;
  tcp::socket socket;
  std::size_t index = 0;  // position in its channel, under the hub mutex

  std::mutex mutex;
  std::deque<Frame> queue;
  bool writing = false;  // a write is posted or pending
  bool closed = false;
  Clock::time_point write_started{};

  // Only on the strand.
  std::array<Frame, kMaxGather> batch;
  std::size_t batch_size = 0;
  std::array<asio::const_buffer, kMaxGather> buffers;
  std::array<char, 64> discard{};
};

void Hub::State::add(std::shared_ptr<Client> client) {
  // Best effort: a socket option the kernel refuses leaves the default, which still works.
  error_code ignored;
  client->socket.set_option(tcp::no_delay(true), ignored);
  if (options.send_buffer > 0)
    client->socket.set_option(asio::socket_base::send_buffer_size(options.send_buffer), ignored);
  {
    std::lock_guard lock(mutex);
    if (!stopped) {
      auto& list = channels[client->product];
      client->index = list.size();
      list.push_back(client);
      ++attached;
      metrics.connections.Increment();
      asio::post(client->socket.get_executor(), [client] { client->read_next(); });
      return;
    }
  }
  --slots;
  client->socket.close(ignored);
}

void Hub::State::remove(Client& client) {
  std::lock_guard lock(mutex);
  const auto it = channels.find(client.product);
  if (it == channels.end()) return;
  auto& list = it->second;
  if (client.index >= list.size() || list[client.index].get() != &client) return;
  if (client.index + 1 != list.size()) {
    std::swap(list[client.index], list.back());
    list[client.index]->index = client.index;
  }
  list.pop_back();
  if (list.empty()) channels.erase(it);
  --attached;
  --slots;
  metrics.connections.Decrement();
}

void Hub::State::schedule_tick() {
  const auto period =
      std::min({options.heartbeat, options.write_timeout / 4, std::chrono::milliseconds(1000)});
  timer.expires_after(std::max(period, std::chrono::milliseconds(1)));
  timer.async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec) return;
    self->tick();
  });
}

void Hub::State::tick() {
  const auto now = Clock::now();
  std::size_t timed_out = 0;
  {
    std::lock_guard lock(mutex);
    if (stopped) return;
    const bool heartbeat_due = now >= next_heartbeat;
    if (heartbeat_due) next_heartbeat = now + options.heartbeat;
    for (auto& [product, list] : channels) {
      for (auto& client : list) {
        bool post_write = false;
        bool post_close = false;
        {
          std::lock_guard client_lock(client->mutex);
          if (client->closed) continue;
          if (client->writing) {
            post_close = now - client->write_started > options.write_timeout;
          } else if (heartbeat_due) {
            // Only idle clients: a client receiving events needs no keep-alive.
            client->queue.push_back(heartbeat);
            post_write = client->start_writing();
          }
        }
        if (post_close) {
          ++timed_out;
          client->post_close();
        }
        if (post_write) client->post_write();
      }
    }
  }
  if (timed_out > 0) {
    metrics.write_timeouts.Increment(static_cast<double>(timed_out));
    logger->info("closed {} stream clients whose writes were pending over {} ms", timed_out,
                 options.write_timeout.count());
  }
  schedule_tick();
}

Hub::Hub(asio::any_io_executor executor, HubOptions options, prometheus::Registry& registry)
    : state_(std::make_shared<State>(executor, options, registry)) {
  if (options.client_queue == 0) throw std::invalid_argument("sse: client queue must be > 0");
  if (options.heartbeat.count() <= 0 || options.write_timeout.count() <= 0)
    throw std::invalid_argument("sse: heartbeat and write timeout must be positive");
}

Hub::~Hub() { stop(); }

void Hub::start() {
  {
    std::lock_guard lock(state_->mutex);
    state_->next_heartbeat = Clock::now() + state_->options.heartbeat;
  }
  asio::post(state_->timer.get_executor(), [state = state_] { state->schedule_tick(); });
}

void Hub::stop() {
  std::unordered_map<std::string, std::vector<std::shared_ptr<State::Client>>> channels;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopped) return;
    state_->stopped = true;
    channels.swap(state_->channels);
    state_->metrics.connections.Decrement(static_cast<double>(state_->attached));
    state_->slots -= state_->attached;
    state_->attached = 0;
  }
  asio::post(state_->timer.get_executor(), [state = state_] { state->timer.cancel(); });
  for (auto& [product, list] : channels) {
    for (auto& client : list) client->post_close();
  }
}

http::Response Hub::subscribe(std::string product) {
  auto state = state_;
  {
    std::lock_guard lock(state->mutex);
    if (state->stopped) return http::problem(503, "the stream is shutting down");
  }
  auto taken = state->slots.load();
  do {
    if (taken >= state->options.max_clients) {
      state->metrics.rejected.Increment();
      auto response = http::problem(503, "too many stream clients; retry later");
      response.set_header("Retry-After", "5");
      return response;
    }
  } while (!state->slots.compare_exchange_weak(taken, taken + 1));
  auto slot = std::make_shared<State::Slot>(state);

  http::Response response;
  response.status = 200;
  response.content_type = "text/event-stream";
  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");
  response.take_over = [state, slot, product = std::move(product)](tcp::socket socket) {
    slot->attached = true;
    state->add(std::make_shared<State::Client>(state, product, std::move(socket)));
  };
  return response;
}

void Hub::attach(std::string product, asio::ip::tcp::socket socket) {
  ++state_->slots;
  state_->add(std::make_shared<State::Client>(state_, std::move(product), std::move(socket)));
}

void Hub::publish(std::string_view product, std::string_view event, std::int64_t id,
                  std::string_view data) {
  const auto frame = std::make_shared<const std::string>(format_event(event, id, data));
  std::size_t dropped_events = 0;
  {
    std::lock_guard lock(state_->mutex);
    const auto it = state_->channels.find(std::string(product));
    if (it == state_->channels.end()) return;
    for (auto& client : it->second) {
      if (client->enqueue(frame, dropped_events)) client->post_write();
    }
  }
  if (dropped_events > 0) state_->metrics.dropped.Increment(static_cast<double>(dropped_events));
}

bool Hub::quiescent() const {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->stopped) return false;
  }
  return state_.use_count() == 1;
}

std::size_t Hub::clients() const {
  std::lock_guard lock(state_->mutex);
  return state_->attached;
}

std::size_t Hub::max_queue_length() const { return state_->max_queue_length.load(); }

std::uint64_t Hub::dropped() const {
  return static_cast<std::uint64_t>(state_->metrics.dropped.Value());
}

std::uint64_t Hub::delivered() const {
  return static_cast<std::uint64_t>(state_->metrics.delivered.Value());
}

}  // namespace mesh::sse
