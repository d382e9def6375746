#include "mesh/ingest/ingester.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <random>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/log.hpp"
#include "mesh/ingest/synthetic.hpp"
#include "mesh/ingest/websocket.hpp"

namespace mesh::ingest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::array kMessageTypes = {MessageType::subscriptions, MessageType::heartbeat,
                                      MessageType::match,         MessageType::last_match,
                                      MessageType::ticker,        MessageType::error,
                                      MessageType::unknown};
constexpr std::array kConnectionEnds = {
    ConnectionEnd::resolve_failed, ConnectionEnd::connect_failed, ConnectionEnd::handshake_failed,
    ConnectionEnd::silence,        ConnectionEnd::too_big,        ConnectionEnd::closed,
    ConnectionEnd::refused};

// Logs the first few occurrences of a repeated problem, then every thousandth.
bool worth_logging(double count) {
  return count <= 10 || static_cast<std::uint64_t>(count) % 1000 == 0;
}

// Metric label of a product: the configured ones by name, anything else the feed sends as
// "other", so a misbehaving feed cannot create series without bound.
std::string product_label(const config::Config& config, const std::string& product) {
  const auto& known = config.ingester_products;
  return std::find(known.begin(), known.end(), product) != known.end() ? product : "other";
}

std::int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct StopControl {
  std::function<void()> cancel_source;  // aborts the current wait or connection
  std::function<void()> cancel_ages;
};

struct PublishState {
  struct Topic {
    const char* name;
    prometheus::Counter& published;
    prometheus::Counter& failures;
  };
  std::size_t in_flight = 0;  // touched only on the ingester's strand
  prometheus::Gauge& in_flight_gauge;
  Topic trades;
  Topic ticker;
  log::Logger logger;
};

struct IngesterMetrics {
  explicit IngesterMetrics(prometheus::Registry& registry)
      : messages(prometheus::BuildCounter()
                     .Name("mesh_ingester_messages_total")
                     .Help("Feed messages received, by type (including those then dropped).")
                     .Register(registry)),
        dropped(prometheus::BuildCounter()
                    .Name("mesh_ingester_dropped_total")
                    .Help("Feed messages or records not published, by reason.")
                    .Register(registry)),
        gaps(prometheus::BuildCounter()
                 .Name("mesh_ingester_trade_gaps_total")
                 .Help("Jumps in a product's trade ids (trades missed), by product.")
                 .Register(registry)),
        missing_trades(prometheus::BuildCounter()
                           .Name("mesh_ingester_missing_trades_total")
                           .Help("Trades missed according to trade ids, by product.")
                           .Register(registry)),
        errors(prometheus::BuildCounter()
                   .Name("mesh_ingester_errors_total")
                   .Help("Feed connections that ended in error, by kind (refused: the exchange "
                         "sent an error message).")
                   .Register(registry)),
        published(prometheus::BuildCounter()
                      .Name("mesh_ingester_published_total")
                      .Help("Records acknowledged by Kafka, by topic.")
                      .Register(registry)),
        publish_failures(prometheus::BuildCounter()
                             .Name("mesh_ingester_publish_failures_total")
                             .Help("Records whose Kafka delivery failed, by topic.")
                             .Register(registry)),
        trade_age(prometheus::BuildGauge()
                      .Name("mesh_ingester_last_trade_age_seconds")
                      .Help("Seconds since the last trade of a product was received.")
                      .Register(registry)),
        reconnects(prometheus::BuildCounter()
                       .Name("mesh_ingester_reconnects_total")
                       .Help("Connections to the feed after the first one.")
                       .Register(registry)
                       .Add({})),
        connected(prometheus::BuildGauge()
                      .Name("mesh_ingester_connected")
                      .Help("1 while subscribed to the feed (or while a replay or synthetic source "
                            "delivers).")
                      .Register(registry)
                      .Add({})),
        in_flight(prometheus::BuildGauge()
                      .Name("mesh_ingester_in_flight")
                      .Help("Records produced and not yet acknowledged.")
                      .Register(registry)
                      .Add({})) {
    for (const auto type : kMessageTypes) {
      by_type[static_cast<std::size_t>(type)] =
          &messages.Add({{"type", std::string(to_string(type))}});
    }
    for (const auto reason : {DropReason::malformed, DropReason::oversized, DropReason::wrong_type,
                              DropReason::duplicate}) {
      by_reason[static_cast<std::size_t>(reason)] =
          &dropped.Add({{"reason", std::string(to_string(reason))}});
    }
    backpressure = &dropped.Add({{"reason", "backpressure"}});
    for (const auto end : kConnectionEnds) {
      by_end[static_cast<std::size_t>(end)] = &errors.Add({{"kind", std::string(to_string(end))}});
    }
  }

