#include "mesh/kafka/admin.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <thread>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "internal.hpp"

namespace mesh::kafka {
namespace {

using Clock = std::chrono::steady_clock;

struct TopicMetadata {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::map<std::string, int> partitions;  // topics that exist, by name
};

TopicMetadata read_metadata(rd_kafka_t* rk, int timeout_ms) {
  TopicMetadata result;
  using Metadata = struct rd_kafka_metadata;  // the struct shares the function's name
  const Metadata* raw = nullptr;
  result.err = rd_kafka_metadata(rk, 1, nullptr, &raw, timeout_ms);
  if (result.err != RD_KAFKA_RESP_ERR_NO_ERROR) return result;
  const std::unique_ptr<const Metadata, detail::Deleter<rd_kafka_metadata_destroy>> metadata(raw);
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const auto& topic = metadata->topics[i];
    if (topic.err == RD_KAFKA_RESP_ERR_NO_ERROR)
      result.partitions[topic.topic] = topic.partition_cnt;
  }
  return result;
}

// rd_kafka_metadata() blocks, so it runs on a helper thread that owns everything it touches
// and hands the result to the awaiting coroutine's executor.
Task<TopicMetadata> fetch_metadata(std::shared_ptr<rd_kafka_t> rk, int timeout_ms) {
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(TopicMetadata)>(
      [](auto handler, std::shared_ptr<rd_kafka_t> rk, int timeout_ms) {
        std::thread([rk = std::move(rk), timeout_ms, handler = std::move(handler)]() mutable {
          auto result = read_metadata(rk.get(), timeout_ms);
          auto executor = asio::get_associated_executor(handler);
          asio::post(executor,
                     [handler = std::move(handler), result = std::move(result)]() mutable {
                       std::move(handler)(std::move(result));
                     });
        }).detach();
      },
      asio::use_awaitable, std::move(rk), timeout_ms);
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 1));
}

std::string names(const std::vector<TopicSpec>& topics) {
  std::string out;
  for (const auto& topic : topics) out += (out.empty() ? "" : ", ") + topic.name;
  return out;
}

[[noreturn]] void fail(const std::vector<TopicSpec>& topics, const std::string& reason) {
  throw std::runtime_error("kafka: cannot ensure topics [" + names(topics) + "]: " + reason);
}

using NewTopicPtr =
    std::unique_ptr<rd_kafka_NewTopic_t, detail::Deleter<rd_kafka_NewTopic_destroy>>;
using AdminOptionsPtr =
    std::unique_ptr<rd_kafka_AdminOptions_t, detail::Deleter<rd_kafka_AdminOptions_destroy>>;

