#include "mesh/kafka/consumer.hpp"

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "internal.hpp"
#include "mesh/kafka/error.hpp"

namespace mesh::kafka {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;
// The consumer queue wakes poll_batch through the eventfd; this only catches a lost wake-up.
constexpr auto kFallbackPoll = std::chrono::milliseconds(100);

Consumer::Partitions to_pairs(const rd_kafka_topic_partition_list_t* list) {
  Consumer::Partitions out;
  if (list == nullptr) return out;
  out.reserve(static_cast<std::size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i)
    out.emplace_back(list->elems[i].topic, list->elems[i].partition);
  return out;
}

std::string describe(const Consumer::Partitions& partitions) {
  std::string out;
  for (const auto& [topic, partition] : partitions) {
    out += (out.empty() ? "" : ",") + topic + "/" + std::to_string(partition);
  }
  return out;
}

Message to_message(const rd_kafka_message_t& raw) {
  Message message;
  message.topic = rd_kafka_topic_name(raw.rkt);
  message.partition = raw.partition;
  message.offset = raw.offset;
  if (raw.key != nullptr) message.key.assign(static_cast<const char*>(raw.key), raw.key_len);
  if (raw.payload != nullptr) message.value.assign(static_cast<const char*>(raw.payload), raw.len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&raw, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      message.headers.push_back(
          {name, value != nullptr ? std::string(static_cast<const char*>(value), size) : ""});
    }
  }
  rd_kafka_timestamp_type_t type;
  message.timestamp_ms = rd_kafka_message_timestamp(&raw, &type);
  return message;
}

void on_rebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                  void* opaque);
void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque);
int on_statistics(rd_kafka_t*, char* json, size_t size, void* opaque);
void on_commit(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
               void* opaque);

}  // namespace

struct ConsumerState {
  ConsumerState(Consumer& owner, std::string group, prometheus::Registry& registry)
      : owner(owner),
        group(std::move(group)),
        consumed(prometheus::BuildCounter()
                     .Name("mesh_kafka_consumed_total")
                     .Help("Records handed to the application by a consumer group")
                     .Register(registry)),
        errors(prometheus::BuildCounter()
                   .Name("mesh_kafka_consumer_errors_total")
                   .Help("Consumer errors: fetch, commit, rebalance and client errors")
                   .Register(registry)
                   .Add({{"group", this->group}})),
        lag(prometheus::BuildGauge()
                .Name("mesh_kafka_consumer_lag")
                .Help("Records behind the partition end, from the client statistics")
                .Register(registry)) {}

  void count_error(std::string_view what, std::string_view reason,
                   spdlog::level::level_enum level = spdlog::level::warn) {
    errors.Increment();
    log::event(*logger(), level, what, {{"group", group}, {"reason", reason}});
  }

  void call_hook(const Consumer::RebalanceHook& hook, const Consumer::Partitions& partitions,
                 std::string_view name) {
    if (!hook) return;
    try {
      hook(partitions);
    } catch (const std::exception& e) {
      count_error(std::string("consumer ") + std::string(name) + " hook threw", e.what(),
                  spdlog::level::err);
    } catch (...) {
      // Nothing may unwind through librdkafka's C frames.
      count_error(std::string("consumer ") + std::string(name) + " hook threw", "unknown",
                  spdlog::level::err);
    }
  }

