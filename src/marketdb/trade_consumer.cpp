#include "mesh/marketdb/trade_consumer.hpp"

#include <map>
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

namespace mesh::marketdb {
namespace {

using Clock = std::chrono::steady_clock;

// Class 22 (data exception) and 23 (integrity constraint, e.g. a CHECK): the rows themselves
// are unacceptable, so retrying the same batch cannot help.
bool refused_data(const pg::Error& error) {
  return error.sqlstate().starts_with("22") || error.sqlstate().starts_with("23");
}

}  // namespace

TradeConsumer::TradeConsumer(asio::any_io_executor executor, const config::Config& config,
                             kafka::ClientConfig kafka_config, pg::Pool& pool,
                             kafka::Producer& producer, prometheus::Registry& registry)
    : executor_(asio::make_strand(executor)),
      config_(config),
      kafka_config_(std::move(kafka_config)),
      producer_(producer),
      registry_(registry),
      store_(pool, config.pg_timeout),
      stored_(prometheus::BuildCounter()
                  .Name("mesh_consumer_trades_stored_total")
                  .Help("Trades newly written to Postgres.")
                  .Register(registry)
                  .Add({})),
      duplicates_(prometheus::BuildCounter()
                      .Name("mesh_consumer_duplicates_total")
                      .Help("Trades skipped because Postgres already had them (redelivery, "
                            "overlapping feeds) or the batch repeated them.")
                      .Register(registry)
                      .Add({})),
      dead_letters_(prometheus::BuildCounter()
                        .Name("mesh_consumer_dead_letters_total")
                        .Help("Records sent to market.dlq: undecodable, or refused by Postgres.")
                        .Register(registry)),
      store_failures_(prometheus::BuildCounter()
                          .Name("mesh_consumer_store_failures_total")
                          .Help("Batch transactions that failed and were retried.")
                          .Register(registry)
                          .Add({})),
      batch_seconds_(prometheus::BuildHistogram()
                         .Name("mesh_consumer_batch_seconds")
                         .Help("Time from a poll's return to its batch being stored.")
                         .Register(registry)
                         .Add({}, metrics::latency_buckets())) {}

void TradeConsumer::stop() { stopping_ = true; }

Task<bool> TradeConsumer::dead_letter(const kafka::Message& message, std::string_view reason) {
  const std::string record = kafka::dead_letter_record(message, reason);
  const auto headers = kafka::dead_letter_headers(reason, "consumer");
  const bool published = co_await kafka::publish_until_acked(
      producer_, market::kDeadLetterTopic, message.key, record, headers, &stopping_);
  co_return published;
}

Task<TradeConsumer::StoreOutcome> TradeConsumer::store_with_retry(
    std::span<const market::Trade> trades) {
  auto logger = log::get("consumer");
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    std::string failure;
    std::optional<StoreCounts> counts;
    bool refused = false;
    try {
      counts = co_await store_.store(trades);
    } catch (const pg::Error& e) {
      refused = refused_data(e);
      failure = e.what();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    // (No co_return or co_await inside the handlers: GCC 12 miscompiles them.)
    if (counts) {
      stored_.Increment(static_cast<double>(counts->inserted));
      duplicates_.Increment(static_cast<double>(counts->duplicates));
      co_return StoreOutcome::stored;
    }
    if (refused) {
      log::event(*logger, spdlog::level::warn, "trades refused by postgres",
                 {{"trades", trades.size()}, {"error", failure}});
      co_return StoreOutcome::rejected;
    }
    store_failures_.Increment();
    logger->error("storing {} trades failed: {}; retrying", trades.size(), failure);
    if (stopping_) co_return StoreOutcome::stopped;
    co_await core::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

Task<TradeConsumer::StoreOutcome> TradeConsumer::store_one_by_one(
    const std::vector<market::Trade>& trades, const std::vector<const kafka::Message*>& sources) {
  for (std::size_t i = 0; i < trades.size(); ++i) {
    const std::span<const market::Trade> single(&trades[i], 1);
    const StoreOutcome outcome = co_await store_with_retry(single);
    if (outcome == StoreOutcome::stopped) co_return outcome;
    if (outcome == StoreOutcome::rejected) {
      dead_letters_.Add({{"reason", "refused"}}).Increment();
      const bool published = co_await dead_letter(*sources[i], "postgres refused the trade");
      if (!published) co_return StoreOutcome::stopped;
    }
  }
  co_return StoreOutcome::stored;
}

Task<void> TradeConsumer::run() {
  co_await asio::dispatch(executor_, asio::use_awaitable);
  auto logger = log::get("consumer");
  const std::vector<std::string> topics{market::kTradesTopic};
  kafka::Consumer consumer(executor_, kafka_config_, kConsumerGroup, topics, registry_);
  auto& undecodable = dead_letters_.Add({{"reason", "undecodable"}});
  std::vector<kafka::Consumer::Offset> offsets;
  bool stopped = false;
  while (!stopping_ && !stopped) {
    auto messages =
        co_await consumer.poll_batch(config_.consumer_batch_size, std::chrono::milliseconds(100));
    if (messages.empty()) continue;
    const auto started = Clock::now();
    std::vector<market::Trade> trades;
    std::vector<const kafka::Message*> sources;
    trades.reserve(messages.size());
    sources.reserve(messages.size());
    std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offsets;
    for (const auto& message : messages) {
      auto& next = next_offsets[{message.topic, message.partition}];
      next = std::max(next, message.offset + 1);
      auto decoded = market::decode_trade(message.value);
      if (auto* trade = std::get_if<market::Trade>(&decoded)) {
        trades.push_back(std::move(*trade));
        sources.push_back(&message);
        continue;
      }
      const std::string reason = std::get<market::DecodeError>(decoded).reason;
      log::event(
          *logger, spdlog::level::warn, "undecodable trade dead-lettered",
          {{"partition", message.partition}, {"offset", message.offset}, {"reason", reason}});
      undecodable.Increment();
      const bool published = co_await dead_letter(message, reason);
      if (!published) {
        stopped = true;
        break;
      }
    }
    if (stopped) break;
    // Nothing is committed until the batch is in Postgres.
    auto outcome = StoreOutcome::stored;
    if (!trades.empty()) outcome = co_await store_with_retry(trades);
    if (outcome == StoreOutcome::rejected) outcome = co_await store_one_by_one(trades, sources);
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

}  // namespace mesh::marketdb
