#include "mesh/kafka/producer.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "internal.hpp"
#include "mesh/kafka/error.hpp"
#include "mesh/metrics/metrics.hpp"

namespace mesh::kafka {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;
// Delivery reports wake the pump through the eventfd; this only catches a lost wake-up.
constexpr auto kFallbackPoll = std::chrono::milliseconds(100);

struct TopicCounters {
  prometheus::Counter* produced;
  prometheus::Counter* errors;
};

// One record between produce() and its delivery report; the report owns and deletes it.
class Delivery {
 public:
  virtual ~Delivery() = default;
  virtual void complete(error_code result) = 0;

  TopicCounters counters{};
  Clock::time_point started = Clock::now();
};

template <class Handler>
class HandlerDelivery final : public Delivery {
 public:
  explicit HandlerDelivery(Handler handler) : handler_(std::move(handler)) {}

  // Reports arrive on whichever thread polls librdkafka: the waiter resumes on its own executor.
  void complete(error_code result) override {
    auto executor = asio::get_associated_executor(handler_);
    asio::post(executor,
               [handler = std::move(handler_), result]() mutable { std::move(handler)(result); });
  }

 private:
  Handler handler_;
};

// Serves the producer's main queue (delivery reports, errors) on a strand, woken by librdkafka.
class Pump : public std::enable_shared_from_this<Pump> {
 public:
  Pump(asio::any_io_executor strand, rd_kafka_t* rk)
      : strand_(strand), rk_(rk), queue_(strand, QueuePtr(rd_kafka_queue_get_main(rk))) {}

  void start() {
    asio::co_spawn(strand_, run(shared_from_this()), [](std::exception_ptr error) {
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        logger()->error("kafka producer pump stopped: {}", e.what());
      }
    });
  }

  // After stop() returns the pump never touches the rd_kafka_t again. Must not be called from
  // inside a librdkafka callback served by the pump.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      rk_ = nullptr;
      queue_.reset();
    }
    asio::post(strand_, [self = shared_from_this()] { self->queue_.signal().cancel(); });
  }

 private:
  static Task<void> run(std::shared_ptr<Pump> self) {
    while (self->serve()) {
      co_await self->queue_.signal().wait(kFallbackPoll);
    }
  }

  bool serve() {
    std::lock_guard lock(mutex_);
    if (rk_ == nullptr) return false;
    queue_.signal().drain();
    while (rd_kafka_poll(rk_, 0) > 0) {
    }
    return true;
  }

  asio::any_io_executor strand_;
  std::mutex mutex_;
  rd_kafka_t* rk_;  // null once stopped
  SignalledQueue queue_;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque);
void on_error(rd_kafka_t* rk, int err, const char* reason, void*);
int on_statistics(rd_kafka_t*, char* json, size_t size, void* opaque);

// Whether the statistics name at least one broker connection in state UP.
bool any_broker_up(std::string_view statistics) {
  boost::system::error_code ec;
  const auto stats = boost::json::parse(statistics, ec);
  if (ec || !stats.is_object()) return false;
  const auto* brokers = stats.as_object().if_contains("brokers");
  if (brokers == nullptr || !brokers->is_object()) return false;
  for (const auto& [name, broker] : brokers->as_object()) {
    const auto* state = broker.is_object() ? broker.as_object().if_contains("state") : nullptr;
    if (state != nullptr && state->is_string() && state->as_string() == "UP") return true;
  }
  return false;
}

}  // namespace

struct ProducerState {
  explicit ProducerState(prometheus::Registry& registry)
      : produced(prometheus::BuildCounter()
                     .Name("mesh_kafka_produced_total")
                     .Help("Records acknowledged by Kafka")
                     .Register(registry)),
        errors(prometheus::BuildCounter()
                   .Name("mesh_kafka_produce_errors_total")
                   .Help("Records not acknowledged: rejected, timed out, queue full or purged")
                   .Register(registry)),
        latency(prometheus::BuildHistogram()
                    .Name("mesh_kafka_produce_seconds")
                    .Help("Time from produce() to the delivery report")
                    .Register(registry)
                    .Add({}, metrics::latency_buckets())) {}