  void check(rd_kafka_resp_err_t err, std::string_view what) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      count_error(what, rd_kafka_err2str(err), spdlog::level::err);
  }

  void check(rd_kafka_error_t* error, std::string_view what) {
    if (error != nullptr) count_error(what, take_error(error), spdlog::level::err);
  }

  void rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    auto* handle = rk.get();
    const char* protocol = rd_kafka_rebalance_protocol(handle);
    const bool cooperative = protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
    const auto pairs = to_pairs(partitions);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      call_hook(owner.on_assign, pairs, "on_assign");
      if (cooperative) {
        check(rd_kafka_incremental_assign(handle, partitions),
              "consumer incremental assign failed");
      } else {
        check(rd_kafka_assign(handle, partitions), "consumer assign failed");
      }
      if (paused) {
        check(rd_kafka_pause_partitions(handle, partitions), "consumer pause failed");
        paused_partitions.insert(pairs.begin(), pairs.end());
      } else {
        // librdkafka keeps a partition's pause flag across revoke and assign: a partition this
        // consumer paused before it was revoked would otherwise come back paused for good.
        resume_if_paused(pairs);
      }
      log::event(*logger(), spdlog::level::info, "partitions assigned",
                 {{"group", group}, {"partitions", describe(pairs)}});
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      if (rd_kafka_assignment_lost(handle)) {
        count_error("consumer assignment lost: commits for it will fail", describe(pairs));
      }
      call_hook(owner.on_revoke, pairs, "on_revoke");
      if (cooperative) {
        check(rd_kafka_incremental_unassign(handle, partitions),
              "consumer incremental unassign failed");
      } else {
        check(rd_kafka_assign(handle, nullptr), "consumer unassign failed");
      }
      for (const auto& key : pairs) {
        if (auto it = lag_gauges.find(key); it != lag_gauges.end()) it->second->Set(0);
      }
      log::event(*logger(), spdlog::level::info, "partitions revoked",
                 {{"group", group}, {"partitions", describe(pairs)}});
    } else {
      count_error("consumer rebalance failed", rd_kafka_err2str(err), spdlog::level::err);
      check(rd_kafka_assign(handle, nullptr), "consumer unassign failed");
    }
  }

  void take_error_message(const rd_kafka_message_t& message) {
    if (message.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    if (message.err == RD_KAFKA_RESP_ERR__FATAL) {
      record_fatal();
      return;
    }
    count_error("consumer error", rd_kafka_message_errstr(&message));
  }

  void record_fatal() {
    char reason[512];
    const auto err = rd_kafka_fatal_error(rk.get(), reason, sizeof(reason));
    fatal = std::string(rd_kafka_err2name(err)) + ": " + reason;
    count_error("consumer fatal error", fatal, spdlog::level::critical);
  }

  void drain_into(std::vector<Message>& batch, std::size_t max_messages) {
    while (batch.size() < max_messages) {
      const MessagePtr raw(rd_kafka_consumer_poll(rk.get(), 0));
      if (!raw) return;
      if (raw->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        take_error_message(*raw);
        continue;
      }
      batch.push_back(to_message(*raw));
      consumed_counter(batch.back().topic).Increment();
    }
  }

  prometheus::Counter& consumed_counter(const std::string& topic) {
    auto& counter = consumed_by_topic[topic];
    if (counter == nullptr) counter = &consumed.Add({{"group", group}, {"topic", topic}});
    return *counter;
  }

  prometheus::Gauge& lag_gauge(const std::string& topic, int32_t partition) {
    auto& gauge = lag_gauges[{topic, partition}];
    if (gauge == nullptr) {
      gauge =
          &lag.Add({{"group", group}, {"topic", topic}, {"partition", std::to_string(partition)}});
    }
    return *gauge;
  }

  // Statistics JSON: topics.<name>.partitions.<id>.{desired, consumer_lag, hi_offset, lo_offset}.
  // consumer_lag is -1 until the group committed an offset; with auto.offset.reset=earliest
  // everything retained is pending then, so the lag is hi_offset - lo_offset.
  void update_lag(std::string_view json) {
    boost::system::error_code ec;
    const auto stats = boost::json::parse(json, ec);
    if (ec || !stats.is_object()) return;
    const auto* topics = stats.as_object().if_contains("topics");
    if (topics == nullptr || !topics->is_object()) return;
    for (const auto& [topic, topic_stats] : topics->as_object()) {
      const auto* partitions =
          topic_stats.is_object() ? topic_stats.as_object().if_contains("partitions") : nullptr;
      if (partitions == nullptr || !partitions->is_object()) continue;
      for (const auto& [id, partition] : partitions->as_object()) {
        if (!partition.is_object()) continue;
        const auto& fields = partition.as_object();
        const auto number = [&](std::string_view key) -> std::int64_t {
          const auto* value = fields.if_contains(key);
          return value != nullptr && value->is_int64() ? value->as_int64() : -1;
        };
        const auto* desired = fields.if_contains("desired");
        const auto partition_id = std::atoi(std::string(id).c_str());
        if (partition_id < 0 || desired == nullptr || !desired->is_bool() || !desired->as_bool())
          continue;
        auto lag_value = number("consumer_lag");
        if (lag_value < 0 && number("hi_offset") >= 0 && number("lo_offset") >= 0) {
          lag_value = number("hi_offset") - number("lo_offset");
        }
        if (lag_value >= 0)
          lag_gauge(std::string(topic), partition_id).Set(static_cast<double>(lag_value));
      }
    }
  }

  void set_paused(bool pause) {
    rd_kafka_topic_partition_list_t* raw = nullptr;
    const auto err = rd_kafka_assignment(rk.get(), &raw);
    const PartitionListPtr assignment(raw);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return check(err, "consumer assignment failed");
    const auto pairs = to_pairs(assignment.get());
    check(pause ? rd_kafka_pause_partitions(rk.get(), assignment.get())
                : rd_kafka_resume_partitions(rk.get(), assignment.get()),
          pause ? "consumer pause failed" : "consumer resume failed");
    if (pause) {
      paused_partitions.insert(pairs.begin(), pairs.end());
    } else {
      for (const auto& key : pairs) paused_partitions.erase(key);
    }
    paused = pause;
  }

  // Resumes those of `partitions` that this consumer paused earlier and never resumed.
  void resume_if_paused(const Consumer::Partitions& pairs) {
    const PartitionListPtr stale(rd_kafka_topic_partition_list_new(static_cast<int>(pairs.size())));
    for (const auto& key : pairs) {
      if (paused_partitions.erase(key) == 0) continue;
      rd_kafka_topic_partition_list_add(stale.get(), key.first.c_str(), key.second);
    }
    if (stale->cnt > 0)
      check(rd_kafka_resume_partitions(rk.get(), stale.get()), "consumer resume failed");
  }

  Consumer& owner;
  const std::string group;
  prometheus::Family<prometheus::Counter>& consumed;
  prometheus::Counter& errors;
  prometheus::Family<prometheus::Gauge>& lag;
  std::map<std::string, prometheus::Counter*> consumed_by_topic;
  std::map<std::pair<std::string, int32_t>, prometheus::Gauge*> lag_gauges;
  bool paused = false;
  // Partitions paused by pause() and not resumed since, assigned or not.
  std::set<std::pair<std::string, int32_t>> paused_partitions;
  bool closed = false;
  std::string fatal;  // set once librdkafka raised a fatal error
  std::chrono::milliseconds close_timeout{};
  HandlePtr rk;
  std::optional<SignalledQueue> queue;  // the consumer queue; destroyed before rk
};