  PublishState::Topic topic(const char* name) {
    return {name, published.Add({{"topic", name}}), publish_failures.Add({{"topic", name}})};
  }

  // The age gauge of a product, created on first sight.
  struct Product {
    Clock::time_point last_trade;
    prometheus::Gauge* age;
  };
  Product& product(const std::string& name, Clock::time_point since) {
    auto found = products.find(name);
    if (found == products.end()) {
      found = products.emplace(name, Product{since, &trade_age.Add({{"product", name}})}).first;
    }
    return found->second;
  }

  prometheus::Family<prometheus::Counter>& messages;
  prometheus::Family<prometheus::Counter>& dropped;
  prometheus::Family<prometheus::Counter>& gaps;
  prometheus::Family<prometheus::Counter>& missing_trades;
  prometheus::Family<prometheus::Counter>& errors;
  prometheus::Family<prometheus::Counter>& published;
  prometheus::Family<prometheus::Counter>& publish_failures;
  prometheus::Family<prometheus::Gauge>& trade_age;
  prometheus::Counter& reconnects;
  prometheus::Gauge& connected;
  prometheus::Gauge& in_flight;
  std::array<prometheus::Counter*, kMessageTypes.size()> by_type{};
  std::array<prometheus::Counter*, 4> by_reason{};
  prometheus::Counter* backpressure = nullptr;
  std::array<prometheus::Counter*, kConnectionEnds.size() + 1> by_end{};
  std::map<std::string, Product> products;
};

// What produce calls still awaiting their acknowledgement need; they may outlive the Ingester.
namespace {

Task<void> deliver(kafka::Producer& producer, std::shared_ptr<PublishState> state,
                   PublishState::Topic& topic, std::string key, std::string value) {
  const error_code result = co_await producer.produce(topic.name, key, value);
  --state->in_flight;
  state->in_flight_gauge.Decrement();
  if (!result) {
    topic.published.Increment();
    co_return;
  }
  topic.failures.Increment();
  if (worth_logging(topic.failures.Value())) {
    log::event(*state->logger, spdlog::level::warn, "record not delivered to kafka",
               {{"topic", topic.name}, {"key", key}, {"error", result.message()}});
  }
}

}  // namespace

Ingester::Ingester(asio::any_io_executor executor, const config::Config& config,
                   kafka::Producer& producer, prometheus::Registry& registry)
    : executor_(asio::make_strand(executor)),
      logger_(log::get("ingester")),
      config_(config),
      producer_(producer),
      metrics_(std::make_unique<IngesterMetrics>(registry)),
      publish_state_(std::make_shared<PublishState>(
          PublishState{0, metrics_->in_flight, metrics_->topic(market::kTradesTopic),
                       metrics_->topic(market::kTickerTopic), logger_})),
      control_(std::make_shared<StopControl>()) {
  const auto now = Clock::now();
  for (const auto& product : config_.ingester_products) metrics_->product(product, now);
}

Ingester::~Ingester() = default;

bool Ingester::healthy() const { return true; }

void Ingester::stop() {
  stopping_ = true;
  asio::post(executor_, [control = control_] {
    if (control->cancel_source) control->cancel_source();
    if (control->cancel_ages) control->cancel_ages();
  });
}

Task<void> Ingester::run() {
  // Awaiting dispatch() would move only the next step onto the strand: completions of later
  // waits resume on the caller's executor. A coroutine spawned on the strand stays there.
  co_await asio::co_spawn(executor_, run_on_strand(), asio::use_awaitable);
}

Task<void> Ingester::run_on_strand() {
  using namespace asio::experimental::awaitable_operators;
  auto both = run_source() && update_trade_ages();
  co_await std::move(both);
  metrics_->connected.Set(0);
  logger_->info("ingester stopped");
}

Task<void> Ingester::run_source() {
  const std::string& source = config_.ingester_source;
  if (source == "synthetic") {
    co_await run_synthetic();
  } else if (source.starts_with("replay:")) {
    co_await run_replay(source.substr(7));
  } else if (source.starts_with("ws://") || source.starts_with("wss://")) {
    co_await run_websocket(source);
  } else {
    logger_->error("ingester source '{}' is not a ws:// or wss:// URL, replay:FILE or synthetic",
                   source);
    co_await idle_until_stopped();
  }
}

Task<bool> Ingester::wait(Clock::duration delay) {
  if (stopping_) co_return false;
  asio::steady_timer timer(executor_, delay);
  control_->cancel_source = [&timer] { timer.cancel(); };
  error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  control_->cancel_source = nullptr;
  co_return !stopping_;
}