  TopicCounters counters_for(std::string_view topic) {
    std::lock_guard lock(counters_mutex);
    auto it = counters.find(topic);
    if (it == counters.end()) {
      const std::map<std::string, std::string> labels{{"topic", std::string(topic)}};
      it = counters
               .emplace(std::string(topic),
                        TopicCounters{&produced.Add(labels), &errors.Add(labels)})
               .first;
    }
    return it->second;
  }

  void send(Delivery* delivery, std::string_view topic, std::string_view key,
            std::string_view value, const std::vector<Header>& headers) {
    std::unique_ptr<Delivery> owned(delivery);
    owned->counters = counters_for(topic);
    auto fail = [&](rd_kafka_resp_err_t err) {
      owned->counters.errors->Increment();
      owned->complete(make_error(err));
    };
    HeadersPtr record_headers;
    if (!headers.empty()) {
      record_headers.reset(rd_kafka_headers_new(headers.size()));
      for (const auto& header : headers) {
        const auto err = rd_kafka_header_add(
            record_headers.get(), header.key.data(), static_cast<ssize_t>(header.key.size()),
            header.value.data(), static_cast<ssize_t>(header.value.size()));
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return fail(err);
      }
    }
    static char empty_value[] = "";
    const std::string topic_name(topic);
    // Once producev() succeeds the delivery report owns the record and may run at once on
    // another thread, so ownership moves to librdkafka before the call.
    auto* opaque = owned.release();
    const auto err = rd_kafka_producev(
        rk.get(), RD_KAFKA_V_TOPIC(topic_name.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
        RD_KAFKA_V_VALUE(value.empty() ? empty_value : const_cast<char*>(value.data()),
                         value.size()),
        RD_KAFKA_V_HEADERS(record_headers.get()), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      owned.reset(opaque);
      return fail(err);
    }
    record_headers.release();  // the record owns them now
  }

  prometheus::Family<prometheus::Counter>& produced;
  prometheus::Family<prometheus::Counter>& errors;
  prometheus::Histogram& latency;
  std::mutex counters_mutex;
  std::map<std::string, TopicCounters, std::less<>> counters;
  std::chrono::milliseconds message_timeout{};
  // From the statistics (every second); true until the first says otherwise, since a producer
  // is only made once the brokers answered.
  std::atomic<bool> broker_up{true};
  HandlePtr rk;
  std::shared_ptr<Pump> pump;
};

namespace {

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  std::unique_ptr<Delivery> delivery(static_cast<Delivery*>(message->_private));
  if (!delivery) return;
  auto& state = *static_cast<ProducerState*>(opaque);
  state.latency.Observe(std::chrono::duration<double>(Clock::now() - delivery->started).count());
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    delivery->counters.produced->Increment();
  } else {
    delivery->counters.errors->Increment();
  }
  delivery->complete(make_error(message->err));
}

int on_statistics(rd_kafka_t*, char* json, size_t size, void* opaque) {
  static_cast<ProducerState*>(opaque)->broker_up = any_broker_up(std::string_view(json, size));
  return 0;  // librdkafka frees json
}

void on_error(rd_kafka_t* rk, int err, const char* reason, void*) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal[512];
    rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    log::event(*logger(), spdlog::level::critical, "producer fatal error", {{"reason", fatal}});
    return;
  }
  log::event(
      *logger(), client_error_level(err), "producer error",
      {{"error", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))}, {"reason", reason}});
}