namespace {

ConsumerState& state_of(void* opaque) { return *static_cast<ConsumerState*>(opaque); }

void on_rebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                  void* opaque) {
  state_of(opaque).rebalance(err, partitions);
}

void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
  auto& state = state_of(opaque);
  if (err == RD_KAFKA_RESP_ERR__FATAL) return state.record_fatal();
  state.count_error(
      "consumer client error",
      std::string(rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))) + ": " + reason,
      client_error_level(err));
}

int on_statistics(rd_kafka_t*, char* json, size_t size, void* opaque) {
  state_of(opaque).update_lag(std::string_view(json, size));
  return 0;  // librdkafka frees json
}

void on_commit(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
               void* opaque) {
  auto& state = state_of(opaque);
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return state.check(err, "consumer commit failed");
  for (int i = 0; offsets != nullptr && i < offsets->cnt; ++i) {
    state.check(offsets->elems[i].err, "consumer commit failed for a partition");
  }
}

std::chrono::milliseconds read_session_timeout(rd_kafka_conf_t* conf) {
  char value[64];
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(conf, "session.timeout.ms", value, &size) != RD_KAFKA_CONF_OK) {
    throw std::runtime_error("kafka consumer: cannot read session.timeout.ms");
  }
  return std::chrono::milliseconds(std::stoll(value));
}

}  // namespace
}  // namespace detail