Task<void> Ingester::idle_until_stopped() {
  bool running = true;
  while (running) running = co_await wait(1h);
}

Task<void> Ingester::update_trade_ages() {
  asio::steady_timer timer(executor_);
  control_->cancel_ages = [&timer] { timer.cancel(); };
  while (!stopping_) {
    const auto now = Clock::now();
    for (auto& [name, product] : metrics_->products) {
      product.age->Set(std::chrono::duration<double>(now - product.last_trade).count());
    }
    timer.expires_after(1s);
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  control_->cancel_ages = nullptr;
}

bool Ingester::handle(std::string_view message) { return handle(parser_.parse(message)); }

bool Ingester::handle(FeedEvent event) {
  if (event.type) metrics_->by_type[static_cast<std::size_t>(*event.type)]->Increment();
  if (event.missing_trades > 0) {
    const std::string label = product_label(config_, event.product);
    metrics_->gaps.Add({{"product", label}}).Increment();
    metrics_->missing_trades.Add({{"product", label}})
        .Increment(static_cast<double>(event.missing_trades));
    log::event(*logger_, spdlog::level::warn, "trades missed",
               {{"product", event.product},
                {"missing", event.missing_trades},
                {"type", to_string(event.type.value_or(MessageType::unknown))}});
  }
  if (event.dropped) {
    auto& counter = *metrics_->by_reason[static_cast<std::size_t>(*event.dropped)];
    counter.Increment();
    if (worth_logging(counter.Value())) {
      const auto level =
          *event.dropped == DropReason::duplicate ? spdlog::level::debug : spdlog::level::warn;
      log::event(*logger_, level, "feed message dropped",
                 {{"reason", to_string(*event.dropped)}, {"detail", event.detail}});
    }
    return true;
  }
  switch (event.type.value_or(MessageType::unknown)) {
    case MessageType::error:
      log::event(*logger_, spdlog::level::err, "feed error message", {{"message", event.detail}});
      return false;
    case MessageType::subscriptions:
      log::event(*logger_, spdlog::level::info, "subscribed", {{"channels", event.detail}});
      break;
    case MessageType::unknown:
      log::event(*logger_, spdlog::level::debug, "unknown feed message type ignored",
                 {{"type", event.detail}});
      return true;
    default:
      break;
  }
  delivered_ = true;
  if (auto* trade = std::get_if<market::Trade>(&event.record)) {
    metrics_->product(product_label(config_, trade->product), Clock::now()).last_trade =
        Clock::now();
    publish(true, trade->product, market::encode(*trade));
  } else if (auto* ticker = std::get_if<market::Ticker>(&event.record)) {
    publish(false, ticker->product, market::encode(*ticker));
  }
  return true;
}

void Ingester::publish(bool trade, const std::string& key, std::string value) {
  PublishState& state = *publish_state_;
  PublishState::Topic& topic = trade ? state.trades : state.ticker;
  if (state.in_flight >= kMaxInFlight) {
    metrics_->backpressure->Increment();
    if (worth_logging(metrics_->backpressure->Value())) {
      log::event(*logger_, spdlog::level::warn, "kafka is not keeping up: newest record dropped",
                 {{"topic", topic.name}, {"in_flight", state.in_flight}});
    }
    return;
  }
  ++state.in_flight;
  state.in_flight_gauge.Increment();
  asio::co_spawn(executor_, deliver(producer_, publish_state_, topic, key, std::move(value)),
                 asio::detached);
}

Task<void> Ingester::run_websocket(std::string source) {
  const auto url = parse_feed_url(source);
  if (!url) {
    logger_->error("ingester source '{}' is not a valid websocket URL", source);
    co_await idle_until_stopped();
    co_return;
  }
  ConnectionOptions options;
  options.subscribe = subscribe_message(config_.ingester_products);
  options.ca_file = config_.ingester_ca_file;
  options.silence_timeout = config_.ingester_silence_timeout;
  const std::function<void()> on_connected = [this, &source] {
    metrics_->connected.Set(1);
    log::event(*logger_, spdlog::level::info, "connected to the feed", {{"url", source}});
  };
  const std::function<bool(std::string_view)> on_message = [this](std::string_view message) {
    return handle(message);
  };
  Backoff backoff(250ms, 30s);
  bool first = true;
  while (!stopping_) {
    if (!first) metrics_->reconnects.Increment();
    first = false;
    delivered_ = false;
    const ConnectionResult result =
        co_await run_connection(*url, options, control_->cancel_source, on_connected, on_message);
    metrics_->connected.Set(0);
    if (result.end == ConnectionEnd::stopped) break;
    metrics_->by_end[static_cast<std::size_t>(result.end)]->Increment();
    if (delivered_) backoff.reset();
    const auto delay = backoff.next();
    log::event(*logger_, spdlog::level::warn, "feed connection ended; reconnecting",
               {{"reason", to_string(result.end)},
                {"detail", result.detail},
                {"retry_in_ms", static_cast<std::int64_t>(delay.count())}});
    const bool go_on = co_await wait(delay);
    if (!go_on) break;
  }
}

Task<void> Ingester::run_replay(std::string path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    logger_->error("replay file '{}' cannot be opened; the ingester stays idle", path);
    co_await idle_until_stopped();
    co_return;
  }
  log::event(*logger_, spdlog::level::info, "replaying",
             {{"file", path}, {"speed", config_.ingester_replay_speed}});
  // A recorded or generated source counts as connected while it delivers, so one panel and
  // one alert serve every source.
  metrics_->connected.Set(1);
  const double speed = config_.ingester_replay_speed;
  // One byte more than a message may have, and one for the terminating zero.
  std::string line(kMaxFeedMessageBytes + 2, '\0');
  std::optional<std::int64_t> first_time;
  Clock::time_point started;
  std::size_t lines = 0;
  while (!stopping_) {
    file.getline(line.data(), static_cast<std::streamsize>(line.size()));
    std::size_t length = static_cast<std::size_t>(file.gcount());
    if (file.eof() && length == 0) break;
    if (file.fail() && !file.eof()) {
      if (length == 0) break;  // a read error
      // Longer than a message may be: skip the rest of the line; the parser counts it.
      file.clear();
      file.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    } else if (length > 0 && !file.eof()) {
      --length;  // the newline, counted by gcount()
    }
    ++lines;
    std::string_view message(line.data(), length);
    if (message.ends_with('\r')) message.remove_suffix(1);
    if (message.empty()) continue;
    FeedEvent event = parser_.parse(message);
    // Pacing by the feed's own clock; a time going backwards is delivered at once.
    const std::string* time = nullptr;
    if (auto* trade = std::get_if<market::Trade>(&event.record)) time = &trade->time;
    if (auto* ticker = std::get_if<market::Ticker>(&event.record)) time = &ticker->time;
    if (speed > 0 && time != nullptr) {
      const auto micros = market::time_micros(*time);
      if (micros && !first_time) {
        first_time = micros;
        started = Clock::now();
      } else if (micros && *micros > *first_time) {
        const auto due = started + std::chrono::microseconds(static_cast<std::int64_t>(
                                       static_cast<double>(*micros - *first_time) / speed));
        if (due > Clock::now()) {
          const bool go_on = co_await wait(due - Clock::now());
          if (!go_on) break;
        }
      }
    }
    // A recording, unlike the live feed, can wait for Kafka instead of dropping.
    while (publish_state_->in_flight >= kMaxInFlight && !stopping_) {
      const bool go_on = co_await wait(1ms);
      if (!go_on) break;
    }
    handle(std::move(event));
    // Let the produce calls start and their acknowledgements arrive.
    if (lines % 64 == 0) co_await asio::post(executor_, asio::use_awaitable);
    if (file.eof()) break;
  }
  metrics_->connected.Set(0);
  if (stopping_) co_return;
  log::event(*logger_, spdlog::level::info, "replay finished; the ingester stays idle",
             {{"file", path}, {"lines", static_cast<std::uint64_t>(lines)}});
  co_await idle_until_stopped();
}

Task<void> Ingester::run_synthetic() {
  // Ids from the start time: a restart never reuses an id the consumer already stored.
  SyntheticFeed feed(config_.ingester_products, std::random_device{}(), now_micros());
  std::mt19937_64 random(std::random_device{}());
  std::bernoulli_distribution trades_now(0.3);  // ticks of 100 ms: about 3 trades a second
  logger_->info("synthetic feed for {} products", feed.products());
  metrics_->connected.Set(1);  // as for a replay: connected while it delivers
  for (std::uint64_t tick = 0;; ++tick) {
    const std::int64_t now = now_micros();
    for (std::size_t i = 0; i < feed.products(); ++i) {
      if (trades_now(random)) {
        for (const auto& message : feed.trade(i, now)) handle(message);
      }
      if (tick % 10 == 0) handle(feed.heartbeat(i, now));
    }
    const bool go_on = co_await wait(100ms);
    if (!go_on) break;
  }
}

}  // namespace mesh::ingest
