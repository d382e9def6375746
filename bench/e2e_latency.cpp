// e2e_latency: open-loop load at a fixed rate against the mesh gateway, measuring how long a task
// takes from its POST to being visible as finished in GET /v1/tasks/{id}.
//
//   e2e_latency --port P --token JWT [--rate 5000] [--duration 20] [--warmup 3] [--sample 50]
//               [--poll-ms 5] [--post-conns 64] [--get-conns 16] [--drain 10]
//
// POSTs are scheduled at exact instants (i / rate); a POST that waits for a free connection
// keeps its scheduled time, so queueing inside this tool counts against the latency (no
// coordinated omission). Every --sample'th accepted task is followed: one GET right after its
// 202 (read-your-writes: must not be 404), then one GET every --poll-ms until its status is
// succeeded or failed (later polls back off to a tenth of the task's age). Latencies of tasks
// scheduled during --warmup are left out. The answer is one JSON object on stdout. Plain Asio and a
// minimal HTTP/1.1 client (mesh always sends Content-Length), so it compiles in seconds with g++
// -std=c++20 -O2 -pthread.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <limits>
#include <queue>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string token;
  double rate = 5000;
  double duration = 20;
  double warmup = 3;
  int sample = 50;
  double poll_ms = 5;
  int post_conns = 64;
  int get_conns = 16;
  double drain = 10;
  std::string body = R"({"type":"echo","payload":{"bench":"latency","n":1}})";
};

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Reply {
  int status = 0;
  std::string body;
};

// One keep-alive HTTP/1.1 connection, one request at a time.
class Connection {
 public:
  Connection(asio::io_context& io, tcp::endpoint endpoint) : socket_(io), endpoint_(endpoint) {}

  awaitable<void> connect() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    co_await socket_.async_connect(endpoint_, use_awaitable);
    socket_.set_option(tcp::no_delay(true));
  }

  awaitable<Reply> request(const std::string& bytes) {
    co_await asio::async_write(socket_, asio::buffer(bytes), use_awaitable);
    while (true) {
      const auto end = buffer_.find("\r\n\r\n");
      if (end != std::string::npos) {
        Reply reply;
        if (buffer_.size() < 12 || buffer_.compare(0, 5, "HTTP/") != 0)
          throw std::runtime_error("bad status line");
        reply.status = std::atoi(buffer_.c_str() + 9);
        std::string head = buffer_.substr(0, end);
        for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto cl = head.find("\r\ncontent-length:");
        if (cl == std::string::npos) throw std::runtime_error("no Content-Length");
        const std::size_t length = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
        const std::size_t total = end + 4 + length;
        while (buffer_.size() < total) co_await read_more();
        reply.body = buffer_.substr(end + 4, length);
        buffer_.erase(0, total);
        co_return reply;
      }
      if (buffer_.size() > (1 << 20)) throw std::runtime_error("header too large");
      co_await read_more();
    }
  }

 private:
  awaitable<void> read_more() {
    char chunk[16384];
    const std::size_t n = co_await socket_.async_read_some(asio::buffer(chunk), use_awaitable);
    buffer_.append(chunk, n);
  }

  tcp::socket socket_;
  tcp::endpoint endpoint_;
  std::string buffer_;
};

std::string json_string_field(const std::string& body, const std::string& name) {
  const std::string key = "\"" + name + "\":\"";
  const auto at = body.find(key);
  if (at == std::string::npos) return {};
  const auto start = at + key.size();
  const auto stop = body.find('"', start);
  if (stop == std::string::npos) return {};
  return body.substr(start, stop - start);
}

struct Tracked {
  Clock::time_point scheduled;
  Clock::time_point sent;
  std::string id;
  bool counted = false;  // scheduled after the warm-up
  int polls = 0;
};

class Bench {
 public:
  Bench(asio::io_context& io, Options options)
      : io_(io),
        options_(std::move(options)),
        endpoint_(asio::ip::make_address(options_.host), options_.port),
        post_wake_(io, Clock::time_point::max()),
        get_wake_(io, Clock::time_point::max()) {
    post_request_ = "POST /v1/tasks HTTP/1.1\r\nHost: " + options_.host +
                    "\r\nAuthorization: Bearer " + options_.token +
                    "\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(options_.body.size()) + "\r\n\r\n" + options_.body;
    total_ = static_cast<std::int64_t>(std::llround(options_.rate * options_.duration));
    warmup_count_ = static_cast<std::int64_t>(std::llround(options_.rate * options_.warmup));
  }