// Returns the failures, one "name: reason" per topic; TOPIC_ALREADY_EXISTS is success.
std::vector<std::string> create_topic_results(rd_kafka_event_t* event) {
  std::vector<std::string> failures;
  const auto* result = rd_kafka_event_CreateTopics_result(event);
  size_t count = 0;
  const auto* const* topics = rd_kafka_CreateTopics_result_topics(result, &count);
  for (size_t i = 0; i < count; ++i) {
    const auto err = rd_kafka_topic_result_error(topics[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
      continue;
    const char* message = rd_kafka_topic_result_error_string(topics[i]);
    failures.push_back(std::string(rd_kafka_topic_result_name(topics[i])) + ": " +
                       (message != nullptr ? message : rd_kafka_err2str(err)));
  }
  return failures;
}

Task<void> create_topics(std::shared_ptr<rd_kafka_t> rk, const std::vector<TopicSpec>& topics,
                         Clock::time_point deadline) {
  char errstr[512];
  std::vector<NewTopicPtr> owned;
  std::vector<rd_kafka_NewTopic_t*> requests;
  for (const auto& topic : topics) {
    owned.emplace_back(rd_kafka_NewTopic_new(topic.name.c_str(), topic.partitions,
                                             topic.replication, errstr, sizeof(errstr)));
    if (!owned.back()) fail(topics, topic.name + ": " + errstr);
    requests.push_back(owned.back().get());
  }
  const AdminOptionsPtr options(
      rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  const int timeout_ms = remaining_ms(deadline);
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr,
                                                sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_AdminOptions_set_operation_timeout(options.get(), timeout_ms, errstr,
                                                  sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fail(topics, errstr);
  }

  detail::SignalledQueue results(co_await asio::this_coro::executor,
                                 QueuePtr(rd_kafka_queue_new(rk.get())));
  rd_kafka_CreateTopics(rk.get(), requests.data(), requests.size(), options.get(), results.get());
  for (;;) {
    results.signal().drain();
    if (const EventPtr event{rd_kafka_queue_poll(results.get(), 0)}) {
      if (rd_kafka_event_type(event.get()) != RD_KAFKA_EVENT_CREATETOPICS_RESULT) continue;
      if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fail(topics, std::string(rd_kafka_event_error_string(event.get())) +
                         " (if the brokers are a mesh-kafka-mock, which cannot create topics, "
                         "start it with --topic NAME:PARTITIONS)");
      }
      const auto failures = create_topic_results(event.get());
      if (failures.empty()) co_return;
      std::string reasons;
      for (const auto& failure : failures) reasons += (reasons.empty() ? "" : "; ") + failure;
      fail(topics, reasons);
    }
    if (Clock::now() >= deadline) fail(topics, "timed out waiting for CreateTopics");
    co_await results.signal().wait(
        std::min<Clock::duration>(deadline - Clock::now(), std::chrono::milliseconds(250)));
  }
}

}  // namespace

Task<void> ensure_topics(const ClientConfig& config, std::vector<TopicSpec> topics,
                         std::chrono::milliseconds timeout) {
  if (topics.empty()) co_return;
  const auto deadline = Clock::now() + timeout;
  auto conf = make_conf(config);
  char errstr[512];
  std::shared_ptr<rd_kafka_t> rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr)), rd_kafka_destroy);
  if (!rk) fail(topics, errstr);
  conf.release();  // rd_kafka_new took it

  const auto metadata = co_await fetch_metadata(rk, remaining_ms(deadline));
  if (metadata.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fail(topics, std::string("reading cluster metadata from ") + config.brokers + ": " +
                     rd_kafka_err2str(metadata.err));
  }
  std::vector<TopicSpec> missing;
  for (auto& topic : topics) {
    const auto existing = metadata.partitions.find(topic.name);
    if (existing == metadata.partitions.end()) {
      missing.push_back(std::move(topic));
    } else if (existing->second != topic.partitions) {
      // More partitions than asked for is how a deployment sizes a topic for more consumer
      // replicas (Strimzi KafkaTopics); fewer caps the consumers that get work.
      log::event(
          *detail::logger(),
          existing->second > topic.partitions ? spdlog::level::debug : spdlog::level::warn,
          "topic exists with other partition count",
          {{"topic", topic.name}, {"partitions", existing->second}, {"wanted", topic.partitions}});
    }
  }

  std::vector<TopicSpec> for_broker;
  for (auto& topic : missing) {
    const auto err = detail::create_topic_on_local_mock(config.brokers, topic.name,
                                                        topic.partitions, topic.replication);
    if (!err) {
      for_broker.push_back(std::move(topic));
    } else if (*err != RD_KAFKA_RESP_ERR_NO_ERROR &&
               *err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      fail({topic}, std::string("mock cluster: ") + rd_kafka_err2str(*err));
    } else {
      log::event(*detail::logger(), spdlog::level::info, "topic created on embedded mock cluster",
                 {{"topic", topic.name}, {"partitions", topic.partitions}});
    }
  }
  if (for_broker.empty()) co_return;
  co_await create_topics(rk, for_broker, deadline);
  for (const auto& topic : for_broker) {
    log::event(*detail::logger(), spdlog::level::info, "topic created",
               {{"topic", topic.name}, {"partitions", topic.partitions}});
  }
}

}  // namespace mesh::kafka