Consumer::Consumer(asio::any_io_executor executor, ClientConfig config, std::string group_id,
                   std::vector<std::string> topics, prometheus::Registry& registry)
    : state_(std::make_unique<detail::ConsumerState>(*this, group_id, registry)) {
  detail::require_property(config, {"enable.auto.commit", "enable.auto.offset.store"}, {"false"});
  auto conf = make_conf(config, {{"group.id", group_id},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"auto.offset.reset", "earliest"},
                                 // A pipeline stage adds at most this much latency when idle.
                                 {"fetch.wait.max.ms", "10"},
                                 {"statistics.interval.ms", "5000"}});
  // Closing waits for the group to let go of us, which takes at most a session timeout.
  state_->close_timeout = detail::read_session_timeout(conf.get()) + std::chrono::seconds(5);
  rd_kafka_conf_set_opaque(conf.get(), state_.get());
  rd_kafka_conf_set_rebalance_cb(conf.get(), detail::on_rebalance);
  rd_kafka_conf_set_error_cb(conf.get(), detail::on_error);
  rd_kafka_conf_set_stats_cb(conf.get(), detail::on_statistics);
  rd_kafka_conf_set_offset_commit_cb(conf.get(), detail::on_commit);
  char errstr[512];
  state_->rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof(errstr)));
  if (!state_->rk) throw std::runtime_error(std::string("kafka consumer: ") + errstr);
  conf.release();  // rd_kafka_new took it
  auto* rk = state_->rk.get();
  // One queue for messages, rebalances, errors and statistics, so one eventfd wakes it all.
  if (const auto err = rd_kafka_poll_set_consumer(rk); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error(std::string("kafka consumer: poll_set_consumer: ") +
                             rd_kafka_err2str(err));
  }
  state_->queue.emplace(executor, QueuePtr(rd_kafka_queue_get_consumer(rk)));
  const PartitionListPtr subscription(
      rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& topic : topics) {
    rd_kafka_topic_partition_list_add(subscription.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (const auto err = rd_kafka_subscribe(rk, subscription.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error(std::string("kafka consumer: subscribe: ") + rd_kafka_err2str(err));
  }
}

Consumer::~Consumer() {
  auto& state = *state_;
  on_revoke = nullptr;
  on_assign = nullptr;
  if (!state.closed) {
    detail::logger()->warn(
        "kafka consumer of group {} destroyed without close(): closing "
        "synchronously",
        state.group);
    state.queue->reset();
    state.check(rd_kafka_consumer_close(state.rk.get()), "consumer close failed");
  }
  state.queue.reset();
  state.rk.reset();
}

Task<std::vector<Message>> Consumer::poll_batch(std::size_t max_messages,
                                                std::chrono::milliseconds max_wait) {
  auto& state = *state_;
  if (state.closed) throw std::logic_error("kafka consumer: poll_batch() after close()");
  const auto deadline = detail::Clock::now() + max_wait;
  std::vector<Message> batch;
  for (;;) {
    auto& signal = state.queue->signal();
    signal.drain();
    state.drain_into(batch, std::max<std::size_t>(max_messages, 1));
    if (!state.fatal.empty()) throw std::runtime_error("kafka consumer: " + state.fatal);
    const auto now = detail::Clock::now();
    if (!batch.empty() || now >= deadline) co_return batch;
    co_await signal.wait(std::min<detail::Clock::duration>(deadline - now, detail::kFallbackPoll));
  }
}

error_code Consumer::commit(const std::vector<Offset>& offsets, bool async) {
  if (offsets.empty()) return {};
  const PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& offset : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), offset.topic.c_str(), offset.partition)->offset =
        offset.next_offset;
  }
  auto err = rd_kafka_commit(state_->rk.get(), list.get(), async ? 1 : 0);
  for (int i = 0; !async && err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) {
    err = list->elems[i].err;
  }
  // Failures are logged and counted by on_commit, which librdkafka calls for synchronous
  // commits too.
  return make_error(err);
}

void Consumer::pause() { state_->set_paused(true); }
void Consumer::resume() { state_->set_paused(false); }

Task<void> Consumer::close() {
  auto& state = *state_;
  if (state.closed) co_return;
  auto* rk = state.rk.get();
  // The close hands rebalances and errors to this queue; io events belong on the final queue
  // only, so the consumer queue (forwarded here) stops signalling.
  detail::SignalledQueue closing(co_await asio::this_coro::executor,
                                 QueuePtr(rd_kafka_queue_new(rk)));
  state.queue->reset();
  if (auto* error = rd_kafka_consumer_close_queue(rk, closing.get())) {
    state.count_error("consumer close failed", detail::take_error(error), spdlog::level::err);
    state.closed = true;
    co_return;
  }
  const auto deadline = detail::Clock::now() + state.close_timeout;
  while (!rd_kafka_consumer_closed(rk)) {
    closing.signal().drain();
    while (const EventPtr event{rd_kafka_queue_poll(closing.get(), 0)}) {
      switch (rd_kafka_event_type(event.get())) {
        case RD_KAFKA_EVENT_REBALANCE:
          state.rebalance(rd_kafka_event_error(event.get()),
                          rd_kafka_event_topic_partition_list(event.get()));
          break;
        case RD_KAFKA_EVENT_ERROR:
          state.count_error("consumer error while closing",
                            rd_kafka_event_error_string(event.get()));
          break;
        default:
          break;  // fetched messages are dropped: they were never committed
      }
    }
    if (rd_kafka_consumer_closed(rk)) break;
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      state.count_error("consumer close timed out", state.group, spdlog::level::err);
      break;
    }
    co_await closing.signal().wait(
        std::min<detail::Clock::duration>(deadline - now, detail::kFallbackPoll));
  }
  state.closed = true;
  log::event(*detail::logger(), spdlog::level::info, "consumer closed", {{"group", state.group}});
}

}  // namespace mesh::kafka