  void start() {
    start_ = Clock::now() + std::chrono::milliseconds(200);  // connections open meanwhile
    for (int i = 0; i < options_.post_conns; ++i) asio::co_spawn(io_, poster(), asio::detached);
    for (int i = 0; i < options_.get_conns; ++i) asio::co_spawn(io_, poller(), asio::detached);
    asio::co_spawn(io_, scheduler(), asio::detached);
    asio::co_spawn(io_, watchdog(), asio::detached);
  }

  void report() const;
  std::int64_t sent() const { return sent_; }

 private:
  awaitable<void> wait(asio::steady_timer& wake) {
    boost::system::error_code ec;
    co_await wake.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer timer(io_);
    timer.expires_after(d);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  awaitable<bool> reconnect(Connection& connection) {
    while (!finished_) {
      try {
        co_await connection.connect();
        co_return true;
      } catch (const std::exception&) {
        ++connect_errors_;
      }
      co_await pause(std::chrono::milliseconds(10));
    }
    co_return false;
  }

  awaitable<void> scheduler() {
    asio::steady_timer timer(io_);
    const auto drain_deadline =
        start_ + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(options_.duration + options_.drain));
    while (true) {
      const auto now = Clock::now();
      const double elapsed = std::chrono::duration<double>(now - start_).count();
      const auto due =
          elapsed < 0 ? 0 : std::min(total_, static_cast<std::int64_t>(elapsed * options_.rate));
      while (issued_ < due) {
        const auto at = start_ + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(issued_ / options_.rate));
        post_queue_.emplace_back(issued_, at);
        ++issued_;
        post_wake_.cancel_one();
      }
      max_backlog_ = std::max(max_backlog_, post_queue_.size());
      while (!polls_due_.empty() && polls_due_.top().first <= now) {
        get_queue_.push_back(polls_due_.top().second);
        polls_due_.pop();
        get_wake_.cancel_one();
      }
      if (issued_ == total_ && !posting_done_) {
        posting_done_ = true;
        post_wake_.cancel();
      }
      const bool posts_over = posting_done_ && post_queue_.empty() && posts_in_flight_ == 0;
      if (posts_over && (resolved_ == tracked_.size() || now > drain_deadline)) break;
      timer.expires_after(std::chrono::microseconds(250));
      co_await timer.async_wait(use_awaitable);
    }
    finish();
  }

  awaitable<void> watchdog() {
    asio::steady_timer timer(io_);
    timer.expires_at(start_ +
                     std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(options_.duration + options_.drain + 15)));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (!finished_) {
      watchdog_fired_ = true;
      finish();
    }
  }

  void finish() {
    finished_ = true;
    io_.stop();
  }

  awaitable<void> poster() {
    Connection connection(io_, endpoint_);
    if (!co_await reconnect(connection)) co_return;
    bool broken = false;
    while (!finished_) {
      if (post_queue_.empty()) {
        if (posting_done_) co_return;
        co_await wait(post_wake_);
        continue;
      }
      const auto [seq, scheduled] = post_queue_.front();
      post_queue_.pop_front();
      ++posts_in_flight_;
      const auto sent = Clock::now();
      last_post_sent_ = sent;
      ++sent_;
      try {
        const auto reply = co_await connection.request(post_request_);
        const auto now = Clock::now();
        if (reply.status == 202) {
          ++accepted_;
          if (seq >= warmup_count_) {
            post_from_schedule_.push_back(ms(now - scheduled));
            post_service_.push_back(ms(now - sent));
          }
          if (seq % options_.sample == 0) {
            const auto id = json_string_field(reply.body, "id");
            if (id.empty()) {
              ++post_bad_answers_;
            } else {
              tracked_.push_back(Tracked{scheduled, sent, id, seq >= warmup_count_, 0});
              get_queue_.push_back(tracked_.size() - 1);
              get_wake_.cancel_one();
            }
          }
        } else {
          ++post_non202_;
        }
      } catch (const std::exception&) {
        ++post_transport_errors_;
        broken = true;
      }
      --posts_in_flight_;
      if (broken) {
        broken = false;
        if (!co_await reconnect(connection)) co_return;
      }
    }
  }

  awaitable<void> poller() {
    Connection connection(io_, endpoint_);
    if (!co_await reconnect(connection)) co_return;
    const auto poll_every = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(options_.poll_ms));
    while (!finished_) {
      if (get_queue_.empty()) {
        co_await wait(get_wake_);
        continue;
      }
      const std::size_t index = get_queue_.front();
      get_queue_.pop_front();
      Tracked& task = tracked_[index];
      const std::string request = "GET /v1/tasks/" + task.id +
                                  " HTTP/1.1\r\nHost: " + options_.host +
                                  "\r\nAuthorization: Bearer " + options_.token + "\r\n\r\n";
      ++gets_;
      Reply reply;
      bool broken = false;
      try {
        reply = co_await connection.request(request);
      } catch (const std::exception&) {
        ++get_transport_errors_;
        broken = true;
      }
      if (broken) {
        polls_due_.emplace(Clock::now() + poll_every, index);
        if (!co_await reconnect(connection)) co_return;
        continue;
      }
      const auto now = Clock::now();
      const bool first = task.polls++ == 0;
      if (reply.status == 404) {
        ++(first ? not_found_right_after_202_ : not_found_later_);
      } else if (reply.status != 200) {
        ++get_non200_;
      } else {
        const auto status = json_string_field(reply.body, "status");
        if (status == "succeeded" || status == "failed") {
          if (status == "failed") ++tasks_failed_;
          if (task.counted) {
            visible_from_schedule_.push_back(ms(now - task.scheduled));
            visible_from_send_.push_back(ms(now - task.sent));
            polls_per_task_.push_back(task.polls);
          }
          ++resolved_;
          continue;
        }
      }
      // Every --poll-ms at first, then every tenth of the task's age: the latency is
      // overstated by at most max(--poll-ms, 10%), and slow tasks do not flood the gateway.
      polls_due_.emplace(now + std::max<Clock::duration>(poll_every, (now - task.scheduled) / 10),
                         index);
    }
  }

  asio::io_context& io_;
  Options options_;
  tcp::endpoint endpoint_;
  std::string post_request_;
  asio::steady_timer post_wake_;
  asio::steady_timer get_wake_;
  std::deque<std::pair<std::int64_t, Clock::time_point>> post_queue_;
  std::deque<std::size_t> get_queue_;
  std::priority_queue<std::pair<Clock::time_point, std::size_t>,
                      std::vector<std::pair<Clock::time_point, std::size_t>>, std::greater<>>
      polls_due_;
  std::deque<Tracked> tracked_;  // a deque: references stay valid across push_back
  Clock::time_point start_;
  Clock::time_point last_post_sent_;
  std::int64_t total_ = 0, warmup_count_ = 0, issued_ = 0;
  bool posting_done_ = false, finished_ = false, watchdog_fired_ = false;
  int posts_in_flight_ = 0;
  std::size_t resolved_ = 0, max_backlog_ = 0;
  std::int64_t sent_ = 0, accepted_ = 0, post_non202_ = 0, post_transport_errors_ = 0,
               post_bad_answers_ = 0, connect_errors_ = 0;
  std::int64_t gets_ = 0, get_transport_errors_ = 0, get_non200_ = 0,
               not_found_right_after_202_ = 0, not_found_later_ = 0, tasks_failed_ = 0;
  std::vector<double> post_from_schedule_, post_service_, visible_from_schedule_,
      visible_from_send_;
  std::vector<double> polls_per_task_;
};

