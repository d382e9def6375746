#include "mesh/ingest/feed.hpp"

#include <limits>

#include <boost/json/array.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace mesh::ingest {
namespace json = boost::json;

namespace {

// Reads the fields of one message, remembering the first problem: a field of the wrong JSON
// type is `wrong_type`, a missing or invalid one `malformed`.
class Fields {
 public:
  explicit Fields(const json::object& object) : object_(object) {}

  std::string text(std::string_view name, bool (*valid)(std::string_view), const char* what) {
    const json::value* value = find(name);
    if (value == nullptr) return {};
    if (!value->is_string()) return wrong_type(name, "must be a string"), std::string();
    const json::string& text = value->get_string();
    if (!valid(text)) return malformed(name, what), std::string();
    return std::string(text);
  }

  std::string time(std::string_view name) {
    const json::value* value = find(name);
    if (value == nullptr) return {};
    if (!value->is_string()) return wrong_type(name, "must be a string"), std::string();
    auto canonical = market::normalize_time(value->get_string());
    if (!canonical) return malformed(name, "must be an RFC 3339 time"), std::string();
    return std::move(*canonical);
  }

  std::int64_t integer(std::string_view name) {
    const json::value* value = find(name);
    if (value == nullptr) return 0;
    if (value->is_int64()) {
      if (value->get_int64() >= 0) return value->get_int64();
      return malformed(name, "must not be negative"), 0;
    }
    if (value->is_uint64()) {
      if (value->get_uint64() <= std::uint64_t{std::numeric_limits<std::int64_t>::max()})
        return static_cast<std::int64_t>(value->get_uint64());
      return malformed(name, "is too large"), 0;
    }
    return wrong_type(name, "must be an integer"), 0;
  }

  market::Side side(std::string_view name) {
    const json::value* value = find(name);
    if (value == nullptr) return market::Side::buy;
    if (!value->is_string()) return wrong_type(name, "must be a string"), market::Side::buy;
    if (value->get_string() == "buy") return market::Side::buy;
    if (value->get_string() == "sell") return market::Side::sell;
    return malformed(name, "must be \"buy\" or \"sell\""), market::Side::buy;
  }

  // Optional text for error messages: empty when absent or not a string.
  std::string optional_text(std::string_view name) const {
    const json::value* value = object_.if_contains(name);
    if (value == nullptr || !value->is_string()) return {};
    return std::string(value->get_string());
  }

  bool ok() const { return !problem_; }
  void report(FeedEvent& event) const {
    event.dropped = problem_;
    event.detail = detail_;
  }

 private:
  const json::value* find(std::string_view name) {
    const json::value* value = object_.if_contains(name);
    if (value == nullptr) malformed(name, "is required");
    return value;
  }
  void malformed(std::string_view name, std::string_view problem) {
    fail(DropReason::malformed, name, problem);
  }
  void wrong_type(std::string_view name, std::string_view problem) {
    fail(DropReason::wrong_type, name, problem);
  }
  void fail(DropReason reason, std::string_view name, std::string_view problem) {
    if (problem_) return;
    problem_ = reason;
    detail_ = std::string(name) + ": " + std::string(problem);
  }

  const json::object& object_;
  std::optional<DropReason> problem_;
  std::string detail_;
};

bool decimal(std::string_view text) { return market::is_decimal(text); }
bool product(std::string_view text) { return market::is_product(text); }
constexpr const char* kDecimal = "must be a decimal string";
constexpr const char* kProduct = "must be a product id like BTC-USD";

std::optional<MessageType> type_named(std::string_view name) {
  if (name == "match") return MessageType::match;
  if (name == "ticker") return MessageType::ticker;
  if (name == "heartbeat") return MessageType::heartbeat;
  if (name == "last_match") return MessageType::last_match;
  if (name == "subscriptions") return MessageType::subscriptions;
  if (name == "error") return MessageType::error;
  return std::nullopt;
}

}  // namespace

std::string_view to_string(MessageType type) {
  switch (type) {
    case MessageType::subscriptions:
      return "subscriptions";
    case MessageType::heartbeat:
      return "heartbeat";
    case MessageType::match:
      return "match";
    case MessageType::last_match:
      return "last_match";
    case MessageType::ticker:
      return "ticker";
    case MessageType::error:
      return "error";
    case MessageType::unknown:
      break;
  }
  return "unknown";
}

std::string_view to_string(DropReason reason) {
  switch (reason) {
    case DropReason::malformed:
      return "malformed";
    case DropReason::oversized:
      return "oversized";
    case DropReason::wrong_type:
      return "wrong_type";
    case DropReason::duplicate:
      break;
  }
  return "duplicate";
}

