#include "mesh/sse/stream_service.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/market/events.hpp"

namespace mesh::sse {
namespace {

// A write pending this long means the client cannot take data: it is closed.
constexpr std::chrono::milliseconds kWriteTimeout{30'000};
// Product ids in error answers are cut to this length (the id may be hostile input).
constexpr std::size_t kEchoLimit = 40;

HubOptions hub_options(const config::Config& config) {
  HubOptions options;
  options.client_queue = config.stream_client_queue;
  options.heartbeat = config.stream_heartbeat;
  options.write_timeout = kWriteTimeout;
  options.max_clients = config.http_max_connections;
  return options;
}

prometheus::Family<prometheus::Counter>& events_family(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("mesh_stream_events_total")
      .Help("Market events read from Kafka and published to stream clients, by event.")
      .Register(registry);
}

prometheus::Family<prometheus::Counter>& bad_records_family(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("mesh_stream_bad_records_total")
      .Help("Kafka records the stream could not decode and skipped, by topic.")
      .Register(registry);
}

}  // namespace

StreamService::StreamService(asio::any_io_executor executor, const config::Config& config,
                             kafka::ClientConfig kafka_config, prometheus::Registry& registry)
    : executor_(asio::make_strand(executor)),
      config_(config),
      kafka_config_(std::move(kafka_config)),
      registry_(registry),
      products_(config.ingester_products.begin(), config.ingester_products.end()),
      hub_(executor, hub_options(config), registry),
      trades_(events_family(registry).Add({{"event", "trade"}})),
      tickers_(events_family(registry).Add({{"event", "ticker"}})),
      bad_trades_(bad_records_family(registry).Add({{"topic", market::kTradesTopic}})),
      bad_tickers_(bad_records_family(registry).Add({{"topic", market::kTickerTopic}})) {
  hub_.start();
}

void StreamService::add_routes(http::Router& router) {
  router.add("GET", "/v1/stream/markets/{product}",
             [this](http::Request& request) { return subscribe(request); });
}

Task<http::Response> StreamService::subscribe(http::Request& request) {
  const std::string_view product = request.param("product");
  if (!market::is_product(product)) {
    co_return http::problem(
        400, "'" + std::string(product.substr(0, kEchoLimit)) +
                 "' is not a product id: two parts of 1 to 10 of A-Z 0-9 joined by '-'");
  }
  if (!products_.contains(product)) {
    co_return http::problem(404, "no stream for product " + std::string(product));
  }
  co_return hub_.subscribe(std::string(product));
}

void StreamService::publish(const kafka::Message& message) {
  auto logger = log::get("sse");
  std::string reason;
  if (message.topic == market::kTradesTopic) {
    auto decoded = market::decode_trade(message.value);
    if (auto* trade = std::get_if<market::Trade>(&decoded)) {
      trades_.Increment();
      hub_.publish(trade->product, "trade", trade->sequence, market::encode(*trade));
      return;
    }
    bad_trades_.Increment();
    reason = std::get<market::DecodeError>(decoded).reason;
  } else if (message.topic == market::kTickerTopic) {
    auto decoded = market::decode_ticker(message.value);
    if (auto* ticker = std::get_if<market::Ticker>(&decoded)) {
      tickers_.Increment();
      const auto data = market::encode(*ticker);
      hub_.publish(ticker->product, "ticker", ticker->sequence, data);
      hub_.publish("ticker:" + ticker->product, "ticker", ticker->sequence, data);
      return;
    }
    bad_tickers_.Increment();
    reason = std::get<market::DecodeError>(decoded).reason;
  } else if (const auto it = extra_topics_.find(message.topic); it != extra_topics_.end()) {
    it->second(message);
    return;
  } else {
    return;
  }
  log::event(*logger, spdlog::level::warn, "undecodable market record skipped",
             {{"topic", message.topic},
              {"partition", message.partition},
              {"offset", message.offset},
              {"reason", reason}});
}

Task<void> StreamService::run() {
  co_await asio::dispatch(executor_, asio::use_awaitable);
  auto config = kafka_config_;
  config.properties["auto.offset.reset"] = "latest";
  const std::string group = "mesh-stream-" + core::random_hex(8);
  std::vector<std::string> topics{market::kTradesTopic, market::kTickerTopic};
  for (const auto& [topic, handler] : extra_topics_) topics.push_back(topic);
  kafka::Consumer consumer(executor_, config, group, topics, registry_);
  consumer.on_assign = [this](const kafka::Consumer::Partitions&) { assigned_ = true; };
  log::get("sse")->info("streaming {} and {} as consumer group {}", market::kTradesTopic,
                        market::kTickerTopic, group);
  while (!stopping_) {
    auto messages =
        co_await consumer.poll_batch(config_.consumer_batch_size, std::chrono::milliseconds(100));
    for (const auto& message : messages) publish(message);
  }
  co_await consumer.close();
}

void StreamService::add_topic(std::string topic,
                              std::function<void(const kafka::Message&)> handler) {
  extra_topics_.insert_or_assign(std::move(topic), std::move(handler));
}

void StreamService::stop() {
  stopping_ = true;
  hub_.stop();
}

std::size_t StreamService::clients() const { return hub_.clients(); }

}  // namespace mesh::sse