std::chrono::milliseconds read_message_timeout(const rd_kafka_conf_t* conf) {
  char value[64];
  size_t size = sizeof(value);
  const rd_kafka_topic_conf_t* topic_conf =
      rd_kafka_conf_get_default_topic_conf(const_cast<rd_kafka_conf_t*>(conf));
  if (topic_conf == nullptr ||
      rd_kafka_topic_conf_get(topic_conf, "message.timeout.ms", value, &size) != RD_KAFKA_CONF_OK) {
    throw std::runtime_error("kafka producer: cannot read message.timeout.ms");
  }
  return std::chrono::milliseconds(std::stoll(value));
}

}  // namespace
}  // namespace detail

Producer::Producer(asio::any_io_executor executor, ClientConfig config,
                   prometheus::Registry& registry)
    : state_(std::make_unique<detail::ProducerState>(registry)) {
  detail::require_property(config, {"acks", "request.required.acks"}, {"all", "-1"});
  detail::require_property(config, {"enable.idempotence"}, {"true"});
  auto conf = make_conf(config, {{"acks", "all"},
                                 {"enable.idempotence", "true"},
                                 {"linger.ms", "1"},
                                 {"message.timeout.ms", "5000"},
                                 {"partitioner", "murmur2_random"},
                                 {"statistics.interval.ms", "1000"}});
  state_->message_timeout = detail::read_message_timeout(conf.get());
  rd_kafka_conf_set_opaque(conf.get(), state_.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), detail::on_delivery);
  rd_kafka_conf_set_error_cb(conf.get(), detail::on_error);
  rd_kafka_conf_set_stats_cb(conf.get(), detail::on_statistics);
  char errstr[512];
  state_->rk.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr)));
  if (!state_->rk) throw std::runtime_error(std::string("kafka producer: ") + errstr);
  conf.release();  // rd_kafka_new took it
  state_->pump = std::make_shared<detail::Pump>(asio::make_strand(executor), state_->rk.get());
  state_->pump->start();
}

Producer::~Producer() {
  auto* rk = state_->rk.get();
  if (const int left = rd_kafka_outq_len(rk); left > 0) {
    log::event(*detail::logger(), spdlog::level::warn,
               "producer destroyed with undelivered records", {{"records", left}});
  }
  const auto purged = rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  if (purged != RD_KAFKA_RESP_ERR_NO_ERROR) {
    detail::logger()->error("kafka producer purge failed: {}", rd_kafka_err2str(purged));
  }
  state_->pump->stop();
  // The pump no longer polls: serve the reports of the purged records here, so every waiter
  // completes and every Delivery is freed before the handle goes.
  if (rd_kafka_flush(rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log::event(*detail::logger(), spdlog::level::err, "producer flush at destruction timed out",
               {{"records", rd_kafka_outq_len(rk)}});
  }
  state_->rk.reset();
}

bool Producer::broker_up() const { return state_->broker_up; }

Task<error_code> Producer::produce(std::string_view topic, std::string_view key,
                                   std::string_view value, std::vector<Header> headers) {
  // as_tuple: the error is the result, not an exception.
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  const auto [result] = co_await asio::async_initiate<decltype(token), void(error_code)>(
      [&](auto handler) {
        using Handler = decltype(handler);
        state_->send(new detail::HandlerDelivery<Handler>(std::move(handler)), topic, key, value,
                     headers);
      },
      token);
  co_return result;
}

Task<error_code> Producer::flush(std::chrono::milliseconds timeout) {
  const auto deadline = detail::Clock::now() + timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  // The pump serves the reports; outq_len counts records until their report was served.
  while (const int left = rd_kafka_outq_len(state_->rk.get())) {
    if (detail::Clock::now() >= deadline) {
      log::event(*detail::logger(), spdlog::level::warn, "producer flush timed out",
                 {{"records", left}});
      co_return make_error(RD_KAFKA_RESP_ERR__TIMED_OUT);
    }
    timer.expires_after(std::chrono::milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return error_code{};
}

std::chrono::milliseconds Producer::message_timeout() const { return state_->message_timeout; }

}  // namespace mesh::kafka