FeedEvent FeedParser::parse(std::string_view message) {
  FeedEvent event;
  if (message.size() > kMaxFeedMessageBytes) {
    event.dropped = DropReason::oversized;
    event.detail = "message of " + std::to_string(message.size()) + " bytes exceeds " +
                   std::to_string(kMaxFeedMessageBytes);
    return event;
  }
  // Most messages fit the stack buffer, so parsing rarely allocates.
  unsigned char buffer[4096];
  json::monotonic_resource memory(buffer, sizeof buffer);
  json::parse_options options;
  options.max_depth = 16;
  boost::system::error_code ec;
  const json::value parsed = json::parse(message, ec, &memory, options);
  if (ec) {
    event.dropped = DropReason::malformed;
    event.detail = "invalid JSON: " + ec.message();
    return event;
  }
  if (!parsed.is_object()) {
    event.dropped = DropReason::malformed;
    event.detail = "message is not a JSON object";
    return event;
  }
  const json::object& object = parsed.get_object();
  const json::value* type_field = object.if_contains("type");
  if (type_field == nullptr || !type_field->is_string()) {
    event.dropped = type_field == nullptr ? DropReason::malformed : DropReason::wrong_type;
    event.detail = "type: must be a string";
    return event;
  }
  const auto type = type_named(type_field->get_string());
  event.type = type.value_or(MessageType::unknown);
  Fields fields(object);
  switch (*event.type) {
    case MessageType::match:
    case MessageType::last_match: {
      market::Trade trade;
      trade.product = fields.text("product_id", product, kProduct);
      trade.trade_id = fields.integer("trade_id");
      trade.price = fields.text("price", decimal, kDecimal);
      trade.size = fields.text("size", decimal, kDecimal);
      trade.side = fields.side("side");
      trade.time = fields.time("time");
      trade.sequence = fields.integer("sequence");
      if (!fields.ok()) {
        fields.report(event);
        return event;
      }
      event.product = trade.product;
      auto [last, first] = last_trade_ids_.try_emplace(trade.product, trade.trade_id);
      if (!first) {
        if (trade.trade_id <= last->second) {
          event.dropped = DropReason::duplicate;
          event.detail = "trade_id " + std::to_string(trade.trade_id) + " already seen (last " +
                         std::to_string(last->second) + ")";
          return event;
        }
        event.missing_trades = trade.trade_id - last->second - 1;
        last->second = trade.trade_id;
      }
      event.record = std::move(trade);
      return event;
    }
    case MessageType::ticker: {
      market::Ticker ticker;
      ticker.product = fields.text("product_id", product, kProduct);
      ticker.price = fields.text("price", decimal, kDecimal);
      ticker.best_bid = fields.text("best_bid", decimal, kDecimal);
      ticker.best_ask = fields.text("best_ask", decimal, kDecimal);
      ticker.time = fields.time("time");
      ticker.sequence = fields.integer("sequence");
      if (!fields.ok()) {
        fields.report(event);
        return event;
      }
      event.product = ticker.product;
      event.record = std::move(ticker);
      return event;
    }
    case MessageType::heartbeat: {
      std::string heartbeat_product = fields.text("product_id", product, kProduct);
      const std::int64_t last_trade_id = fields.integer("last_trade_id");
      if (!fields.ok()) {
        fields.report(event);
        return event;
      }
      // Only a product whose trades were seen has a position to compare with.
      const auto last = last_trade_ids_.find(heartbeat_product);
      if (last != last_trade_ids_.end() && last_trade_id > last->second) {
        event.missing_trades = last_trade_id - last->second;
        last->second = last_trade_id;
      }
      event.product = std::move(heartbeat_product);
      return event;
    }
    case MessageType::error:
      event.detail = fields.optional_text("message");
      if (auto reason = fields.optional_text("reason"); !reason.empty()) {
        event.detail += ": " + reason;
      }
      return event;
    case MessageType::subscriptions: {
      const json::value* channels = object.if_contains("channels");
      if (channels != nullptr) event.detail = json::serialize(*channels);
      return event;
    }
    case MessageType::unknown:
      event.detail = std::string(std::string_view(type_field->get_string()).substr(0, 64));
      return event;
  }
  return event;
}

std::optional<std::int64_t> FeedParser::last_trade_id(std::string_view product) const {
  const auto found = last_trade_ids_.find(product);
  if (found == last_trade_ids_.end()) return std::nullopt;
  return found->second;
}

std::string subscribe_message(const std::vector<std::string>& products) {
  json::array product_ids;
  for (const auto& id : products) product_ids.emplace_back(id);
  const json::object request{{"type", "subscribe"},
                             {"product_ids", std::move(product_ids)},
                             {"channels", json::array{"matches", "ticker", "heartbeat"}}};
  return json::serialize(request);
}

}  // namespace mesh::ingest