std::string percentiles(std::vector<double> values) {
  if (values.empty()) return "null";
  std::sort(values.begin(), values.end());
  auto at = [&](double p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
    return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
  };
  double sum = 0;
  for (double v : values) sum += v;
  char out[256];
  std::snprintf(out, sizeof out,
                "{\"n\":%zu,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
                "\"max\":%.3f}",
                values.size(), sum / static_cast<double>(values.size()), at(0.50), at(0.90),
                at(0.99), at(0.999), values.back());
  return out;
}

void Bench::report() const {
  const double posting_s =
      sent_ > 0 ? std::chrono::duration<double>(last_post_sent_ - start_).count() : 0;
  std::cout << "{\"target_rate\":" << options_.rate << ",\"duration_s\":" << options_.duration
            << ",\"warmup_s\":" << options_.warmup << ",\"scheduled\":" << total_
            << ",\"sent\":" << sent_
            << ",\"achieved_rate\":" << (posting_s > 0 ? static_cast<double>(sent_) / posting_s : 0)
            << ",\"accepted\":" << accepted_ << ",\"post_non202\":" << post_non202_
            << ",\"post_transport_errors\":" << post_transport_errors_
            << ",\"post_bad_answers\":" << post_bad_answers_
            << ",\"connect_errors\":" << connect_errors_ << ",\"max_send_backlog\":" << max_backlog_
            << ",\"sample_every\":" << options_.sample << ",\"poll_ms\":" << options_.poll_ms
            << ",\"tracked\":" << tracked_.size() << ",\"resolved\":" << resolved_
            << ",\"unresolved\":" << tracked_.size() - resolved_ << ",\"gets\":" << gets_
            << ",\"gets_per_s\":" << (posting_s > 0 ? static_cast<double>(gets_) / posting_s : 0)
            << ",\"get_transport_errors\":" << get_transport_errors_
            << ",\"get_non200\":" << get_non200_
            << ",\"not_found_right_after_202\":" << not_found_right_after_202_
            << ",\"not_found_later\":" << not_found_later_ << ",\"tasks_failed\":" << tasks_failed_
            << ",\"watchdog_fired\":" << (watchdog_fired_ ? "true" : "false")
            << ",\"post_latency_ms\":" << percentiles(post_from_schedule_)
            << ",\"post_service_ms\":" << percentiles(post_service_)
            << ",\"visible_latency_ms\":" << percentiles(visible_from_schedule_)
            << ",\"visible_from_send_ms\":" << percentiles(visible_from_send_)
            << ",\"polls_per_task\":" << percentiles(polls_per_task_) << "}" << std::endl;
}

