#include "mesh/messages/consumer.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/log.hpp"
#include "mesh/core/sleep.hpp"
#include "mesh/kafka/dead_letter.hpp"
#include "mesh/kafka/publish.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/pg/error.hpp"

namespace mesh::messages {
namespace {

using Clock = std::chrono::steady_clock;

// Class 22 (data exception) and 23 (integrity constraint): the rows themselves are
// unacceptable, so retrying the same batch cannot help.
bool refused_data(const pg::Error& error) {
  return error.sqlstate().starts_with("22") || error.sqlstate().starts_with("23");
}

}  // namespace

MessageConsumer::MessageConsumer(asio::any_io_executor executor, const config::Config& config,
                                 kafka::ClientConfig kafka_config, pg::Pool& pool,
                                 kafka::Producer& producer, prometheus::Registry& registry)
    : executor_(asio::make_strand(executor)),
      config_(config),
      kafka_config_(std::move(kafka_config)),
      producer_(producer),
      registry_(registry),
      store_(pool, config.pg_timeout),
      stored_(prometheus::BuildCounter()
                  .Name("mesh_messages_stored_total")
                  .Help("Messages newly written to Postgres.")
                  .Register(registry)
                  .Add({})),
      duplicates_(prometheus::BuildCounter()
                      .Name("mesh_messages_duplicates_total")
                      .Help("Messages skipped because Postgres already had them (redelivery).")
                      .Register(registry)
                      .Add({})),
      dead_lettered_(prometheus::BuildCounter()
                         .Name("mesh_messages_dead_lettered_total")
                         .Help("Records sent to messages.dlq: undecodable, or refused by Postgres.")
                         .Register(registry)),
      store_failures_(prometheus::BuildCounter()
                          .Name("mesh_messages_store_failures_total")
                          .Help("Message batch transactions that failed and were retried.")
                          .Register(registry)
                          .Add({})),
      batch_seconds_(prometheus::BuildHistogram()
                         .Name("mesh_messages_batch_seconds")
                         .Help("Time from a poll's return to its batch being stored.")
                         .Register(registry)
                         .Add({}, metrics::latency_buckets())) {}

void MessageConsumer::stop() { stopping_ = true; }

Task<bool> MessageConsumer::dead_letter(const kafka::Message& source, std::string_view reason) {
  const std::string record = kafka::dead_letter_record(source, reason);
  const auto headers = kafka::dead_letter_headers(reason, "consumer");
  const bool published = co_await kafka::publish_until_acked(
      producer_, kMessagesDeadLetterTopic, source.key, record, headers, &stopping_);
  co_return published;
}

Task<MessageConsumer::StoreOutcome> MessageConsumer::store_with_retry(
    std::span<const Message> messages) {
  auto logger = log::get("messages");
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    std::string failure;
    std::optional<std::size_t> inserted;
    bool refused = false;
    try {
      inserted = co_await store_.store(messages);
    } catch (const pg::Error& e) {
      refused = refused_data(e);
      failure = e.what();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    // (No co_return or co_await inside the handlers: GCC 12 miscompiles them.)
    if (inserted) {
      stored_.Increment(static_cast<double>(*inserted));
      duplicates_.Increment(static_cast<double>(messages.size() - *inserted));
      co_return StoreOutcome::stored;
    }
    if (refused) {
      log::event(*logger, spdlog::level::warn, "messages refused by postgres",
                 {{"messages", messages.size()}, {"error", failure}});
      co_return StoreOutcome::rejected;
    }
    store_failures_.Increment();
    logger->error("storing {} messages failed: {}; retrying", messages.size(), failure);
    if (stopping_) co_return StoreOutcome::stopped;
    co_await core::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

Task<MessageConsumer::StoreOutcome> MessageConsumer::store_one_by_one(
    const std::vector<Message>& messages, const std::vector<const kafka::Message*>& sources) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::span<const Message> single(&messages[i], 1);
    const StoreOutcome outcome = co_await store_with_retry(single);
    if (outcome == StoreOutcome::stopped) co_return outcome;
    if (outcome == StoreOutcome::rejected) {
      dead_lettered_.Add({{"reason", "refused"}}).Increment();
      const bool published = co_await dead_letter(*sources[i], "postgres refused the message");
      if (!published) co_return StoreOutcome::stopped;
    }
  }
  co_return StoreOutcome::stored;
}

Task<void> MessageConsumer::run() {
  co_await asio::dispatch(executor_, asio::use_awaitable);
  auto logger = log::get("messages");
  const std::vector<std::string> topics{kMessagesTopic};
  kafka::Consumer consumer(executor_, kafka_config_, kConsumerGroup, topics, registry_);
  auto& undecodable = dead_lettered_.Add({{"reason", "undecodable"}});
  std::vector<kafka::Consumer::Offset> offsets;
  bool stopped = false;
  while (!stopping_ && !stopped) {
    auto records =
        co_await consumer.poll_batch(config_.consumer_batch_size, std::chrono::milliseconds(100));
    if (records.empty()) continue;
    const auto started = Clock::now();
    std::vector<Message> messages;
    std::vector<const kafka::Message*> sources;
    messages.reserve(records.size());
    sources.reserve(records.size());
    std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offsets;
    for (const auto& record : records) {
      auto& next = next_offsets[{record.topic, record.partition}];
      next = std::max(next, record.offset + 1);
      auto decoded = decode(record.value);
      if (auto* message = std::get_if<Message>(&decoded)) {
        messages.push_back(std::move(*message));
        sources.push_back(&record);
        continue;
      }
      const std::string reason = std::get<DecodeError>(decoded).reason;
      log::event(*logger, spdlog::level::warn, "undecodable message dead-lettered",
                 {{"partition", record.partition}, {"offset", record.offset}, {"reason", reason}});
      undecodable.Increment();
      const bool published = co_await dead_letter(record, reason);
      if (!published) {
        stopped = true;
        break;
      }
    }
    if (stopped) break;
    // Nothing is committed until the batch is in Postgres.
    auto outcome = StoreOutcome::stored;
    if (!messages.empty()) outcome = co_await store_with_retry(messages);
    if (outcome == StoreOutcome::rejected) outcome = co_await store_one_by_one(messages, sources);
    if (outcome == StoreOutcome::stopped) break;
    batch_seconds_.Observe(std::chrono::duration<double>(Clock::now() - started).count());
    offsets.clear();
    for (const auto& [partition, next] : next_offsets)
      offsets.push_back({partition.first, partition.second, next});
    consumer.commit(offsets, true);
  }
  // An asynchronous commit may still be in flight: repeat the last one synchronously.
  consumer.commit(offsets, false);
  co_await consumer.close();
}

}  // namespace mesh::messages
