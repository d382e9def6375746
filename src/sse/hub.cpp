#include "mesh/sse/hub.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <span>
#include <unordered_map>
#include <utility>
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
    Slot(std::shared_ptr<State> state, std::function<void()> on_end)
        : state(std::move(state)), on_end(std::move(on_end)) {}
    ~Slot() {
      if (attached) return;
      --state->slots;
      if (on_end) on_end();
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    const std::shared_ptr<State> state;
    std::function<void()> on_end;  // moved to the client when attached
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
  std::vector<std::shared_ptr<Client>> all;  // every attached client once
  std::size_t attached = 0;
  Clock::time_point next_heartbeat{};
};

struct Hub::State::Client : std::enable_shared_from_this<Client> {
  Client(std::shared_ptr<State> hub, std::vector<std::string> channels, tcp::socket socket,
         std::function<void()> on_end = {})
      : hub(std::move(hub)),
        channels(std::move(channels)),
        indexes(this->channels.size()),
        socket(std::move(socket)),
        on_end(std::move(on_end)) {}

  // Queues `frame`, dropping the oldest when full. Under the hub mutex. True when the caller
  // must post write_next() (no write was scheduled).
  bool enqueue(const Frame& frame, std::size_t& dropped_events) {
    std::lock_guard lock(mutex);
    if (closed || close_after_flush) return false;
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

  // Runs the end callback once.
  void finish() {
    if (auto callback = std::exchange(on_end, nullptr)) callback();
  }

  // On the strand.
  void write_next() {
    {
      std::lock_guard lock(mutex);
      // A client ending after its queue keeps `writing` set: nothing may start another write.
      if (closed || (queue.empty() && !close_after_flush)) {
        writing = false;
        return;
      }
    }
    if (!write_batch()) close();
  }

  // On the strand. False when the queue was empty (the client is ending).
  bool write_batch() {
    {
      std::lock_guard lock(mutex);
      if (queue.empty()) return false;
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
    return true;
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
    finish();
  }

  const std::shared_ptr<State> hub;
  const std::vector<std::string> channels;
  std::vector<std::size_t> indexes;  // position in each channel's list, under the hub mutex
  std::size_t all_index = 0;         // position in State::all, under the hub mutex
  tcp::socket socket;
  std::function<void()> on_end;  // on the strand (or before attaching)

  std::mutex mutex;
  std::deque<Frame> queue;
  bool writing = false;  // a write is posted or pending
  bool closed = false;
  bool close_after_flush = false;  // close_channel(): close once the queue is written
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
      for (std::size_t i = 0; i < client->channels.size(); ++i) {
        auto& list = channels[client->channels[i]];
        client->indexes[i] = list.size();
        list.push_back(client);
      }
      client->all_index = all.size();
      all.push_back(client);
      ++attached;
      metrics.connections.Increment();
      bool post_write = false;
      {
        std::lock_guard client_lock(client->mutex);
        if (!client->queue.empty()) post_write = client->start_writing();
      }
      asio::post(client->socket.get_executor(), [client, post_write] {
        client->read_next();
        if (post_write) client->write_next();
      });
      return;
    }
  }
  --slots;
  client->socket.close(ignored);
  client->finish();
}

void Hub::State::remove(Client& client) {
  std::lock_guard lock(mutex);
  // After stop() the lists were handed over: nothing to remove.
  if (client.all_index >= all.size() || all[client.all_index].get() != &client) return;
  for (std::size_t i = 0; i < client.channels.size(); ++i) {
    const auto it = channels.find(client.channels[i]);
    if (it == channels.end()) continue;
    auto& list = it->second;
    const std::size_t index = client.indexes[i];
    if (index + 1 != list.size()) {
      std::swap(list[index], list.back());
      auto& moved = *list[index];
      const auto position = std::find(moved.channels.begin(), moved.channels.end(), it->first);
      moved.indexes[static_cast<std::size_t>(position - moved.channels.begin())] = index;
    }
    list.pop_back();
    if (list.empty()) channels.erase(it);
  }
  if (client.all_index + 1 != all.size()) {
    std::swap(all[client.all_index], all.back());
    all[client.all_index]->all_index = client.all_index;
  }
  all.pop_back();
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
    for (auto& client : all) {
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
  std::vector<std::shared_ptr<State::Client>> clients;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopped) return;
    state_->stopped = true;
    state_->channels.clear();
    clients.swap(state_->all);
    state_->metrics.connections.Decrement(static_cast<double>(state_->attached));
    state_->slots -= state_->attached;
    state_->attached = 0;
  }
  asio::post(state_->timer.get_executor(), [state = state_] { state->timer.cancel(); });
  for (auto& client : clients) client->post_close();
}

http::Response Hub::subscribe(std::string product) {
  Subscription subscription;
  subscription.channels.push_back(std::move(product));
  return subscribe(std::move(subscription));
}

http::Response Hub::subscribe(Subscription subscription) {
  auto state = state_;
  bool stopped = false;
  {
    std::lock_guard lock(state->mutex);
    stopped = state->stopped;
  }
  if (stopped) {
    if (subscription.on_end) subscription.on_end();
    return http::problem(503, "the stream is shutting down");
  }
  auto taken = state->slots.load();
  do {
    if (taken >= state->options.max_clients) {
      state->metrics.rejected.Increment();
      if (subscription.on_end) subscription.on_end();
      auto response = http::problem(503, "too many stream clients; retry later");
      response.set_header("Retry-After", "5");
      return response;
    }
  } while (!state->slots.compare_exchange_weak(taken, taken + 1));
  auto slot = std::make_shared<State::Slot>(state, std::move(subscription.on_end));
  auto& channels = subscription.channels;
  std::sort(channels.begin(), channels.end());
  channels.erase(std::unique(channels.begin(), channels.end()), channels.end());
  auto first = subscription.first_frame.empty()
                   ? Frame{}
                   : std::make_shared<const std::string>(std::move(subscription.first_frame));

  http::Response response;
  response.status = 200;
  response.content_type = "text/event-stream";
  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");
  response.take_over = [state, slot, channels = std::move(channels),
                        first = std::move(first)](tcp::socket socket) {
    slot->attached = true;
    auto client = std::make_shared<State::Client>(state, channels, std::move(socket),
                                                  std::move(slot->on_end));
    if (first) client->queue.push_back(first);
    state->add(std::move(client));
  };
  return response;
}

void Hub::close_channel(std::string_view channel, std::string final_frame) {
  const auto frame =
      final_frame.empty() ? Frame{} : std::make_shared<const std::string>(std::move(final_frame));
  std::size_t dropped_events = 0;
  {
    std::lock_guard lock(state_->mutex);
    const auto it = state_->channels.find(std::string(channel));
    if (it == state_->channels.end()) return;
    for (auto& client : it->second) {
      bool post_write = false;
      {
        std::lock_guard client_lock(client->mutex);
        if (client->closed || client->close_after_flush) continue;
        if (frame) {
          if (client->queue.size() >= state_->options.client_queue) {
            if (client->queue.front() != state_->heartbeat) ++dropped_events;
            client->queue.pop_front();
          }
          client->queue.push_back(frame);
        }
        client->close_after_flush = true;
        post_write = client->start_writing();
      }
      if (post_write) client->post_write();
    }
  }
  if (dropped_events > 0) state_->metrics.dropped.Increment(static_cast<double>(dropped_events));
}

void Hub::attach(std::string product, asio::ip::tcp::socket socket) {
  ++state_->slots;
  std::vector<std::string> channels{std::move(product)};
  state_->add(std::make_shared<State::Client>(state_, std::move(channels), std::move(socket)));
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