[[noreturn]] void usage(const char* problem) {
  std::cerr << "e2e_latency: " << problem
            << "\nusage: e2e_latency --port P --token JWT [--host H] [--rate N] [--duration S] "
               "[--warmup S] [--sample K] [--poll-ms MS] [--post-conns N] [--get-conns N] "
               "[--drain S] [--body JSON]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
    const std::string value = argv[++i];
    try {
      if (arg == "--host")
        options.host = value;
      else if (arg == "--port")
        options.port = static_cast<unsigned short>(std::stoi(value));
      else if (arg == "--token")
        options.token = value;
      else if (arg == "--rate")
        options.rate = std::stod(value);
      else if (arg == "--duration")
        options.duration = std::stod(value);
      else if (arg == "--warmup")
        options.warmup = std::stod(value);
      else if (arg == "--sample")
        options.sample = std::max(1, std::stoi(value));
      else if (arg == "--poll-ms")
        options.poll_ms = std::stod(value);
      else if (arg == "--post-conns")
        options.post_conns = std::max(1, std::stoi(value));
      else if (arg == "--get-conns")
        options.get_conns = std::max(1, std::stoi(value));
      else if (arg == "--drain")
        options.drain = std::stod(value);
      else if (arg == "--body")
        options.body = value;
      else
        usage(("unknown option " + arg).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + arg).c_str());
    }
  }
  if (options.port == 0 || options.token.empty()) usage("--port and --token are required");
  if (options.rate <= 0 || options.duration <= 0) usage("--rate and --duration must be > 0");

  asio::io_context io(1);
  Bench bench(io, options);
  bench.start();
  io.run();
  bench.report();
  // Coroutine frames still parked in the io_context point into `bench`: skip the teardown.
  std::fflush(stdout);
  std::_Exit(bench.sent() > 0 ? 0 : 1);
}
